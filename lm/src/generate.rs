//! Autoregressive generation: chunked prefill of the prompt, then one token per forward call.

use std::time::Instant;

use candle_core::Tensor;
use tessera_core::{Error, Result};

use crate::kv_cache::DecoderCache;
use crate::model::Decoder;
use crate::sampling::{Sampler, SamplingParams};

/// Prompt positions per forward call while prefilling: bounds the attention scores of a long
/// prompt to chunk x (cache + chunk) instead of prompt x prompt.
pub const DEFAULT_PREFILL_CHUNK: usize = 512;

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    pub seed: u64,
    /// Generation ends after any of these tokens (which is kept in the output).
    pub stop_tokens: Vec<u32>,
    pub prefill_chunk: usize,
}

impl GenerateOptions {
    /// Greedy, no stop tokens, default prefill chunk.
    pub fn new(max_new_tokens: usize) -> Self {
        GenerateOptions {
            max_new_tokens,
            sampling: SamplingParams::greedy(),
            seed: 0,
            stop_tokens: Vec::new(),
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
        }
    }

    /// Stop at the model's end-of-sequence tokens.
    pub fn stop_at_eos(mut self, model: &Decoder) -> Self {
        self.stop_tokens = model.config().eos_token_ids.clone();
        self
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` were generated.
    Length,
    /// A stop token was generated.
    Stop(u32),
    /// The caller's callback asked to stop.
    Cancelled,
}

/// The tokens generated and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// Bytes held by the KV cache at the end.
    pub kv_cache_bytes: u64,
}

impl Generation {
    /// Generated tokens per second of decoding (the first token comes from the prefill).
    pub fn decode_tokens_per_s(&self) -> f64 {
        let n = self.ids.len().saturating_sub(1);
        if self.decode_seconds > 0.0 {
            n as f64 / self.decode_seconds
        } else {
            0.0
        }
    }

    pub fn prefill_tokens_per_s(&self) -> f64 {
        if self.prefill_seconds > 0.0 {
            self.prompt_tokens as f64 / self.prefill_seconds
        } else {
            0.0
        }
    }
}

/// Run `ids` through the model in chunks of `chunk` positions; logits (`[vocab]`) of the last.
pub fn prefill(
    model: &Decoder,
    ids: &[u32],
    cache: &mut DecoderCache,
    chunk: usize,
) -> Result<Tensor> {
    if ids.is_empty() {
        return Err(Error::invalid(
            "the prompt is empty: give at least one token",
        ));
    }
    let chunk = chunk.max(1);
    let mut last = None;
    for part in ids.chunks(chunk) {
        last = Some(model.forward_last(part, cache)?);
    }
    Ok(last.expect("at least one chunk"))
}

/// Generate up to `opts.max_new_tokens` tokens after `prompt`.
pub fn generate(model: &Decoder, prompt: &[u32], opts: &GenerateOptions) -> Result<Generation> {
    generate_with(model, prompt, opts, |_| true)
}

/// [`generate`], calling `on_token` with each new token as it comes; it returns `false` to stop.
pub fn generate_with(
    model: &Decoder,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Generation> {
    let mut sampler = Sampler::new(&opts.sampling, opts.seed)?;
    // The last generated token is emitted, never fed back: the cache holds one position less.
    let positions = prompt.len() + opts.max_new_tokens.saturating_sub(1);
    let mut cache = model.new_cache_with(0, positions);
    let mut history = prompt.to_vec();
    let t0 = Instant::now();
    let mut logits = prefill(model, prompt, &mut cache, opts.prefill_chunk)?;
    let prefill_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut ids = Vec::with_capacity(opts.max_new_tokens);
    let mut finish = FinishReason::Length;
    while ids.len() < opts.max_new_tokens {
        let next = sampler.sample(&logits, &history)?;
        ids.push(next);
        history.push(next);
        if !on_token(next) {
            finish = FinishReason::Cancelled;
            break;
        }
        if opts.stop_tokens.contains(&next) {
            finish = FinishReason::Stop(next);
            break;
        }
        if ids.len() == opts.max_new_tokens {
            break;
        }
        logits = model.forward_last(&[next], &mut cache)?;
    }
    Ok(Generation {
        ids,
        finish,
        prompt_tokens: prompt.len(),
        prefill_seconds,
        decode_seconds: t1.elapsed().as_secs_f64(),
        kv_cache_bytes: cache.allocated_bytes(),
    })
}
