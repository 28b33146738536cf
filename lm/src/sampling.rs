//! Choosing the next token: logits processors as small composable pieces, and a seeded sampler.
//!
//! Each processor rewrites f32 logits over the vocabulary in place (a removed token gets -inf),
//! with the semantics of the transformers processor of the same name, applied in transformers'
//! order: repetition penalty, temperature, top-k, top-p, min-p.

use std::fmt::Debug;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_core::{Error, Result};

/// One step of logits processing. `history` holds the prompt and the tokens generated so far.
pub trait LogitsProcessor: Debug + Send + Sync {
    fn process(&self, logits: &mut [f32], history: &[u32]);
}

/// Divides positive and multiplies negative logits of tokens already seen by the penalty.
#[derive(Debug, Clone, Copy)]
pub struct RepetitionPenalty(pub f32);

impl LogitsProcessor for RepetitionPenalty {
    fn process(&self, logits: &mut [f32], history: &[u32]) {
        let mut seen = vec![false; logits.len()];
        for &t in history {
            let t = t as usize;
            if t < logits.len() && !seen[t] {
                seen[t] = true;
                let l = &mut logits[t];
                *l = if *l < 0.0 { *l * self.0 } else { *l / self.0 };
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Temperature(pub f32);

impl LogitsProcessor for Temperature {
    fn process(&self, logits: &mut [f32], _: &[u32]) {
        for l in logits {
            *l /= self.0;
        }
    }
}

/// Keeps the tokens whose logit is at least the k-th largest (ties at the boundary stay).
#[derive(Debug, Clone, Copy)]
pub struct TopK(pub usize);

impl LogitsProcessor for TopK {
    fn process(&self, logits: &mut [f32], _: &[u32]) {
        let k = self.0.min(logits.len());
        if k == 0 || k == logits.len() {
            return;
        }
        let mut sorted: Vec<f32> = logits.to_vec();
        let (_, kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        let kth = *kth;
        for l in logits {
            if *l < kth {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// Nucleus sampling: drops the least likely tokens whose total probability is at most 1 - p.
#[derive(Debug, Clone, Copy)]
pub struct TopP(pub f32);

impl LogitsProcessor for TopP {
    fn process(&self, logits: &mut [f32], _: &[u32]) {
        if self.0 >= 1.0 {
            return;
        }
        let probs = softmax(logits);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
        let threshold = 1.0 - self.0 as f64;
        let mut cumulative = 0.0;
        // Ascending order; the most likely token is always kept.
        for &i in &order[..order.len().saturating_sub(1)] {
            cumulative += probs[i];
            if cumulative <= threshold {
                logits[i] = f32::NEG_INFINITY;
            } else {
                break;
            }
        }
    }
}

/// Drops tokens less likely than `p` times the most likely one.
#[derive(Debug, Clone, Copy)]
pub struct MinP(pub f32);

impl LogitsProcessor for MinP {
    fn process(&self, logits: &mut [f32], _: &[u32]) {
        let probs = softmax(logits);
        let top = probs.iter().cloned().fold(0.0, f64::max);
        let min = self.0 as f64 * top;
        for (l, p) in logits.iter_mut().zip(&probs) {
            if *p < min {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// Softmax in f64 (removed tokens at -inf get probability 0).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    if max == f64::NEG_INFINITY {
        return vec![0.0; logits.len()];
    }
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Index of the largest logit (the first one on ties, as torch's argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The usual sampling settings. `temperature` 0 means greedy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            min_p: None,
            repetition_penalty: None,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::invalid(what.to_string()));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature must be a finite number >= 0 (0 = greedy)");
        }
        if self.top_k == Some(0) {
            return bad("top-k must be at least 1");
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return bad("top-p must lie in (0, 1]");
        }
        if let Some(p) = self.min_p
            && !(0.0..=1.0).contains(&p)
        {
            return bad("min-p must lie in [0, 1]");
        }
        if let Some(r) = self.repetition_penalty
            && !(r.is_finite() && r > 0.0)
        {
            return bad("the repetition penalty must be a positive number");
        }
        Ok(())
    }

    /// The processors these settings stand for, in transformers' order.
    pub fn processors(&self) -> Vec<Box<dyn LogitsProcessor>> {
        let mut p: Vec<Box<dyn LogitsProcessor>> = Vec::new();
        if let Some(r) = self.repetition_penalty
            && r != 1.0
        {
            p.push(Box::new(RepetitionPenalty(r)));
        }
        if !self.is_greedy() {
            if self.temperature != 1.0 {
                p.push(Box::new(Temperature(self.temperature)));
            }
            if let Some(k) = self.top_k {
                p.push(Box::new(TopK(k)));
            }
            if let Some(tp) = self.top_p {
                p.push(Box::new(TopP(tp)));
            }
            if let Some(mp) = self.min_p {
                p.push(Box::new(MinP(mp)));
            }
        }
        p
    }
}

/// Processors plus a seeded random source: turns logits into tokens.
#[derive(Debug)]
pub struct Sampler {
    processors: Vec<Box<dyn LogitsProcessor>>,
    greedy: bool,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: &SamplingParams, seed: u64) -> Result<Self> {
        params.validate()?;
        Ok(Sampler {
            processors: params.processors(),
            greedy: params.is_greedy(),
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// A sampler from processors of the caller's choosing (`greedy`: argmax after them).
    pub fn from_processors(
        processors: Vec<Box<dyn LogitsProcessor>>,
        greedy: bool,
        seed: u64,
    ) -> Self {
        Sampler {
            processors,
            greedy,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Add a processor after the existing ones.
    pub fn push(&mut self, p: Box<dyn LogitsProcessor>) {
        self.processors.push(p);
    }

    pub fn is_greedy(&self) -> bool {
        self.greedy
    }

    /// Processed logits.
    pub fn process(&self, logits: &[f32], history: &[u32]) -> Vec<f32> {
        let mut l = logits.to_vec();
        for p in &self.processors {
            p.process(&mut l, history);
        }
        l
    }

    /// The distribution the next token is drawn from (one-hot when greedy).
    pub fn distribution(&self, logits: &[f32], history: &[u32]) -> Vec<f64> {
        let l = self.process(logits, history);
        if self.greedy {
            let mut p = vec![0.0; l.len()];
            p[argmax(&l) as usize] = 1.0;
            p
        } else {
            softmax(&l)
        }
    }

    /// Draw a token from f32 logits (a `[vocab]` tensor).
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> Result<u32> {
        let logits = logits.to_vec1::<f32>()?;
        self.sample_slice(&logits, history)
    }

    pub fn sample_slice(&mut self, logits: &[f32], history: &[u32]) -> Result<u32> {
        let l = self.process(logits, history);
        if self.greedy {
            return Ok(argmax(&l));
        }
        let probs = softmax(&l);
        self.draw(&probs)
    }

    /// Draw an index from a distribution (weights need not sum to exactly one).
    pub fn draw(&mut self, probs: &[f64]) -> Result<u32> {
        let total: f64 = probs.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            return Err(Error::invalid(
                "no token left to sample: every logit was removed or is not a number",
            ));
        }
        let u = self.uniform() * total;
        let mut acc = 0.0;
        let mut last = 0;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                acc += p;
                last = i;
                if u < acc {
                    return Ok(i as u32);
                }
            }
        }
        Ok(last as u32)
    }

    /// A uniform number in [0, 1) from the sampler's seeded source.
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }
}

#[cfg(test)]
mod tests;
