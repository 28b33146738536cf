//! Flattening codes into one token stream (for formats that hold one sequence per item).
//!
//! Level k has `n_q_k` codebooks and `T_k` frames; SNAC's finer levels have an integer multiple
//! `r_k = T_k / T_0` of the coarsest level's frames. Tokens are emitted coarse frame by coarse
//! frame: for frame t of level 0, level 0's frame t, then level 1's frames `t*r_1 .. (t+1)*r_1`,
//! and so on; within a frame, codebook 0 first. Codebook q of level k owns the vocabulary range
//! starting at `offset(k, q)` = the sum of the sizes of all codebooks before it, so every
//! (level, codebook, code) maps to one distinct token id.

use serde::{Deserialize, Serialize};
use tessera_core::{Codes, Error, Result};

/// The vocabulary layout of a tokenizer's codes: what [`flatten`] needs, and what manifest.json
/// records so that training code can map token ids back to (level, codebook, code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLayout {
    /// Codebooks per level (the depth actually kept, e.g. after `--n-q`).
    pub n_q: Vec<usize>,
    /// Codebook size of each level.
    pub codebook_sizes: Vec<u32>,
    /// `offsets[k][q]`: first token id of codebook q of level k.
    pub offsets: Vec<Vec<u64>>,
    /// Distinct token ids: the sum of all codebook sizes.
    pub vocab_size: u64,
    /// `frames_per_step[k]`: frames of level k per frame of level 0.
    pub frames_per_step: Vec<usize>,
    /// Tokens per frame of level 0 (`sum_k n_q[k] * frames_per_step[k]`).
    pub tokens_per_step: usize,
}

impl TokenLayout {
    /// The layout for levels with `n_q[k]` codebooks of `codebook_sizes[k]` entries, whose frame
    /// rates are `frame_rates[k]` (each an integer multiple of level 0's).
    pub fn new(n_q: &[usize], codebook_sizes: &[u32], frame_rates: &[f64]) -> Result<Self> {
        if n_q.is_empty() || n_q.len() != codebook_sizes.len() || n_q.len() != frame_rates.len() {
            return Err(Error::invalid(format!(
                "a token layout needs one codebook count, size and frame rate per level, got {}, {} and {}",
                n_q.len(),
                codebook_sizes.len(),
                frame_rates.len()
            )));
        }
        let base = frame_rates[0];
        let mut frames_per_step = Vec::with_capacity(n_q.len());
        for (k, &rate) in frame_rates.iter().enumerate() {
            let ratio = rate / base;
            let r = ratio.round();
            if base.is_nan() || base <= 0.0 || r < 1.0 || (ratio - r).abs() > 1e-6 * r {
                return Err(Error::invalid(format!(
                    "level {k} runs at {rate} Hz, not an integer multiple of level 0's {base} Hz"
                )));
            }
            frames_per_step.push(r as usize);
        }
        let mut offsets = Vec::with_capacity(n_q.len());
        let mut next = 0u64;
        for (&q, &size) in n_q.iter().zip(codebook_sizes) {
            if q == 0 || size == 0 {
                return Err(Error::invalid(
                    "every level needs at least one non-empty codebook",
                ));
            }
            offsets.push((0..q).map(|i| next + i as u64 * size as u64).collect());
            next += q as u64 * size as u64;
        }
        let tokens_per_step = n_q.iter().zip(&frames_per_step).map(|(q, r)| q * r).sum();
        Ok(Self {
            n_q: n_q.to_vec(),
            codebook_sizes: codebook_sizes.to_vec(),
            offsets,
            vocab_size: next,
            frames_per_step,
            tokens_per_step,
        })
    }

    /// The layout of one item's codes (its shapes and metadata).
    pub fn of(codes: &Codes) -> Result<Self> {
        let n_q: Vec<usize> = codes.shapes().iter().map(|s| s[0]).collect();
        let meta = codes.meta();
        Self::new(&n_q, &meta.codebook_sizes, &meta.frame_rates)
    }

    /// Flatten codes with this layout into token ids (see the module docs for the order).
    pub fn flatten(&self, codes: &Codes) -> Result<Vec<u64>> {
        let shapes = codes.shapes();
        if shapes.len() != self.n_q.len() {
            return Err(Error::invalid(format!(
                "the codes have {} levels, the layout {}",
                shapes.len(),
                self.n_q.len()
            )));
        }
        let steps = shapes[0][1];
        let mut levels = Vec::with_capacity(shapes.len());
        for (k, (shape, level)) in shapes.iter().zip(codes.levels()).enumerate() {
            if shape[0] != self.n_q[k] || shape[1] != steps * self.frames_per_step[k] {
                return Err(Error::invalid(format!(
                    "level {k} has shape {:?}, the layout expects [{}, {}]",
                    shape,
                    self.n_q[k],
                    steps * self.frames_per_step[k]
                )));
            }
            levels.push(level.to_vec2::<u32>()?);
        }
        let mut out = Vec::with_capacity(steps * self.tokens_per_step);
        for t in 0..steps {
            for (k, level) in levels.iter().enumerate() {
                let r = self.frames_per_step[k];
                for f in t * r..(t + 1) * r {
                    for (q, row) in level.iter().enumerate() {
                        out.push(self.offsets[k][q] + row[f] as u64);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use candle_core::{Device, Tensor};
    use tessera_core::{Codes, CodesMeta};

    use super::*;

    fn codes(levels: Vec<Vec<Vec<u32>>>, sizes: Vec<u32>, rates: Vec<f64>) -> Codes {
        let tensors = levels
            .into_iter()
            .map(|l| Tensor::new(l, &Device::Cpu).unwrap())
            .collect();
        let meta = CodesMeta {
            tokenizer: "t".into(),
            tokenizer_version: String::new(),
            sample_rate: Some(100),
            n_samples: None,
            image_size: None,
            frame_rates: rates,
            codebook_sizes: sizes,
            extra: BTreeMap::new(),
        };
        Codes::new(tensors, meta).unwrap()
    }

    #[test]
    fn single_level_is_frame_major_with_codebook_offsets() {
        let c = codes(
            vec![vec![vec![1, 2, 3], vec![4, 5, 6]]],
            vec![10],
            vec![5.0],
        );
        let layout = TokenLayout::of(&c).unwrap();
        assert_eq!(layout.offsets, vec![vec![0, 10]]);
        assert_eq!(layout.vocab_size, 20);
        assert_eq!(layout.flatten(&c).unwrap(), vec![1, 14, 2, 15, 3, 16]);
    }

    #[test]
    fn multi_scale_levels_interleave_per_coarse_frame() {
        // SNAC-like: level 1 has twice level 0's frames.
        let c = codes(
            vec![vec![vec![1, 2]], vec![vec![3, 4, 5, 6]]],
            vec![8, 8],
            vec![2.0, 4.0],
        );
        let layout = TokenLayout::of(&c).unwrap();
        assert_eq!(layout.tokens_per_step, 3);
        assert_eq!(layout.flatten(&c).unwrap(), vec![1, 11, 12, 2, 13, 14]);
    }

    #[test]
    fn non_integer_rate_ratios_are_refused() {
        assert!(TokenLayout::new(&[1, 1], &[4, 4], &[2.0, 3.0]).is_err());
        assert!(TokenLayout::new(&[1], &[4, 4], &[2.0]).is_err());
        assert!(TokenLayout::new(&[0], &[4], &[2.0]).is_err());
    }
}
