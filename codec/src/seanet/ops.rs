//! Elementwise pieces of SEANet: ELU and the one-group GroupNorm of `time_group_norm` models.

use candle_core::{CpuStorage, DType, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

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
            .for_each(|(o, i)| {
                for (o, &v) in o.iter_mut().zip(i) {
                    *o = elu_f32(v);
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// ELU of one value, branch-free so that the loop over a tensor vectorises: `expm1` from a
/// Cody-Waite reduction `x = k ln2 + r`, a degree-8 Taylor polynomial for `expm1(r)` on
/// `|r| <= ln2 / 2`, and `expm1(x) = 2^k expm1(r) + (2^k - 1)` (exact scaling, one rounding).
/// Within 2 ulp of the exact value, like torch's vectorised `expm1` (1 ulp).
#[inline(always)]
pub(crate) fn elu_f32(v: f32) -> f32 {
    const INV_LN2: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and removing 1.5 * 2^23 rounds to the nearest integer in plain SSE2 arithmetic
    // (`round` would be a library call on baseline x86-64 and stop vectorisation).
    const ROUND: f32 = 12_582_912.0;
    let x = v.clamp(-88.0, 0.0);
    let shifted = x * INV_LN2 + ROUND;
    let k = shifted - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = r + r
        * r
        * (0.5
            + r * (1.0 / 6.0
                + r * (1.0 / 24.0
                    + r * (1.0 / 120.0
                        + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0)))))));
    // k sits in the low mantissa bits of `shifted`: 2^k without a float-to-int conversion
    // (which would not vectorise either).
    let k_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let scale = f32::from_bits((k_int.wrapping_add(127) << 23) as u32);
    let e = scale * p + (scale - 1.0);
    if v > 0.0 { v } else { e }
}

#[cfg(test)]
mod tests {
    use super::elu_f32;

    /// Within 2 ulp of `expm1` computed in f64, over the whole negative range.
    #[test]
    fn elu_is_accurate() {
        let mut worst = 0f64;
        let mut x = -100f32;
        while x < 0.0 {
            let want = (x as f64).exp_m1();
            let got = elu_f32(x) as f64;
            let ulp = (want.abs() as f32).max(f32::MIN_POSITIVE) as f64 * f32::EPSILON as f64;
            worst = worst.max((got - want).abs() / ulp);
            x = if x < -1e-3 {
                x * 0.999_9 + 1e-7
            } else {
                x * 0.99
            };
            if x > -1e-30 {
                break;
            }
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(elu_f32(0.0), 0.0);
        assert_eq!(elu_f32(2.5), 2.5);
        assert_eq!(elu_f32(-200.0), -1.0);
        assert!(elu_f32(f32::NAN).is_nan());
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
