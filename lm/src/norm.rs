//! RMSNorm over the last dimension.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

/// RMSNorm whose scale is `offset + w` (offset 0 for Llama/Qwen/MiMo, 1 for Gemma).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(vb: VarBuilder, dim: usize, eps: f64, offset: f64) -> candle_core::Result<Self> {
        let dtype = vb.dtype();
        let w = vb.get_with_hints_dtype(dim, "weight", Default::default(), DType::F32)?;
        // Gemma adds one to the weight in f32 before scaling; do it once here.
        let weight = if offset != 0.0 { (w + offset)? } else { w }.to_dtype(dtype)?;
        Ok(RmsNorm {
            weight,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}
