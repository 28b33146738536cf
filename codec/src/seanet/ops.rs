//! Elementwise pieces of SEANet: ELU and the one-group GroupNorm of `time_group_norm` models.

use candle_core::{CpuStorage, DType, Layout, Shape, Tensor};
use candle_nn::VarBuilder;

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
        let out: Vec<f32> = data[start..end]
            .iter()
            .map(|&v| if v > 0.0 { v } else { v.exp_m1() })
            .collect();
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

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        let flat = x.reshape((b, c * t))?;
        let mean = flat.mean_keepdim(1)?;
        let centred = flat.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .reshape((b, c, t))?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}
