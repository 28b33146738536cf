//! Moves latents between the channels-first layout of codecs, `[batch, dim, frames]`, and one row
//! per frame, `[batch * frames, dim]`, the layout in which a codebook search is one matmul.
//! A residual quantizer converts once on the way in and once on the way out, not per stage.

use crate::Result;
use candle_core::Tensor;

/// `[batch, dim, frames]` to contiguous `[batch * frames, dim]`.
pub(crate) fn to_rows(x: &Tensor) -> Result<Tensor> {
    let (batch, dim, frames) = x.dims3()?;
    Ok(x.transpose(1, 2)?
        .contiguous()?
        .reshape((batch * frames, dim))?)
}

/// `[batch * frames, dim]` back to contiguous `[batch, dim, frames]`.
pub(crate) fn from_rows(rows: &Tensor, batch: usize, frames: usize) -> Result<Tensor> {
    let dim = rows.dim(1)?;
    Ok(rows
        .reshape((batch, frames, dim))?
        .transpose(1, 2)?
        .contiguous()?)
}
