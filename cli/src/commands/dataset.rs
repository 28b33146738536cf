//! `tessera dataset tokenize|merge|status`.

mod progress;
mod tokenize;

use serde_json::json;
use tessera_dataset::{merge, status, store};

use crate::GlobalArgs;
use crate::log::note;
use crate::output;

/// Exit status of a `tokenize` run that finished with some items failed.
pub const ITEMS_FAILED: usize = 3;

#[derive(Debug, clap::Args)]
pub struct DatasetArgs {
    #[command(subcommand)]
    command: DatasetCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DatasetCommand {
    /// Encode audio inputs into sharded output.
    ///
    /// INPUT is a file, a directory (searched recursively for audio), @LIST (one path per line)
    /// or a JSONL manifest (`audio_filepath` or `path`, optional `id`, `text`, `duration`).
    /// The sorted inputs are cut into --num-shards shards; a worker does the shard that
    /// --shard-index (or SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, RANK) names, a lone process
    /// does them all. Finished shards are skipped on a re-run. Items that fail are recorded in
    /// OUT/errors/ and the job goes on; it then exits with status 3.
    Tokenize(tokenize::TokenizeArgs),

    /// After all shards are done: write OUT/manifest.json and, for Megatron output, the
    /// combined OUT/merged.bin + merged.idx.
    Merge(MergeArgs),

    /// Show which shards are done and missing, and the items that failed.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// The --out of the tokenize jobs (a directory or an s3://, gs://, az:// URL).
    #[arg(value_name = "OUT")]
    out: String,

    /// Print the manifest's totals as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The --out of the tokenize jobs.
    #[arg(value_name = "OUT")]
    out: String,

    /// One JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &DatasetArgs, global: &GlobalArgs) -> anyhow::Result<usize> {
    match &args.command {
        DatasetCommand::Tokenize(a) => tokenize::run(a, global),
        DatasetCommand::Merge(a) => run_merge(a),
        DatasetCommand::Status(a) => run_status(a),
    }
}

fn run_merge(args: &MergeArgs) -> anyhow::Result<usize> {
    let out = store::open(&args.out)?;
    let m = merge::merge(out.as_ref())?;
    note!(
        "merged {} shards: {} items ({} failed), {:.2} h of audio, {} tokens -> {}/manifest.json",
        m.num_shards,
        m.totals.encoded,
        m.totals.failed,
        m.totals.audio_hours,
        m.totals.tokens,
        out.describe()
    );
    if args.json {
        output::json_line(&json!({
            "out": out.describe(),
            "tokenizer": m.tokenizer.id,
            "format": m.format,
            "num_shards": m.num_shards,
            "items": m.totals.items,
            "encoded": m.totals.encoded,
            "failed": m.totals.failed,
            "audio_hours": m.totals.audio_hours,
            "tokens": m.totals.tokens,
            "megatron": m.megatron,
        }))?;
    }
    Ok(0)
}

fn run_status(args: &StatusArgs) -> anyhow::Result<usize> {
    let out = store::open(&args.out)?;
    let s = status::status(out.as_ref())?;
    if args.json {
        output::json_line(&serde_json::to_value(&s)?)?;
        return Ok(0);
    }
    println!(
        "{}: {} ({}), {} shards",
        s.out, s.tokenizer, s.format, s.num_shards
    );
    println!(
        "done: {} of {}{}",
        s.done.len(),
        s.num_shards,
        if s.merged { " (merged)" } else { "" }
    );
    if !s.missing.is_empty() {
        println!("missing: {}", ranges(&s.missing));
    }
    println!(
        "items: {} encoded, {} failed, {:.2} h of audio, {} tokens",
        s.encoded,
        s.failed,
        s.audio_seconds / 3600.0,
        s.tokens
    );
    for f in &s.failures {
        println!("failed: {}: {}", f.path, f.reason);
    }
    Ok(0)
}

/// `0-3, 7, 9-10`
fn ranges(ks: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ks.len() {
        let mut j = i;
        while j + 1 < ks.len() && ks[j + 1] == ks[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ks[i].to_string()
        } else {
            format!("{}-{}", ks[i], ks[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}
