//! `tessera`: discrete tokens for audio and images, from the command line.
//!
//! This binary is thin: it parses arguments, calls the libraries and reports. Exit status 0 on
//! success, 1 when any input failed (each failure one `error: PATH: REASON` line on stderr),
//! 2 for usage errors, and 3 when `dataset tokenize` finished but some items failed (they are
//! recorded under OUT/errors/; the count is on stderr and in the `--json` summary).

mod commands;
mod log;
mod output;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use tessera_core::DeviceSpec;

// candle allocates a fresh buffer per op; glibc maps large buffers afresh each time, which costs
// 1.3-2x end to end on codec workloads. mimalloc keeps and reuses them.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Let mimalloc keep freed memory for 30 s before it returns it to the OS. Codecs free and
/// re-allocate signal-sized buffers (hundreds of MB for 10 s of DAC) every few milliseconds; with
/// mimalloc's default (purge after 1 s) each came back as fresh pages that the kernel zeroes
/// again: 31 700 page faults and 11% of the CPU time of a DAC 16 kHz encode-and-decode profile,
/// and 24% of its decode time (4.3 -> 3.3 s). Freed memory is reused either way, so peak RSS is
/// about the same; only idle memory is returned later.
fn keep_freed_memory() {
    use libmimalloc_sys::{mi_option_t, mi_option_use_numa_nodes};
    // `mi_option_purge_delay` and `mi_option_arena_purge_mult`, which the bindings do not name:
    // slots 15 and 24 of the option enum of the mimalloc v3 that Cargo.lock pins (around
    // `use_numa_nodes`, 16). All memory is in arenas in v3: the delay is their product.
    const PURGE_DELAY: mi_option_t = mi_option_use_numa_nodes - 1;
    const ARENA_PURGE_MULT: mi_option_t = mi_option_use_numa_nodes + 8;
    // SAFETY: setting an option is always allowed; mimalloc reads these at each purge.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 1000);
        libmimalloc_sys::mi_option_set(ARENA_PURGE_MULT, 30);
    }
}

/// Turn audio and images into discrete codes that an LLM can read and write, and back.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, long_about = None)]
#[command(after_help = "Run `tessera <COMMAND> --help` for the options of one command.")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

/// Options every command understands.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Where models run: cpu, cuda, cuda:N or metal (cuda/metal need a build with that feature).
    #[arg(long, global = true, default_value = "cpu", value_name = "DEVICE")]
    pub device: DeviceSpec,

    /// Worker threads for CPU compute (default: all cores).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub threads: Option<u16>,

    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more detail about what is happening (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what audio files and codes files hold.
    ///
    /// For audio: container format, codec, sample rate, channels, frames and duration, read from
    /// the header (use --exact to count frames by decoding). For codes files: the tokenizer that
    /// made them, the levels and their [codebooks, frames] shapes, frame rates and the duration of
    /// the audio they describe.
    Info(commands::info::InfoArgs),

    /// List the codec ids: sample rates, frame rates, levels, codebooks, bitrates.
    Codecs(commands::codecs::CodecsArgs),

    /// Encode an audio file into discrete codes with a codec.
    ///
    /// The audio is decoded, resampled to the codec's rate and mixed to its channel count; the
    /// codes are written as a safetensors file whose metadata names the codec, so `tessera
    /// decode` needs nothing else.
    Encode(commands::encode::EncodeArgs),

    /// Decode a codes file back to audio (WAV), trimmed to the original length.
    Decode(commands::decode::DecodeArgs),

    /// Tokenise audio datasets into sharded Parquet, WebDataset, Megatron or npy output.
    ///
    /// `tokenize` encodes the inputs (files, directories, @lists, JSONL manifests) shard by
    /// shard, resumable and safe to run as many workers (Slurm arrays, Kubernetes Indexed Jobs,
    /// Ray); `merge` writes manifest.json (and the combined Megatron index) when all shards are
    /// done; `status` shows what is done, missing and failed.
    Dataset(commands::dataset::DatasetArgs),

    /// Run a decoder checkpoint (Llama, Qwen2/3, Gemma 3, MiMo): generate tokens, score a prompt.
    Lm(commands::lm::LmArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    log::set_level(if cli.global.quiet {
        log::Level::Quiet
    } else {
        log::Level::from_verbosity(cli.global.verbose)
    });
    if let Some(n) = cli.global.threads {
        // candle and rayon read these when their pools start; nothing has started yet.
        // SAFETY: single-threaded at this point of main.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
    }
    let outcome = match cli.command {
        Command::Info(args) => commands::info::run(&args, &cli.global),
        Command::Codecs(args) => commands::codecs::run(&args),
        Command::Encode(args) => commands::encode::run(&args, &cli.global),
        Command::Decode(args) => commands::decode::run(&args, &cli.global),
        Command::Dataset(args) => commands::dataset::run(&args, &cli.global),
        Command::Lm(args) => commands::lm::run(&args, &cli.global),
    };
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(commands::dataset::ITEMS_FAILED) => {
            ExitCode::from(commands::dataset::ITEMS_FAILED as u8)
        }
        Ok(_failures) => ExitCode::from(1),
        Err(e) => {
            output::error_line(&e);
            ExitCode::from(1)
        }
    }
}
