//! Residual additions on the rayon pool (f32, CPU). candle runs large element-wise ops on its own
//! second thread pool, whose idle worker spins for a while after each op, competing with the
//! rayon workers that run the matrix products; keeping the residual stream on rayon leaves the
//! prefill with one pool.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task; smaller sums run on the calling thread.
const CHUNK: usize = 1 << 15;

struct Add;

impl CustomOp2 for Add {
    fn name(&self) -> &'static str {
        "tessera-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some((a0, a1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("add: inputs must be contiguous");
        };
        if l1.shape() != l2.shape() {
            candle_core::bail!("add: shapes {:?} and {:?}", l1.dims(), l2.dims());
        }
        let a = &s1.as_slice::<f32>()?[a0..a1];
        let b = &s2.as_slice::<f32>()?[b0..b1];
        let mut out = vec![0f32; a.len()];
        let add = |((o, a), b): ((&mut [f32], &[f32]), &[f32])| {
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = a + b;
            }
        };
        if a.len() >= 2 * CHUNK {
            out.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK))
                .zip(b.par_chunks(CHUNK))
                .for_each(add);
        } else {
            add(((&mut out, a), b));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `a + b` (same shape).
pub fn add(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let fast = a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && a.device().is_cpu()
        && a.shape() == b.shape()
        && a.is_contiguous()
        && b.is_contiguous();
    if fast {
        a.apply_op2_no_bwd(b, &Add)
    } else {
        a + b
    }
}
