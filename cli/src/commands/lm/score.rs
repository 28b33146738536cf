//! `tessera lm score --model DIR (--prompt-ids IDS | --prompt TEXT) -o LOGITS.safetensors`

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use serde_json::json;
use tessera_core::Error;
use tessera_lm::generate::DEFAULT_PREFILL_CHUNK;

use super::{ModelArgs, PromptArgs, load};
use crate::GlobalArgs;
use crate::log::note;
use crate::output;

/// The `format` metadata value of a logits file.
const FORMAT_NAME: &str = "tessera-logits";
/// Logits elements (positions x vocabulary) written at most: 8 GiB of f32.
const MAX_LOGITS_ELEMS: u64 = 1 << 31;

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    prompt: PromptArgs,

    /// Where to write the logits (safetensors: `logits` f32 [positions, vocab], `ids`).
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,

    /// Print a JSON summary (positions, speed, mean negative log-likelihood) on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &ScoreArgs, global: &GlobalArgs) -> anyhow::Result<usize> {
    let dir = &args.model.model;
    let loaded = load(&args.model, global)?;
    let model = &loaded.model;
    let ids = loaded.prompt(&args.prompt, dir, 0)?;
    let vocab = model.config().vocab_size;
    let elems = ids.len() as u64 * vocab as u64;
    if elems > MAX_LOGITS_ELEMS {
        return Err(Error::invalid(format!(
            "the logits of {} positions x {vocab} tokens would take {:.1} GiB; score a shorter \
             prompt",
            ids.len(),
            (elems * 4) as f64 / (1u64 << 30) as f64
        ))
        .into());
    }

    let t0 = Instant::now();
    let mut cache = model.new_cache_with(0, ids.len());
    let parts = ids
        .chunks(DEFAULT_PREFILL_CHUNK)
        .map(|part| model.forward(part, &mut cache))
        .collect::<tessera_core::Result<Vec<Tensor>>>()?;
    let logits = Tensor::cat(&parts, 0)?.to_dtype(DType::F32)?;
    let seconds = t0.elapsed().as_secs_f64();

    let id_tensor = Tensor::from_slice(&ids, ids.len(), &candle_core::Device::Cpu)?;
    let logits = logits.to_device(&candle_core::Device::Cpu)?;
    let cfg = model.config();
    let metadata: HashMap<String, String> = [
        ("format", FORMAT_NAME.to_string()),
        ("model", dir.display().to_string()),
        ("family", format!("{:?}", cfg.family).to_lowercase()),
        ("dtype", args.model.dtype.name().to_string()),
        ("positions", ids.len().to_string()),
        ("vocab_size", vocab.to_string()),
        ("tessera_version", env!("CARGO_PKG_VERSION").to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bytes =
        safetensors::tensor::serialize([("logits", &logits), ("ids", &id_tensor)], Some(metadata))
            .map_err(|e| Error::file(&args.output, format!("cannot serialise the logits: {e}")))?;
    tessera_core::fsutil::write_atomic(&args.output, &bytes)?;

    let nll = mean_nll(&logits, &ids)?;
    let tokens_per_s = ids.len() as f64 / seconds.max(1e-9);
    note!(
        "wrote {}: logits of {} positions x {vocab} in {seconds:.2} s ({tokens_per_s:.1} tok/s)",
        args.output.display(),
        ids.len()
    );
    if args.json {
        output::json_line(&json!({
            "model": dir.display().to_string(),
            "output": args.output.display().to_string(),
            "positions": ids.len(),
            "vocab_size": vocab,
            "seconds": seconds,
            "tokens_per_s": tokens_per_s,
            "mean_nll": nll,
            "perplexity": nll.map(f64::exp),
        }))?;
    }
    Ok(0)
}

/// Mean negative log-likelihood of each prompt token after the first, given the ones before;
/// `None` for a one-token prompt.
fn mean_nll(logits: &Tensor, ids: &[u32]) -> candle_core::Result<Option<f64>> {
    if ids.len() < 2 {
        return Ok(None);
    }
    let rows: Vec<Vec<f32>> = logits.narrow(0, 0, ids.len() - 1)?.to_vec2()?;
    let total: f64 = rows
        .iter()
        .zip(&ids[1..])
        .map(|(row, &next)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
            let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            max + sum.ln() - row[next as usize] as f64
        })
        .sum();
    Ok(Some(total / (ids.len() - 1) as f64))
}
