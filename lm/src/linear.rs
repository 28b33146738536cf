//! A linear layer whose single-row products (a decode step) use every thread.
//!
//! candle's matmul hands a one-row product to the `gemm` crate's matrix-vector path, which runs
//! on one thread: decoding reads every weight once per token, so it is bound by the memory
//! bandwidth that one core can draw. Here the output features are split across the rayon pool,
//! each part a matrix-vector product over its own rows of the weight (f32, CPU); everything
//! else goes through candle.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::gemm::{MatRef, sgemm};

/// Output features per task: large enough that a task streams a few hundred KB of weights.
const ROWS_PER_TASK: usize = 128;

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
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

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
        let y = matmul_t(x, &self.weight)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x @ w^T` for `x` `[rows, in]` (or any rank, rows flattened) and `w` `[out, in]`.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let single_row = x.rank() == 2 && x.dim(0)? == 1;
    if single_row
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && x.device().is_cpu()
        && rayon::current_num_threads() > 1
    {
        return x.apply_op2_no_bwd(w, &RowTimesWeightT);
    }
    match x.rank() {
        2 => x.matmul(&w.t()?),
        _ => x.broadcast_matmul(&w.t()?),
    }
}

/// `[1, in] @ [out, in]^T`, output features in parallel.
struct RowTimesWeightT;

impl CustomOp2 for RowTimesWeightT {
    fn name(&self) -> &'static str {
        "tessera-row-times-weight-t"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, k) = xl.shape().dims2()?;
        let (n, wk) = wl.shape().dims2()?;
        if wk != k {
            candle_core::bail!("linear: input of {k} features, weight of {wk}");
        }
        let (Some((x0, x1)), Some((w0, w1))) = (xl.contiguous_offsets(), wl.contiguous_offsets())
        else {
            candle_core::bail!("linear: row and weight must be contiguous");
        };
        let x = &xs.as_slice::<f32>()?[x0..x1];
        let w = &ws.as_slice::<f32>()?[w0..w1];
        let mut out = vec![0f32; n];
        out.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(c, dst)| {
                let rows = dst.len();
                let part = &w[c * ROWS_PER_TASK * k..];
                sgemm(
                    1,
                    rows,
                    k,
                    dst,
                    rows,
                    MatRef {
                        data: x,
                        rs: k,
                        cs: 1,
                    },
                    MatRef {
                        data: part,
                        rs: 1,
                        cs: k,
                    },
                );
            });
        Ok((CpuStorage::F32(out), Shape::from((1, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn single_rows_match_candle() {
        let dev = Device::Cpu;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (k, n) in [(5, 1), (64, 300), (96, 1000)] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
            let x = Tensor::randn(0f32, 1.0, (1, k), &dev).unwrap();
            let layer = Linear::new(w.clone(), Some(b.clone()));
            let got = pool.install(|| layer.forward(&x).unwrap());
            let want = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let err = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(err < 1e-4, "k {k} n {n}: {err}");
        }
    }
}
