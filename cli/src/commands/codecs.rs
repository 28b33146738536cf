//! `tessera codecs`: the registered codec ids and what their codes look like.

use serde_json::json;
use tessera_codec::registry;

use crate::output;

#[derive(Debug, clap::Args)]
pub struct CodecsArgs {
    /// One JSON object per line and codec instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &CodecsArgs) -> anyhow::Result<usize> {
    if !args.json {
        println!(
            "{:<16}{:<8}{:>7}{:>4}  {:<28}{:<24}{:>7}  repo",
            "id", "family", "rate", "ch", "frame rates (Hz)", "codebooks per level", "kbps"
        );
    }
    for e in registry::entries() {
        let f = e.facts();
        let rates: Vec<String> = f
            .levels
            .iter()
            .map(|l| format!("{:.2}", l.frame_rate))
            .collect();
        let mut books: Vec<String> = f
            .levels
            .iter()
            .map(|l| format!("{}x{}", l.n_q, l.codebook_size))
            .collect();
        if books.len() > 1 && books.iter().all(|b| *b == books[0]) {
            books = vec![format!("{} on each of {} levels", books[0], books.len())];
        }
        if args.json {
            output::json_line(&json!({
                "id": e.id,
                "family": e.family.name(),
                "repo": e.repo,
                "description": e.description,
                "sample_rate": f.sample_rate,
                "channels": f.channels,
                "levels": f.levels.iter().map(|l| json!({
                    "frame_rate": l.frame_rate,
                    "n_q": l.n_q,
                    "codebook_size": l.codebook_size,
                })).collect::<Vec<_>>(),
                "bitrate_bps": f.bitrate(None),
            }))?;
        } else {
            println!(
                "{:<16}{:<8}{:>7}{:>4}  {:<28}{:<24}{:>7.2}  {}",
                e.id,
                e.family.name(),
                f.sample_rate,
                f.channels,
                rates.join("/"),
                books.join(" "),
                f.bitrate(None) / 1000.0,
                e.repo
            );
        }
    }
    Ok(0)
}
