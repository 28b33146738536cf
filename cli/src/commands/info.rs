//! `tessera info FILE...`

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::json;
use tessera_codec::audio::{AudioInfo, probe, probe_exact};
use tessera_core::{Codes, Result};

use crate::GlobalArgs;
use crate::log::verbose;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Audio files (any format tessera decodes) or codes files (.safetensors from `tessera encode`).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// One JSON object per line and file instead of text.
    #[arg(long)]
    json: bool,

    /// Count audio frames by decoding the whole file, for containers whose header does not say
    /// (and to check that the file decodes).
    #[arg(long)]
    exact: bool,
}

enum Described {
    Audio(AudioInfo),
    Codes(Box<Codes>),
}

/// Prints each file; returns how many failed.
pub fn run(args: &InfoArgs, _global: &GlobalArgs) -> anyhow::Result<usize> {
    let mut failures = 0;
    for path in &args.files {
        verbose!("reading {}", path.display());
        match describe(path, args.exact) {
            Ok(d) => {
                if args.json {
                    output::json_line(&to_json(path, &d))?;
                } else {
                    print!("{}", to_text(path, &d));
                }
            }
            Err(e) => {
                failures += 1;
                output::input_error(path, e);
            }
        }
    }
    Ok(failures)
}

fn describe(path: &Path, exact: bool) -> Result<Described> {
    if looks_like_safetensors(path) {
        return Ok(Described::Codes(Box::new(Codes::load(path)?)));
    }
    let info = if exact {
        probe_exact(path)?
    } else {
        probe(path)?
    };
    Ok(Described::Audio(info))
}

/// safetensors starts with a little-endian u64 header length, then the JSON header's `{`.
fn looks_like_safetensors(path: &Path) -> bool {
    let mut head = [0u8; 9];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    if f.read_exact(&mut head).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    n > 1 && n < 100 << 20 && head[8] == b'{'
}

fn to_json(path: &Path, d: &Described) -> serde_json::Value {
    let path = path.display().to_string();
    match d {
        Described::Audio(a) => json!({
            "path": path,
            "kind": "audio",
            "format": a.format,
            "codec": a.codec,
            "sample_rate": a.sample_rate,
            "channels": a.channels,
            "frames": a.frames,
            "duration_s": a.duration_s,
            "bits_per_sample": a.bits_per_sample,
        }),
        Described::Codes(c) => {
            let m = c.meta();
            json!({
                "path": path,
                "kind": "codes",
                "tokenizer": m.tokenizer,
                "tokenizer_version": m.tokenizer_version,
                "levels": c.shapes(),
                "frame_rates": m.frame_rates,
                "codebook_sizes": m.codebook_sizes,
                "sample_rate": m.sample_rate,
                "n_samples": m.n_samples,
                "duration_s": c.duration_s(),
                "image_size": m.image_size,
            })
        }
    }
}

fn to_text(path: &Path, d: &Described) -> String {
    let mut s = format!("{}\n", path.display());
    let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<13}{v}\n"));
    match d {
        Described::Audio(a) => {
            row("kind", "audio".into());
            row("format", a.format.clone());
            row(
                "codec",
                match a.bits_per_sample {
                    Some(b) => format!("{} ({b}-bit)", a.codec),
                    None => a.codec.clone(),
                },
            );
            row("sample rate", format!("{} Hz", a.sample_rate));
            row("channels", a.channels.to_string());
            row(
                "frames",
                a.frames
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "unknown (not in the header; use --exact)".into()),
            );
            row(
                "duration",
                a.duration_s
                    .map(|d| format!("{d:.3} s"))
                    .unwrap_or_else(|| "unknown".into()),
            );
        }
        Described::Codes(c) => {
            let m = c.meta();
            row("kind", "codes".into());
            row("tokenizer", m.tokenizer.clone());
            if !m.tokenizer_version.is_empty() {
                row("version", m.tokenizer_version.clone());
            }
            for (k, shape) in c.shapes().iter().enumerate() {
                row(
                    &format!("level {k}"),
                    format!(
                        "{} x {} (codebooks x frames) at {} Hz, codebook size {}",
                        shape[0], shape[1], m.frame_rates[k], m.codebook_sizes[k]
                    ),
                );
            }
            if let Some(sr) = m.sample_rate {
                row("sample rate", format!("{sr} Hz"));
            }
            if let Some(d) = c.duration_s() {
                row("duration", format!("{d:.3} s"));
            }
            if let Some((w, h)) = m.image_size {
                row("image size", format!("{w} x {h}"));
            }
        }
    }
    s
}
