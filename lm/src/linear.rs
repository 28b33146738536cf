//! A linear layer that can stack several into one (q/k/v, gate/up): one gemm instead of
//! several, so fewer passes over the input and fewer synchronisations of the thread pool.
//!
//! Splitting a decode step's matrix-vector products over threads was tried and dropped: on the
//! 2-core machine it was 20% slower than candle's single-threaded path (one extra fork-join per
//! layer and no more memory bandwidth to gain).

use candle_core::{DType, Module, Tensor};

use crate::kernels::linear::{ParallelLinear, ParallelLinearBias};

/// From this many rows on, f32 products on the CPU split their output columns between threads
/// (see `kernels/linear.rs`); fewer rows (decode, short verification passes) are
/// matrix-vector work that candle's path serves well.
const PARALLEL_MIN_ROWS: usize = 8;

#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    weight: Tensor,
    bias: Option<Tensor>,
}

/// `{name}.weight` (`[out, in]`) and, with `bias`, `{name}.bias`, as transformers names them.
pub fn load(
    inp: usize,
    out: usize,
    bias: bool,
    vb: candle_nn::VarBuilder,
) -> candle_core::Result<Linear> {
    let weight = vb.get((out, inp), "weight")?;
    let bias = if bias {
        Some(vb.get(out, "bias")?)
    } else {
        None
    };
    Ok(Linear { weight, bias })
}

impl Linear {
    /// Stack layers computing side by side into one (weights and biases by rows).
    pub fn concat(parts: &[Linear]) -> candle_core::Result<Linear> {
        let weights: Vec<&Tensor> = parts.iter().map(|l| &l.weight).collect();
        let weight = Tensor::cat(&weights, 0)?;
        let bias = if parts.iter().any(|l| l.bias.is_some()) {
            // Parts without a bias add zeros.
            let biases = parts
                .iter()
                .map(|l| match &l.bias {
                    Some(b) => Ok(b.clone()),
                    None => Tensor::zeros(l.weight.dim(0)?, l.weight.dtype(), l.weight.device()),
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let parallel = x.rank() == 2
            && x.dim(0)? >= PARALLEL_MIN_ROWS
            && x.dtype() == DType::F32
            && self.weight.dtype() == DType::F32
            && x.device().is_cpu()
            && self.weight.is_contiguous();
        if parallel {
            let x = x.contiguous()?;
            return match &self.bias {
                Some(b) => x.apply_op3_no_bwd(&self.weight, b, &ParallelLinearBias),
                None => x.apply_op2_no_bwd(&self.weight, &ParallelLinear),
            };
        }
        let y = matmul_t(x, &self.weight)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x @ w^T` for `x` `[rows, in]` (or any rank, rows flattened) and `w` `[out, in]`.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    match x.rank() {
        2 => x.matmul(&w.t()?),
        _ => x.broadcast_matmul(&w.t()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn stacked_layers_compute_side_by_side() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 8), &dev).unwrap();
        let a = Linear {
            weight: Tensor::randn(0f32, 1.0, (5, 8), &dev).unwrap(),
            bias: None,
        };
        let b = Linear {
            weight: Tensor::randn(0f32, 1.0, (4, 8), &dev).unwrap(),
            bias: Some(Tensor::randn(0f32, 1.0, 4, &dev).unwrap()),
        };
        let both = Linear::concat(&[a.clone(), b.clone()]).unwrap();
        let want = Tensor::cat(&[a.forward(&x).unwrap(), b.forward(&x).unwrap()], 1).unwrap();
        let err = (both.forward(&x).unwrap() - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err < 1e-5, "{err}");
    }
}
