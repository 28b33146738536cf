//! Speculative decoding: a drafter proposes k tokens, one forward pass of the model verifies
//! them, the longest acceptable prefix is kept and both kinds of KV cache roll back the rest.
//!
//! Greedy verification keeps a draft token while it equals the model's argmax, so the output is
//! the model's own greedy output token for token. Sampled verification is rejection sampling
//! (Leviathan et al. 2023; Chen et al. 2023): draft token d, drawn from the drafter's
//! distribution q, is kept with probability min(1, p(d)/q(d)); on rejection the token is drawn
//! from the normalised residual max(0, p - q), so every emitted token follows the model's
//! distribution p whatever the drafter proposes. Drafts only change the speed.

use std::time::Instant;

use candle_core::Tensor;
use tessera_core::{Error, Result};

use crate::generate::{FinishReason, GenerateOptions, Generation};
use crate::kv_cache::DecoderCache;
use crate::model::Decoder;
use crate::mtp::Mtp;
use crate::sampling::{Sampler, argmax};

/// One proposed token and the distribution it was drawn from (`None`: chosen greedily, i.e. a
/// point mass on the token).
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub token: u32,
    pub probs: Option<Vec<f64>>,
}

/// A source of draft tokens that follows the model's verified states.
pub trait Drafter {
    /// The model's normed hidden states for the next positions (`[n, hidden]`, continuing what
    /// the drafter has seen) and the tokens that follow them; `next` may be one shorter than
    /// the rows when the token after the last row is not known yet.
    fn observe(&mut self, model: &Decoder, hidden: Option<&Tensor>, next: &[u32]) -> Result<()>;

    /// Propose up to `k` tokens to follow the last token observed. Tokens are drawn with
    /// `sampler` (greedily when it is greedy); `history` is everything before them.
    fn draft(
        &mut self,
        model: &Decoder,
        k: usize,
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<Vec<Draft>>;

    /// Forget the state that the last [`Drafter::draft`] built on its own guesses.
    fn discard_drafts(&mut self) -> Result<()>;
}

/// Counts of one speculative generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpeculativeStats {
    /// Verification passes.
    pub rounds: usize,
    pub drafted: usize,
    pub accepted: usize,
}

impl SpeculativeStats {
    /// Accepted draft tokens per verification pass.
    pub fn mean_accepted(&self) -> f64 {
        if self.rounds == 0 {
            0.0
        } else {
            self.accepted as f64 / self.rounds as f64
        }
    }

    /// Tokens emitted per verification pass (accepted drafts plus the model's own token).
    pub fn mean_tokens_per_round(&self) -> f64 {
        if self.rounds == 0 {
            0.0
        } else {
            1.0 + self.mean_accepted()
        }
    }
}

/// Generate like [`crate::generate::generate`], drafting `k` tokens per step with `drafter`.
pub fn generate_speculative(
    model: &Decoder,
    drafter: &mut dyn Drafter,
    prompt: &[u32],
    opts: &GenerateOptions,
    k: usize,
) -> Result<(Generation, SpeculativeStats)> {
    if prompt.is_empty() {
        return Err(Error::invalid(
            "the prompt is empty: give at least one token",
        ));
    }
    let mut sampler = Sampler::new(&opts.sampling, opts.seed)?;
    let mut cache = model.new_cache_with(k, prompt.len() + opts.max_new_tokens + k + 1);
    let mut stats = SpeculativeStats::default();

    let t0 = Instant::now();
    let chunk = opts.prefill_chunk.max(1);
    let mut last_logits = None;
    for (i, part) in prompt.chunks(chunk).enumerate() {
        let normed = model.final_norm(&model.forward_hidden(part, &mut cache)?)?;
        let start = i * chunk;
        let next =
            &prompt[(start + 1).min(prompt.len())..(start + part.len() + 1).min(prompt.len())];
        drafter.observe(model, Some(&normed), next)?;
        last_logits = Some(
            model
                .head(&normed.narrow(0, part.len() - 1, 1)?)?
                .squeeze(0)?,
        );
    }
    let prefill_seconds = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let mut history = prompt.to_vec();
    let mut ids = Vec::with_capacity(opts.max_new_tokens);
    let mut finish = FinishReason::Length;
    if opts.max_new_tokens > 0 {
        let logits = last_logits.expect("a non-empty prompt");
        let mut pending = sampler.sample(&logits, &history)?;
        'outer: loop {
            ids.push(pending);
            history.push(pending);
            if opts.stop_tokens.contains(&pending) {
                finish = FinishReason::Stop(pending);
                break;
            }
            if ids.len() >= opts.max_new_tokens {
                break;
            }
            drafter.observe(model, None, &[pending])?;
            // A round emits at most k + 1 tokens: never draft past max_new_tokens.
            let k_round = k.min(opts.max_new_tokens - ids.len() - 1);
            let drafts = drafter.draft(model, k_round, &mut sampler, &history)?;
            let (accepted, next, normed) =
                verify(model, &mut cache, pending, &drafts, &mut sampler, &history)?;
            stats.rounds += 1;
            stats.drafted += drafts.len();
            stats.accepted += accepted;
            cache.rollback(drafts.len() - accepted)?;
            drafter.discard_drafts()?;
            let mut tokens: Vec<u32> = drafts[..accepted].iter().map(|d| d.token).collect();
            tokens.push(next);
            drafter.observe(
                model,
                Some(&normed.narrow(0, 0, accepted + 1)?),
                &tokens[..accepted],
            )?;
            for &t in &tokens[..accepted] {
                ids.push(t);
                history.push(t);
                if opts.stop_tokens.contains(&t) {
                    finish = FinishReason::Stop(t);
                    break 'outer;
                }
            }
            pending = next;
        }
    }
    Ok((
        Generation {
            ids,
            finish,
            prompt_tokens: prompt.len(),
            prefill_seconds,
            decode_seconds: t1.elapsed().as_secs_f64(),
            kv_cache_bytes: cache.allocated_bytes(),
        },
        stats,
    ))
}

/// Run `pending` and the drafts through the model in one pass. Returns how many drafts are
/// accepted, the token that follows them, and the normed hidden states of the pass.
fn verify(
    model: &Decoder,
    cache: &mut DecoderCache,
    pending: u32,
    drafts: &[Draft],
    sampler: &mut Sampler,
    history: &[u32],
) -> Result<(usize, u32, Tensor)> {
    let mut ids = Vec::with_capacity(drafts.len() + 1);
    ids.push(pending);
    ids.extend(drafts.iter().map(|d| d.token));
    let normed = model.final_norm(&model.forward_hidden(&ids, cache)?)?;
    let logits: Vec<Vec<f32>> = model.head(&normed)?.to_vec2()?;
    let mut hist = history.to_vec();
    for (j, d) in drafts.iter().enumerate() {
        match accept_or_resample(sampler, &logits[j], &hist, d)? {
            None => hist.push(d.token),
            Some(replacement) => return Ok((j, replacement, normed)),
        }
    }
    let bonus = sampler.sample_slice(&logits[drafts.len()], &hist)?;
    Ok((drafts.len(), bonus, normed))
}

/// Verify one draft token against the model's logits: `None` if it is kept, otherwise the
/// token to emit instead.
pub fn accept_or_resample(
    sampler: &mut Sampler,
    logits: &[f32],
    history: &[u32],
    draft: &Draft,
) -> Result<Option<u32>> {
    if sampler.is_greedy() {
        let best = argmax(&sampler.process(logits, history));
        return Ok((best != draft.token).then_some(best));
    }
    let p = sampler.distribution(logits, history);
    let t = draft.token as usize;
    if t >= p.len() {
        return Err(Error::invalid(format!(
            "draft token {t} is outside the vocabulary"
        )));
    }
    let q_t = match &draft.probs {
        Some(q) => q.get(t).copied().unwrap_or(0.0),
        None => 1.0,
    };
    if q_t > 0.0 && sampler.uniform() < (p[t] / q_t).min(1.0) {
        return Ok(None);
    }
    let residual: Vec<f64> = match &draft.probs {
        Some(q) => p
            .iter()
            .enumerate()
            .map(|(i, &pi)| (pi - q.get(i).copied().unwrap_or(0.0)).max(0.0))
            .collect(),
        None => {
            let mut r = p.clone();
            r[t] = 0.0;
            r
        }
    };
    // p == q leaves no residual mass, and then rejection has probability zero; guard anyway.
    let token = if residual.iter().sum::<f64>() > 0.0 {
        sampler.draw(&residual)?
    } else {
        sampler.draw(&p)?
    };
    Ok(Some(token))
}

/// Drafts with a model's first MTP layer chained on its own output, as MiMo drafts (MiMo-7B
/// has one MTP layer and applies it repeatedly; checkpoints with more use the first).
///
/// The layer's KV cache follows the verified sequence; the entries of a round's own guesses
/// are rolled back before the verified states are fed in.
#[derive(Debug)]
pub struct MtpDrafter<'a> {
    mtp: &'a Mtp,
    cache: DecoderCache,
    /// A verified hidden row whose next token is not known yet.
    pending_hidden: Option<Tensor>,
    /// The MTP output at the last verified position: the source of the first draft.
    last_out: Option<Tensor>,
    /// Positions the cache took on for the drafts of the current round.
    drafted: usize,
}

impl<'a> MtpDrafter<'a> {
    /// A drafter for up to `max_draft` tokens per round.
    pub fn new(mtp: &'a Mtp, max_draft: usize) -> Self {
        MtpDrafter {
            mtp,
            cache: mtp.new_cache(max_draft.max(1)),
            pending_hidden: None,
            last_out: None,
            drafted: 0,
        }
    }
}

impl Drafter for MtpDrafter<'_> {
    fn observe(&mut self, model: &Decoder, hidden: Option<&Tensor>, next: &[u32]) -> Result<()> {
        let mut rows = Vec::new();
        if let Some(h) = self.pending_hidden.take() {
            rows.push(h);
        }
        if let Some(h) = hidden {
            rows.push(h.clone());
        }
        if rows.is_empty() {
            return Ok(());
        }
        let rows = Tensor::cat(&rows, 0)?;
        let n = rows.dim(0)?;
        if next.len() + 1 < n || next.len() > n {
            return Err(Error::invalid(format!(
                "{n} hidden states cannot be paired with {} next tokens",
                next.len()
            )));
        }
        if next.len() < n {
            self.pending_hidden = Some(rows.narrow(0, n - 1, 1)?);
        }
        if !next.is_empty() {
            let paired = rows.narrow(0, 0, next.len())?;
            let out = self.mtp.forward(0, model, &paired, next, &mut self.cache)?;
            self.last_out = Some(out.narrow(0, next.len() - 1, 1)?);
        }
        Ok(())
    }

    fn draft(
        &mut self,
        model: &Decoder,
        k: usize,
        sampler: &mut Sampler,
        history: &[u32],
    ) -> Result<Vec<Draft>> {
        let mut drafts: Vec<Draft> = Vec::with_capacity(k);
        if k == 0 {
            return Ok(drafts);
        }
        let mut g = self
            .last_out
            .clone()
            .ok_or_else(|| Error::invalid("the MTP drafter has seen no verified token yet"))?;
        let mut hist = history.to_vec();
        for j in 0..k {
            if j > 0 {
                let prev = drafts[j - 1].token;
                g = self.mtp.forward(0, model, &g, &[prev], &mut self.cache)?;
                self.drafted += 1;
            }
            let logits = model.head(&g)?.squeeze(0)?.to_vec1::<f32>()?;
            let draft = if sampler.is_greedy() {
                Draft {
                    token: argmax(&sampler.process(&logits, &hist)),
                    probs: None,
                }
            } else {
                let q = sampler.distribution(&logits, &hist);
                Draft {
                    token: sampler.draw(&q)?,
                    probs: Some(q),
                }
            };
            hist.push(draft.token);
            drafts.push(draft);
        }
        Ok(drafts)
    }

    fn discard_drafts(&mut self) -> Result<()> {
        if self.drafted > 0 {
            self.cache.rollback(self.drafted)?;
            self.drafted = 0;
        }
        Ok(())
    }
}
