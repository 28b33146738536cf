//! Argument checks shared by the quantizers, so that a caller gets one clear sentence instead of
//! a candle shape error from deep inside a matmul (or a silently wrong code).

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Checks that `x` is `[batch, dim, frames]` floats on `device`; returns `(batch, frames)`.
pub(crate) fn latents(
    x: &Tensor,
    dim: usize,
    device: &Device,
    who: &str,
) -> Result<(usize, usize)> {
    let &[batch, channels, frames] = x.dims() else {
        return Err(Error::invalid(format!(
            "{who}: expected latents of shape [batch, {dim}, frames], got {:?}",
            x.dims()
        )));
    };
    if channels != dim {
        return Err(Error::invalid(format!(
            "{who}: expected {dim} channels, got latents of shape {:?}",
            x.dims()
        )));
    }
    if !x.dtype().is_float() {
        return Err(Error::invalid(format!(
            "{who}: latents must be floating point, got {:?}",
            x.dtype()
        )));
    }
    same_device(x, device, who)?;
    Ok((batch, frames))
}

/// Checks that `codes` are `u32` of rank `rank` on `device` (`layout` names the expected shape in
/// the message).
pub(crate) fn codes(
    codes: &Tensor,
    layout: &str,
    rank: usize,
    device: &Device,
    who: &str,
) -> Result<()> {
    if codes.rank() != rank {
        return Err(Error::invalid(format!(
            "{who}: expected codes of shape {layout}, got {:?}",
            codes.dims()
        )));
    }
    if codes.dtype() != DType::U32 {
        return Err(Error::invalid(format!(
            "{who}: codes must be u32, got {:?}",
            codes.dtype()
        )));
    }
    same_device(codes, device, who)
}

/// Checks that every code of `codes` (any shape, `u32`) is below `size`.
pub(crate) fn code_range(codes: &Tensor, size: usize, who: &str) -> Result<()> {
    if codes.elem_count() == 0 {
        return Ok(());
    }
    let max = codes.max_all()?.to_scalar::<u32>()?;
    if max as usize >= size {
        return Err(Error::invalid(format!(
            "{who}: code {max} is out of range for a codebook of {size} entries"
        )));
    }
    Ok(())
}

fn same_device(t: &Tensor, device: &Device, who: &str) -> Result<()> {
    if !t.device().same_device(device) {
        return Err(Error::invalid(format!(
            "{who}: input is on {:?} but the quantizer's parameters are on {:?}",
            t.device().location(),
            device.location()
        )));
    }
    Ok(())
}
