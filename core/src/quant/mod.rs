//! Quantizers: vector quantizer, residual VQ, FSQ and LFQ, on candle tensors.
//!
//! Every quantizer takes latents channels-first, `[batch, dim, frames]`, as audio codecs produce
//! them, and turns them into `u32` codes `[batch, frames]` (residual VQ: `[batch, n_q, frames]`).
//! `decode` maps codes back to `[batch, dim, frames]`. Each one follows a reference
//! implementation closely enough that codes are identical to it, including which index wins a tie
//! (the first, as `torch.argmin`/`max` pick it): see `docs/quantizers.md`.
//!
//! Parameters come either as plain tensors (`new`, `with_projections`) or from a
//! [`candle_nn::VarBuilder`] positioned at the quantizer's prefix (`load`), so that codecs can
//! build them straight from checkpoint weights.

mod distance;
mod fsq;
mod lfq;
mod projection;
mod rows;
mod rvq;
mod validate;
mod vq;

pub use distance::Distance;
pub use fsq::Fsq;
pub use lfq::{BitOrder, Lfq};
pub use projection::Projection;
pub use rvq::ResidualVectorQuantizer;
pub use vq::{CodebookKey, VectorQuantizer, VqLayout, codebook_from_ema};

use crate::Result;
use candle_core::Tensor;

/// A quantizer: continuous latents `[batch, dim, frames]` to integer codes and back.
pub trait Quantizer {
    /// Codes of the nearest codebook entries, `u32`. `[batch, frames]` for single quantizers,
    /// `[batch, n_q, frames]` for residual ones.
    fn encode(&self, x: &Tensor) -> Result<Tensor>;

    /// The latents `[batch, dim, frames]` that `codes` stand for.
    fn decode(&self, codes: &Tensor) -> Result<Tensor>;

    /// Number of distinct codes of one codebook; every code is below it.
    fn codebook_size(&self) -> usize;

    /// Channel count of the latents that `encode` takes and `decode` returns.
    fn dim(&self) -> usize;
}
