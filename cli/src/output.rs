//! How results and failures are printed.

use std::io::Write;
use std::path::Path;

/// `error: PATH: REASON` (or `error: REASON`), always one line.
pub fn error_line(e: &dyn std::fmt::Display) {
    let msg = e.to_string().replace('\n', " ");
    eprintln!("error: {msg}");
}

/// The error for one input, with the input's path in front unless the error already names it.
pub fn input_error(path: &Path, e: tessera_core::Error) {
    error_line(&e.with_path(path));
}

/// One JSON object per line on stdout.
pub fn json_line(value: &serde_json::Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")
}
