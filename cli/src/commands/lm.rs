//! `tessera lm generate|score`: run a decoder checkpoint (Llama, Qwen2/3, Gemma 3, MiMo).

mod generate;
mod score;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use tessera_core::Error;
use tessera_lm::{Decoder, TextTokenizer};

use crate::GlobalArgs;
use crate::log::verbose;

#[derive(Debug, clap::Args)]
pub struct LmArgs {
    #[command(subcommand)]
    command: LmCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LmCommand {
    /// Generate tokens after a prompt (greedy unless sampling options are given).
    ///
    /// Prints the generated text when the model directory has a tokenizer.json, else the
    /// generated ids; --json prints one object with the ids, text, speeds and KV-cache size.
    Generate(generate::GenerateArgs),

    /// Write the logits of every position of a prompt to a safetensors file.
    ///
    /// The file holds `logits` (f32, [positions, vocab]) and `ids` (u32, [positions]); its
    /// metadata names the model. --json adds the mean negative log-likelihood of the prompt.
    Score(score::ScoreArgs),
}

pub fn run(args: &LmArgs, global: &GlobalArgs) -> anyhow::Result<usize> {
    match &args.command {
        LmCommand::Generate(a) => generate::run(a, global),
        LmCommand::Score(a) => score::run(a, global),
    }
}

/// The checkpoint and how to compute with it.
#[derive(Debug, clap::Args)]
struct ModelArgs {
    /// Checkpoint directory in its Hugging Face layout (config.json + weights, and
    /// tokenizer.json for text prompts and output).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,

    /// Compute precision; bf16 and f16 halve memory but do not match an f32 reference exactly.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DTypeArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DTypeArg {
    F32,
    Bf16,
    F16,
}

impl DTypeArg {
    fn dtype(self) -> DType {
        match self {
            DTypeArg::F32 => DType::F32,
            DTypeArg::Bf16 => DType::BF16,
            DTypeArg::F16 => DType::F16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            DTypeArg::F32 => "f32",
            DTypeArg::Bf16 => "bf16",
            DTypeArg::F16 => "f16",
        }
    }
}

/// The prompt, as text or as token ids.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct PromptArgs {
    /// Prompt text, tokenized with the model's tokenizer.json (special tokens such as BOS
    /// added as the tokenizer's template adds them).
    #[arg(long, value_name = "TEXT")]
    prompt: Option<String>,

    /// Prompt token ids, comma-separated (e.g. 1,2,3).
    #[arg(long, value_name = "IDS", value_parser = parse_ids)]
    prompt_ids: Option<TokenIds>,
}

/// A comma-separated list of token ids.
#[derive(Debug, Clone)]
struct TokenIds(Vec<u32>);

fn parse_ids(s: &str) -> Result<TokenIds, String> {
    let ids = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| format!("'{t}' is not a token id (ids are whole numbers >= 0)"))
        })
        .collect::<Result<Vec<u32>, String>>()?;
    if ids.is_empty() {
        return Err("no token ids given".into());
    }
    Ok(TokenIds(ids))
}

/// A loaded checkpoint with its tokenizer (when the directory has one).
struct Loaded {
    model: Decoder,
    tokenizer: Option<TextTokenizer>,
}

fn load(args: &ModelArgs, global: &GlobalArgs) -> tessera_core::Result<Loaded> {
    let device: Device = global.device.open()?;
    let dir = &args.model;
    verbose!("loading {}", dir.display());
    let model = Decoder::load(dir, args.dtype.dtype(), &device).map_err(|e| e.with_path(dir))?;
    let tokenizer = if dir.join("tokenizer.json").is_file() {
        Some(TextTokenizer::from_checkpoint_dir(dir)?)
    } else {
        None
    };
    Ok(Loaded { model, tokenizer })
}

impl Loaded {
    /// The prompt's token ids, checked against the vocabulary and the model's context.
    fn prompt(
        &self,
        prompt: &PromptArgs,
        dir: &Path,
        extra_positions: usize,
    ) -> tessera_core::Result<Vec<u32>> {
        let ids = match (&prompt.prompt, &prompt.prompt_ids) {
            (_, Some(TokenIds(ids))) => ids.clone(),
            (Some(text), None) => {
                let tok = match &self.tokenizer {
                    Some(t) => t,
                    None => {
                        return Err(Error::file(
                            dir,
                            "no tokenizer.json here to turn --prompt into tokens; \
                             pass --prompt-ids instead",
                        ));
                    }
                };
                let ids = tok.encode(text, true)?;
                if ids.is_empty() {
                    return Err(Error::invalid("the prompt text makes no tokens"));
                }
                ids
            }
            (None, None) => return Err(Error::invalid("give --prompt or --prompt-ids")),
        };
        let cfg = self.model.config();
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(Error::file(
                dir,
                format!(
                    "prompt token id {bad} is outside the model's vocabulary (ids 0..{})",
                    cfg.vocab_size - 1
                ),
            ));
        }
        let positions = ids.len().saturating_add(extra_positions);
        if positions > cfg.max_position_embeddings {
            return Err(Error::file(
                dir,
                format!(
                    "{} prompt tokens + {extra_positions} more positions exceed the model's \
                     context of {} (max_position_embeddings)",
                    ids.len(),
                    cfg.max_position_embeddings
                ),
            ));
        }
        Ok(ids)
    }
}
