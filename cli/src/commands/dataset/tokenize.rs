//! `tessera dataset tokenize INPUT... --codec ID|DIR --out DIR|URL`

use std::io::IsTerminal;
use std::time::Instant;

use serde_json::json;
use tessera_codec::registry;
use tessera_dataset::format::Format;
use tessera_dataset::{Job, ShardAssignment, TokenizeOptions, input, store};

use super::ITEMS_FAILED;
use super::progress::Progress;
use crate::GlobalArgs;
use crate::log::{note, verbose};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct TokenizeArgs {
    /// Audio files, directories, @LIST files or JSONL manifests.
    #[arg(value_name = "INPUT", required = true)]
    inputs: Vec<String>,

    /// Codec id (see `tessera codecs`) or a local checkpoint directory.
    #[arg(long, value_name = "ID|DIR")]
    codec: String,

    /// Output directory, or an s3://, gs://, az:// URL (credentials from the environment).
    #[arg(long, value_name = "DIR|URL")]
    out: String,

    /// Output format (see docs/dataset-formats.md).
    #[arg(long, value_enum, default_value = "parquet")]
    format: FormatArg,

    /// Number of shards (default: SLURM_ARRAY_TASK_COUNT, WORLD_SIZE, else 1).
    #[arg(long, value_name = "N")]
    num_shards: Option<usize>,

    /// The one shard this process makes (default: SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX,
    /// RANK; without any, this process makes every shard).
    #[arg(long, value_name = "K")]
    shard_index: Option<usize>,

    /// Codebooks to keep per level (default: the codec's default).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    n_q: Option<u32>,

    /// Seconds of audio decoded ahead and encoded together.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    batch_seconds: f64,

    /// Most clips in one forward pass of the model.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_batch: u32,

    /// Decoding and resampling threads (default: the number of cores).
    #[arg(long, value_name = "J", value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,

    /// Items shorter than this are recorded as failures (default: one frame of the codec).
    #[arg(long, value_name = "S")]
    min_seconds: Option<f64>,

    /// Items longer than this are recorded as failures (each item is held whole in memory).
    #[arg(long, value_name = "S", default_value_t = 14_400.0)]
    max_seconds: f64,

    /// Redo shards that are already done, and replace an output made with other settings.
    #[arg(long)]
    overwrite: bool,

    /// Print a JSON summary on stdout at the end.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Parquet,
    Webdataset,
    Megatron,
    Npy,
}

impl FormatArg {
    fn format(self) -> Format {
        match self {
            FormatArg::Parquet => Format::Parquet,
            FormatArg::Webdataset => Format::WebDataset,
            FormatArg::Megatron => Format::Megatron,
            FormatArg::Npy => Format::Npy,
        }
    }
}

pub fn run(args: &TokenizeArgs, global: &GlobalArgs) -> anyhow::Result<usize> {
    let shards =
        ShardAssignment::resolve(args.num_shards, args.shard_index, |k| std::env::var(k).ok())?;
    let items = input::discover(&args.inputs)?;
    verbose!("{} inputs, {} shards", items.len(), shards.count);
    let out = store::open(&args.out)?;
    let device = global.device.open()?;
    let terminal = std::io::stderr().is_terminal() && !global.quiet;
    let codec = registry::load_codec(&args.codec, &device, terminal)?;
    let defaults = TokenizeOptions::default();
    let options = TokenizeOptions {
        format: args.format.format(),
        n_q: args.n_q.map(|q| q as usize),
        batch_seconds: args.batch_seconds,
        max_batch: args.max_batch as usize,
        jobs: args.jobs.map_or(defaults.jobs, |j| j as usize),
        overwrite: args.overwrite,
        min_seconds: args.min_seconds,
        max_seconds: args.max_seconds,
    };
    let job = Job {
        codec: codec.as_ref(),
        store: out.as_ref(),
        items: &items,
        shards: shards.clone(),
        options,
    };
    let progress = Progress::new(terminal, !global.quiet);
    let t0 = Instant::now();
    let summary = job.run(&progress)?;
    progress.finish();
    let seconds = t0.elapsed().as_secs_f64();
    let rtf = summary.audio_seconds / seconds.max(1e-9);
    note!(
        "{}: {} shards made, {} already done; {} items encoded, {} failed; {:.2} h of audio in {:.1} s ({:.1}x real time)",
        out.describe(),
        summary.shards_done,
        summary.shards_skipped,
        summary.encoded,
        summary.failed,
        summary.audio_seconds / 3600.0,
        seconds,
        rtf
    );
    if summary.failed > 0 {
        output::error_line(&format!(
            "{} of {} items failed; the reasons are in {}/errors/",
            summary.failed,
            summary.items,
            out.describe()
        ));
    }
    if args.json {
        output::json_line(&json!({
            "out": out.describe(),
            "codec": codec.id(),
            "format": args.format.format().name(),
            "num_shards": shards.count,
            "shards": shards.mine(),
            "shards_done": summary.shards_done,
            "shards_skipped": summary.shards_skipped,
            "items": summary.items,
            "encoded": summary.encoded,
            "failed": summary.failed,
            "audio_seconds": summary.audio_seconds,
            "tokens": summary.tokens,
            "seconds": seconds,
            "real_time_factor": rtf,
        }))?;
    }
    Ok(if summary.failed > 0 { ITEMS_FAILED } else { 0 })
}
