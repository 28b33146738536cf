//! SwiGLU on the fused gate/up projection: `[len, 2 * inter]` (gate, then up) to
//! `[len, inter]` = silu(gate) * up, in one parallel pass (f32, CPU).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use rayon::prelude::*;

use super::exp;

/// Rows per parallel task.
const ROWS: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct SwiGlu;

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "tessera-swiglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (len, both) = l.shape().dims2()?;
        if !both.is_multiple_of(2) {
            candle_core::bail!("swiglu: {both} columns is not gate + up");
        }
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("swiglu: input must be contiguous");
        };
        let x = &s.as_slice::<f32>()?[a..b];
        let inter = both / 2;
        let mut out = vec![0f32; len * inter];
        let rows = |(o, x): (&mut [f32], &[f32])| {
            for (o, x) in o.chunks_exact_mut(inter).zip(x.chunks_exact(both)) {
                let (gate, up) = x.split_at(inter);
                for ((o, &g), &u) in o.iter_mut().zip(gate).zip(up) {
                    *o = exp::silu(g) * u;
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
