//! Fused attention on the CPU in f32: scores, scaling, soft-capping, the causal (windowed) mask,
//! sinks, softmax and the weighted sum of values in one pass over blocks of queries.
//!
//! Work is split into (KV head, block of query positions) tasks run in parallel. A task packs
//! the queries of every head of its group at those positions into one matrix (the group shares
//! the keys), multiplies it with only the keys some query of the block can see, and applies the
//! mask row by row as index ranges, so that nothing is computed for the keys above the diagonal
//! or before a window, no `[queries, keys]` mask is built, and the probabilities are normalised
//! on the (narrower) output rows. The order of operations per score is the reference's:
//! dot product, times the softmax scale, soft-capping, mask, softmax with the row maximum
//! (including the sink) subtracted.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use super::exp;
use super::gemm::{MatRef, sgemm};
use crate::kv_cache::KeyMask;

/// Query positions per task: with GQA groups of 2-8 heads, 128-512 rows per score block.
const BLOCK: usize = 64;
/// Below this many multiply-adds the tasks run on the calling thread (a decode step).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// The attention of `[len, heads, head_dim]` queries over `[1, kv_heads, keys, dim]` keys and
/// values (any strides with unit last stride), giving `[len, heads * v_head_dim]`.
#[derive(Debug, Clone, Copy)]
pub struct FusedAttention<'a> {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub v_head_dim: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
    pub mask: KeyMask,
    /// One sink logit per query head.
    pub sinks: Option<&'a [f32]>,
}

/// A strided `[kv_heads, keys, dim]` view of a rank-3 or rank-4 (leading 1) tensor.
struct HeadsView<'a> {
    data: &'a [f32],
    head_stride: usize,
    row_stride: usize,
    keys: usize,
}

impl<'a> HeadsView<'a> {
    fn new(s: &'a CpuStorage, l: &Layout, heads: usize, dim: usize) -> candle_core::Result<Self> {
        let dims = l.dims();
        let stride = l.stride();
        let r = dims.len();
        if !(r == 3 || (r == 4 && dims[0] == 1)) || dims[r - 3] != heads || dims[r - 1] != dim {
            candle_core::bail!("fused attention: keys/values of shape {dims:?}");
        }
        if stride[r - 1] != 1 {
            candle_core::bail!("fused attention: keys/values need a unit last stride");
        }
        Ok(HeadsView {
            data: &s.as_slice::<f32>()?[l.start_offset()..],
            head_stride: stride[r - 3],
            row_stride: stride[r - 2],
            keys: dims[r - 2],
        })
    }

    /// Rows `a..b` of head `h` as a `(b - a) x dim` matrix, or transposed (`dim x (b - a)`).
    fn rows(&self, h: usize, a: usize, transposed: bool) -> MatRef<'a> {
        let data = &self.data[h * self.head_stride + a * self.row_stride..];
        if transposed {
            MatRef {
                data,
                rs: 1,
                cs: self.row_stride,
            }
        } else {
            MatRef {
                data,
                rs: self.row_stride,
                cs: 1,
            }
        }
    }
}

impl FusedAttention<'_> {
    /// Keys `lo..hi` that the query at index `i` sees.
    fn visible(&self, i: usize, keys: usize) -> (usize, usize) {
        match self.mask {
            KeyMask::All => (0, keys),
            KeyMask::Causal {
                first_key,
                first_query,
                window,
            } => {
                let q = first_query + i;
                let hi = (q + 1).saturating_sub(first_key).min(keys);
                let lo = window.map_or(0, |w| (q + 1).saturating_sub(w).saturating_sub(first_key));
                (lo.min(hi), hi)
            }
        }
    }

    /// Softmax of one score row over `a..e` (in place; zero outside); returns 1 / denominator.
    fn softmax_row(&self, row: &mut [f32], a: usize, e: usize, sink: Option<f32>) -> f32 {
        let visible = &mut row[a..e];
        for x in visible.iter_mut() {
            *x *= self.scale;
        }
        if let Some(cap) = self.softcap {
            for x in visible.iter_mut() {
                *x = (*x / cap).tanh() * cap;
            }
        }
        let mut m = exp::max(visible);
        if let Some(s) = sink {
            m = m.max(s);
        }
        for x in visible.iter_mut() {
            *x = exp::exp(*x - m);
        }
        let mut sum = exp::sum(visible);
        if let Some(s) = sink {
            sum += exp::exp(s - m);
        }
        row[..a].fill(0.0);
        row[e..].fill(0.0);
        if sum > 0.0 { 1.0 / sum } else { 0.0 }
    }

    /// One task: the queries `i0..i1` of the heads of KV head `g`; `[(i1 - i0) * group, v_dim]`.
    fn task(
        &self,
        q: &[f32],
        k: &HeadsView<'_>,
        v: &HeadsView<'_>,
        g: usize,
        i0: usize,
        i1: usize,
    ) -> Vec<f32> {
        let (h, d, vd) = (self.num_heads, self.head_dim, self.v_head_dim);
        let group = h / self.num_kv_heads;
        let rows = (i1 - i0) * group;
        let keys = k.keys;
        let (kstart, _) = self.visible(i0, keys);
        let (_, kend) = self.visible(i1 - 1, keys);
        let nk = kend.saturating_sub(kstart);
        let mut out = vec![0f32; rows * vd];
        if nk == 0 {
            return out;
        }
        // The heads of one group are adjacent in `[len, heads, dim]`: each position's rows are
        // one contiguous run.
        let mut packed = Vec::with_capacity(rows * d);
        for i in i0..i1 {
            let at = (i * h + g * group) * d;
            packed.extend_from_slice(&q[at..at + group * d]);
        }
        let mut scores = vec![0f32; rows * nk];
        sgemm(
            rows,
            nk,
            d,
            &mut scores,
            nk,
            MatRef {
                data: &packed,
                rs: d,
                cs: 1,
            },
            k.rows(g, kstart, true),
        );
        let mut inv = vec![0f32; rows];
        for (r, row) in scores.chunks_exact_mut(nk).enumerate() {
            let (i, j) = (i0 + r / group, r % group);
            let (lo, hi) = self.visible(i, keys);
            let sink = self.sinks.map(|s| s[g * group + j]);
            inv[r] = self.softmax_row(row, lo - kstart, hi - kstart, sink);
        }
        sgemm(
            rows,
            vd,
            nk,
            &mut out,
            vd,
            MatRef {
                data: &scores,
                rs: nk,
                cs: 1,
            },
            v.rows(g, kstart, false),
        );
        for (row, s) in out.chunks_exact_mut(vd).zip(&inv) {
            for x in row {
                *x *= s;
            }
        }
        out
    }
}

impl CustomOp3 for FusedAttention<'_> {
    fn name(&self) -> &'static str {
        "tessera-fused-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (h, kvh, d, vd) = (
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.v_head_dim,
        );
        if kvh == 0 || !h.is_multiple_of(kvh) {
            candle_core::bail!("fused attention: {h} heads over {kvh} KV heads");
        }
        let (len, qh, qd) = ql.shape().dims3()?;
        if qh != h || qd != d {
            candle_core::bail!("fused attention: queries of shape {:?}", ql.dims());
        }
        let Some((q0, q1)) = ql.contiguous_offsets() else {
            candle_core::bail!("fused attention: queries must be contiguous");
        };
        let q = &qs.as_slice::<f32>()?[q0..q1];
        let k = HeadsView::new(ks, kl, kvh, d)?;
        let v = HeadsView::new(vs, vl, kvh, vd)?;
        if v.keys != k.keys {
            candle_core::bail!("fused attention: {} keys but {} values", k.keys, v.keys);
        }
        if self.sinks.is_some_and(|s| s.len() != h) {
            candle_core::bail!("fused attention: one sink per head needed");
        }
        let group = h / kvh;
        let blocks = len.div_ceil(BLOCK);
        let tasks: Vec<(usize, usize, usize)> = (0..kvh)
            .flat_map(|g| (0..blocks).map(move |b| (g, b * BLOCK, ((b + 1) * BLOCK).min(len))))
            .collect();
        let run = |&(g, i0, i1): &(usize, usize, usize)| self.task(q, &k, &v, g, i0, i1);
        let parts: Vec<Vec<f32>> = if len * k.keys * h * (d + vd) < PARALLEL_MIN_MACS {
            tasks.iter().map(run).collect()
        } else {
            tasks.par_iter().map(run).collect()
        };
        let mut out = vec![0f32; len * h * vd];
        for (&(g, i0, i1), part) in tasks.iter().zip(&parts) {
            let run_len = group * vd;
            for (r, i) in (i0..i1).enumerate() {
                let at = (i * h + g * group) * vd;
                out[at..at + run_len].copy_from_slice(&part[r * run_len..(r + 1) * run_len]);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((len, h * vd))))
    }
}
