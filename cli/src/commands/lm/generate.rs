//! `tessera lm generate --model DIR (--prompt TEXT | --prompt-ids IDS) [sampling] [--json]`

use serde_json::{Value, json};
use tessera_core::Error;
use tessera_lm::{
    FinishReason, GenerateOptions, Generation, Mtp, MtpDrafter, SamplingParams, SpeculativeStats,
    generate, generate_speculative,
};

use super::{Loaded, ModelArgs, PromptArgs, load};
use crate::GlobalArgs;
use crate::log::{note, verbose};
use crate::output;

/// More new tokens than any model's context could hold is a typing mistake, not a request.
const MAX_NEW_TOKENS: u32 = 1 << 26;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    prompt: PromptArgs,

    /// Tokens to generate at most (fewer when an end-of-sequence token comes first).
    #[arg(long, value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(0..=MAX_NEW_TOKENS as i64))]
    max_new_tokens: u32,

    /// Sampling temperature; 0 is greedy. Default: greedy, or 1 when --top-k/--top-p/--min-p
    /// is given.
    #[arg(long, value_name = "T")]
    temperature: Option<f32>,

    /// Keep only the K most likely tokens before sampling.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    top_k: Option<u32>,

    /// Keep the smallest set of most likely tokens whose probability reaches P (0 < P <= 1).
    #[arg(long, value_name = "P")]
    top_p: Option<f32>,

    /// Drop tokens less likely than P times the most likely one (0 <= P <= 1).
    #[arg(long, value_name = "P")]
    min_p: Option<f32>,

    /// Divide the logits of tokens already in the prompt or output by R (> 1 discourages
    /// repeats), as transformers does.
    #[arg(long, value_name = "R")]
    repetition_penalty: Option<f32>,

    /// Seed of the sampler: the same seed and options give the same tokens. Default: drawn
    /// from the clock (and reported with --json).
    #[arg(long, value_name = "S")]
    seed: Option<u64>,

    /// Keep generating after end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,

    /// Speculative decoding with the checkpoint's multi-token-prediction layers (MiMo): the
    /// output is the same, only faster when the MTP layers predict well.
    #[arg(long, value_enum, value_name = "METHOD")]
    speculative: Option<SpeculativeMethod>,

    /// Tokens drafted per verification pass with --speculative.
    #[arg(long, value_name = "K", default_value_t = 3, requires = "speculative",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    draft: u32,

    /// Print one JSON object (ids, text, speeds, KV-cache bytes) instead of the text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SpeculativeMethod {
    /// The checkpoint's MTP layers draft the tokens.
    Mtp,
}

impl GenerateArgs {
    fn sampling(&self) -> SamplingParams {
        let filters = self.top_k.is_some() || self.top_p.is_some() || self.min_p.is_some();
        let default_temperature = if filters { 1.0 } else { 0.0 };
        SamplingParams {
            temperature: self.temperature.unwrap_or(default_temperature),
            top_k: self.top_k.map(|k| k as usize),
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
        }
    }
}

pub fn run(args: &GenerateArgs, global: &GlobalArgs) -> anyhow::Result<usize> {
    let dir = &args.model.model;
    let sampling = args.sampling();
    // Bad sampling values are argument errors: say so before loading anything.
    sampling.validate()?;
    let loaded = load(&args.model, global)?;
    let model = &loaded.model;
    let max_new = args.max_new_tokens as usize;
    let draft = args.speculative.map_or(0, |_| args.draft as usize);
    let prompt = loaded.prompt(&args.prompt, dir, max_new + draft)?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut opts = GenerateOptions {
        sampling,
        seed,
        ..GenerateOptions::new(max_new)
    };
    if !args.ignore_eos {
        opts = opts.stop_at_eos(model);
    }
    verbose!(
        "{} prompt tokens, up to {max_new} new, seed {seed}",
        prompt.len()
    );
    let (generation, stats) = match args.speculative {
        None => (generate(model, &prompt, &opts)?, None),
        Some(SpeculativeMethod::Mtp) => {
            let mtp = Mtp::load(dir, model)?.ok_or_else(|| {
                Error::file(
                    dir,
                    "--speculative mtp needs multi-token-prediction layers \
                     (model.mtp_layers.* or model.mtp.layers.*) and this checkpoint has none",
                )
            })?;
            let mut drafter = MtpDrafter::new(&mtp, draft);
            let (g, s) = generate_speculative(model, &mut drafter, &prompt, &opts, draft)?;
            (g, Some(s))
        }
    };
    let text = match &loaded.tokenizer {
        Some(tok) => Some(tok.decode(&generation.ids, true)?),
        None => None,
    };
    let report = Report {
        loaded: &loaded,
        args,
        generation: &generation,
        stats,
        seed,
    };
    if args.json {
        output::json_line(&report.json(text.as_deref()))?;
    } else {
        match &text {
            Some(t) => println!("{t}"),
            None => println!("{}", join_ids(&generation.ids)),
        }
        note!("{}", report.summary());
    }
    Ok(0)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn join_ids(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

struct Report<'a> {
    loaded: &'a Loaded,
    args: &'a GenerateArgs,
    generation: &'a Generation,
    stats: Option<SpeculativeStats>,
    seed: u64,
}

impl Report<'_> {
    /// Positions the cache holds at the end: the last token is emitted, never fed back.
    fn positions(&self) -> usize {
        let g = self.generation;
        g.prompt_tokens + g.ids.len().saturating_sub(1)
    }

    /// What the same model with every layer global would hold for those positions.
    fn all_global_bytes(&self) -> u64 {
        let cfg = self.loaded.model.config();
        let elem = self.loaded.model.dtype().size_in_bytes();
        cfg.all_global().kv_cache_bytes(self.positions(), elem)
    }

    fn total_tokens_per_s(&self) -> f64 {
        let g = self.generation;
        let seconds = g.prefill_seconds + g.decode_seconds;
        if seconds > 0.0 {
            g.ids.len() as f64 / seconds
        } else {
            0.0
        }
    }

    fn json(&self, text: Option<&str>) -> Value {
        let g = self.generation;
        let model = &self.loaded.model;
        let (finish, stop_token) = match g.finish {
            FinishReason::Length => ("length", None),
            FinishReason::Stop(t) => ("stop", Some(t)),
            FinishReason::Cancelled => ("cancelled", None),
        };
        let mut v = json!({
            "model": self.args.model.model.display().to_string(),
            "family": format!("{:?}", model.config().family).to_lowercase(),
            "dtype": self.args.model.dtype.name(),
            "prompt_tokens": g.prompt_tokens,
            "ids": g.ids,
            "finish": finish,
            "seed": self.seed,
            "prefill_seconds": g.prefill_seconds,
            "decode_seconds": g.decode_seconds,
            "tokens_per_s": self.total_tokens_per_s(),
            "prefill_tokens_per_s": g.prefill_tokens_per_s(),
            "decode_tokens_per_s": g.decode_tokens_per_s(),
            "kv_cache_positions": self.positions(),
            "kv_cache_bytes": g.kv_cache_bytes,
            "kv_cache_bytes_all_global": self.all_global_bytes(),
        });
        let obj = v.as_object_mut().expect("an object");
        if let Some(t) = text {
            obj.insert("text".into(), json!(t));
        }
        if let Some(t) = stop_token {
            obj.insert("stop_token".into(), json!(t));
        }
        if let Some(s) = self.stats {
            obj.insert("mean_accepted".into(), json!(s.mean_accepted()));
            obj.insert(
                "speculative".into(),
                json!({
                    "method": "mtp",
                    "draft": self.args.draft,
                    "rounds": s.rounds,
                    "drafted": s.drafted,
                    "accepted": s.accepted,
                    "mean_accepted": s.mean_accepted(),
                    "tokens_per_round": s.mean_tokens_per_round(),
                }),
            );
        }
        v
    }

    fn summary(&self) -> String {
        let g = self.generation;
        let mut s = format!(
            "{} tokens after {} prompt tokens: prefill {:.1} tok/s, decode {:.1} tok/s; \
             KV cache {} (all layers global: {})",
            g.ids.len(),
            g.prompt_tokens,
            g.prefill_tokens_per_s(),
            g.decode_tokens_per_s(),
            bytes(g.kv_cache_bytes),
            bytes(self.all_global_bytes()),
        );
        if let Some(st) = self.stats {
            s.push_str(&format!(
                "; {:.2} drafts accepted per pass of {}",
                st.mean_accepted(),
                self.args.draft
            ));
        }
        s
    }
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= MIB {
        format!("{:.1} MiB", n as f64 / MIB)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
