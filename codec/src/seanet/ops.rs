//! Elementwise pieces of SEANet: ELU and the one-group GroupNorm of `time_group_norm` models.

use candle_core::{CpuStorage, DType, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use tessera_core::nn::elu_into;

/// `nn.ELU()` (alpha 1): `x` for `x > 0`, `expm1(x)` otherwise. torch uses `expm1`, which keeps
/// full relative precision for small negative inputs where `exp(x) - 1` (candle's `elu`) does
/// not; on the CPU this op matches torch, elsewhere it falls back to candle's.
pub(crate) fn elu(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&Elu)
    } else {
        x.elu(1.0)
    }
}

struct Elu;

impl candle_core::CustomOp1 for Elu {
    fn name(&self) -> &'static str {
        "tessera-elu"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = storage.as_slice::<f32>()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("elu needs a contiguous input");
        };
        let src = &data[start..end];
        let mut out = vec![0f32; src.len()];
        // Long signals are split across threads; each piece stays large enough to amortise.
        out.par_chunks_mut(1 << 16)
            .zip(src.par_chunks(1 << 16))
            .for_each(|(o, i)| elu_into(o, i));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// `nn.GroupNorm(1, C)`: every item normalised over all its channels and samples, then scaled
/// and shifted per channel (EnCodec's `time_group_norm`).
#[derive(Debug, Clone)]
pub(crate) struct GroupNorm1 {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl GroupNorm1 {
    pub fn load(vb: VarBuilder, channels: usize) -> candle_core::Result<Self> {
        Ok(GroupNorm1 {
            weight: vb.get(channels, "weight")?.reshape((1, channels, 1))?,
            bias: vb.get(channels, "bias")?.reshape((1, channels, 1))?,
            eps: 1e-5,
        })
    }

    /// Statistics in f64 (torch sums them pairwise; a plain f32 sum over a whole second of
    /// 32-channel audio would be far less accurate than either), then `x * a + b` with
    /// `a = rstd * weight` and `b = bias - a * mean` per channel, as torch's kernel applies it.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let flat = x.to_dtype(DType::F64)?.reshape((b, c * t))?;
        let mean = flat.mean_keepdim(1)?;
        let var = flat.broadcast_sub(&mean)?.sqr()?.mean_keepdim(1)?;
        let rstd = ((var + self.eps)?.sqrt()?.recip()?).to_dtype(x.dtype())?;
        let mean = mean.to_dtype(x.dtype())?.reshape((b, 1, 1))?;
        let scale = rstd.reshape((b, 1, 1))?.broadcast_mul(&self.weight)?;
        let shift = self.bias.broadcast_sub(&scale.broadcast_mul(&mean)?)?;
        x.broadcast_mul(&scale)?.broadcast_add(&shift)
    }
}
