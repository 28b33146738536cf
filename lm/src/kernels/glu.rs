//! Gated MLP activations on the fused gate/up projection: `[len, 2 * inter]` (gate, then up) to
//! `[len, inter]` = act(gate) * up, in one parallel pass (f32, CPU). SwiGLU (Llama, Qwen, MiMo)
//! and GeGLU with the tanh GELU (Gemma): libm's `tanhf` (which calls `expm1f`) was 16% of a
//! Gemma 3 prefill on candle's element-wise path.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::exp;

/// Rows per parallel task.
const ROWS: usize = 16;

/// The gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Silu,
    GeluTanh,
}

/// `act(gate) * up` over rows of `[gate | up]`.
#[derive(Debug, Clone, Copy)]
pub struct GatedUnit(pub Gate);

impl CustomOp1 for GatedUnit {
    fn name(&self) -> &'static str {
        "tessera-gated-unit"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (len, both) = l.shape().dims2()?;
        if !both.is_multiple_of(2) {
            candle_core::bail!("gated unit: {both} columns is not gate + up");
        }
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("gated unit: input must be contiguous");
        };
        let x = &s.as_slice::<f32>()?[a..b];
        let inter = both / 2;
        let mut out = vec![0f32; len * inter];
        let gate = self.0;
        let rows = |(o, x): (&mut [f32], &[f32])| {
            for (o, x) in o.chunks_exact_mut(inter).zip(x.chunks_exact(both)) {
                let (g, u) = x.split_at(inter);
                // One loop per activation, so that each vectorises.
                match gate {
                    Gate::Silu => {
                        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                            *o = exp::silu(g) * u;
                        }
                    }
                    Gate::GeluTanh => {
                        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                            *o = exp::gelu_tanh(g) * u;
                        }
                    }
                }
            }
        };
        if len >= 2 * ROWS {
            out.par_chunks_mut(ROWS * inter)
                .zip(x.par_chunks(ROWS * both))
                .for_each(rows);
        } else {
            rows((&mut out, x));
        }
        Ok((CpuStorage::F32(out), Shape::from((len, inter))))
    }
}
