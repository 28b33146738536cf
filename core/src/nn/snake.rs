//! The Snake activation of BigVGAN/DAC/SNAC: `x + 1 / (alpha + 1e-9) * sin(alpha * x)^2`, with
//! one learned `alpha` per channel.
//!
//! The expression is evaluated in the reference's order (`1 / (alpha + 1e-9)` first, then the
//! product with the squared sine, then the sum) so that results agree to the last bits that f32
//! `sin` allows. On the CPU it is one fused, vectorised pass (see `snake_cpu`) instead of six
//! tensor ops.

use std::sync::Arc;

use candle_core::{CpuStorage, DType, Layout, Module, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::snake_cpu::SnakeParams;

/// Snake with per-channel `alpha` of shape `[1, channels, 1]`.
#[derive(Debug, Clone)]
pub struct Snake1d {
    alpha: Tensor,
    /// `alpha` and `1 / (alpha + 1e-9)` per channel, for the CPU kernel.
    cpu: Option<Arc<(Vec<f32>, Vec<f32>)>>,
}

impl Snake1d {
    pub fn new(alpha: Tensor) -> candle_core::Result<Self> {
        let (one, _, last) = alpha.dims3()?;
        if one != 1 || last != 1 {
            candle_core::bail!(
                "snake alpha must be [1, channels, 1], got {:?}",
                alpha.dims()
            );
        }
        let cpu = if alpha.device().is_cpu() && alpha.dtype() == DType::F32 {
            let a: Vec<f32> = alpha.flatten_all()?.to_vec1()?;
            let inv = a.iter().map(|&a| 1.0 / (a + 1e-9)).collect();
            Some(Arc::new((a, inv)))
        } else {
            None
        };
        Ok(Snake1d { alpha, cpu })
    }

    /// Load `alpha` under `vb`.
    pub fn load(vb: VarBuilder, channels: usize) -> candle_core::Result<Self> {
        Self::new(vb.get((1, channels, 1), "alpha")?)
    }

    pub fn channels(&self) -> usize {
        self.alpha.dims()[1]
    }

    /// The per-channel parameters for the fused CPU kernels (`None` off the CPU or off f32).
    pub(crate) fn cpu_params(&self) -> Option<SnakeParams<'_>> {
        self.cpu.as_ref().map(|p| SnakeParams {
            alpha: &p.0,
            inv: &p.1,
        })
    }
}

impl Module for Snake1d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, c, _) = x.dims3()?;
        if c != self.channels() {
            candle_core::bail!("snake expects {} channels, got {c}", self.channels());
        }
        if let Some(cpu) = &self.cpu
            && x.device().is_cpu()
            && x.dtype() == DType::F32
        {
            return x.contiguous()?.apply_op1_no_bwd(&SnakeOp {
                alpha: &cpu.0,
                inv: &cpu.1,
            });
        }
        let alpha = self.alpha.to_dtype(x.dtype())?;
        let inv = (&alpha + 1e-9)?.recip()?;
        x + inv.broadcast_mul(&x.broadcast_mul(&alpha)?.sin()?.sqr()?)?
    }
}

struct SnakeOp<'a> {
    alpha: &'a [f32],
    inv: &'a [f32],
}

impl candle_core::CustomOp1 for SnakeOp<'_> {
    fn name(&self) -> &'static str {
        "tessera-snake"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = storage.as_slice::<f32>()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("snake needs a contiguous input");
        };
        let x = &data[start..end];
        let (_, c, t) = layout.shape().dims3()?;
        let mut out = vec![0f32; x.len()];
        if t > 0 {
            out.par_chunks_mut(t)
                .zip(x.par_chunks(t))
                .enumerate()
                .for_each(|(row, (o, x))| {
                    let ch = row % c;
                    super::snake_cpu::snake_row(o, x, self.alpha[ch], self.inv[ch]);
                });
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_matches_tensor_ops() {
        let dev = Device::Cpu;
        let alpha = Tensor::new(&[[[0.5f32], [1.0], [2.5]]], &dev).unwrap();
        let x = Tensor::randn(0f32, 2., (2, 3, 50), &dev).unwrap();
        let fused = Snake1d::new(alpha.clone()).unwrap().forward(&x).unwrap();
        let inv = (&alpha + 1e-9).unwrap().recip().unwrap();
        let want = (&x
            + inv
                .broadcast_mul(
                    &x.broadcast_mul(&alpha)
                        .unwrap()
                        .sin()
                        .unwrap()
                        .sqr()
                        .unwrap(),
                )
                .unwrap())
        .unwrap();
        let d: f32 = (fused - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d < 1e-6, "{d}");
    }

    #[test]
    fn wrong_channels_is_an_error() {
        let dev = Device::Cpu;
        let s = Snake1d::new(Tensor::ones((1, 3, 1), DType::F32, &dev).unwrap()).unwrap();
        assert!(
            s.forward(&Tensor::zeros((1, 4, 5), DType::F32, &dev).unwrap())
                .is_err()
        );
        assert!(Snake1d::new(Tensor::ones((3, 1), DType::F32, &dev).unwrap()).is_err());
    }
}
