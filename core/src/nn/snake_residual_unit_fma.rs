//! DAC's residual unit in one pass on the FMA kernels (CPUs without AMX): `x + conv2(snake2(
//! conv1(snake1(x))))`, `conv1` a dilated 7-tap conv by minimal filtering (`conv_winograd`),
//! `conv2` pointwise.
//!
//! Conv by conv, `conv1`'s output went to memory and `conv2` read it back through the general
//! gemm, which packed `conv2`'s weights again for every tile of 1024 samples (a megabyte each
//! at 512 channels) and ran at about 180 GFLOP/s where the packed products run at 220. Here a
//! job of `conv1`'s tiles (`conv_winograd::JobGrid`, anchored where the whole-signal pass
//! anchors them, so windows still reproduce it bit for bit) keeps its output in cache,
//! activates it, multiplies it by `conv2`'s weights, packed once (`panel_gemm`), and writes
//! `(x + bias) + product` straight into the unit's output.

use super::conv_cpu::{ConvGeom, PreAct, run_jobs};
use super::conv_winograd::{JobGrid, WinogradWeights};
use super::gemm::{SharedOut, assume_init, uninit_buffer};
use super::panel_gemm::{self, COLS, PackedRows};
use super::snake_cpu::{SnakeParams, snake_in_place};
use super::tile_parts::as_uninit;

/// A unit that fits the pass, with its CPU weights.
pub(crate) struct FmaUnit<'a> {
    pub snake1: SnakeParams<'a>,
    /// Transformed weights and bias of `conv1` (`c -> hidden`).
    pub conv1: (&'a WinogradWeights, Option<&'a [f32]>),
    /// `conv1` over the whole input: stride 1, "same" zero padding, so `l_out = l_in`.
    pub geom: ConvGeom,
    pub snake2: SnakeParams<'a>,
    /// Packed weights `[c, hidden]` and bias of `conv2`.
    pub conv2: (&'a PackedRows, Option<&'a [f32]>),
}

/// Columns of `conv2`'s input per product: about 256 KiB of them, so that they and the
/// product stay in L2 while each block of weights is read once per chunk.
fn chunk_columns(hidden: usize) -> usize {
    ((1 << 16) / hidden.max(1) / COLS * COLS).clamp(COLS, 16 * COLS)
}

/// The unit over `x` (`[batch, c, l]`, contiguous) whose first sample is sample `origin` of the
/// whole signal. Returns `[batch, c, l]`.
pub(crate) fn run(x: &[f32], unit: &FmaUnit, origin: usize) -> Vec<f32> {
    let g = &unit.geom;
    let (c, l, hidden) = (g.c_in, g.l_in, g.c_out);
    debug_assert_eq!(g.l_out(), Some(l));
    let ww = unit.conv1.0;
    let grid = JobGrid::new(ww, g, origin);
    let mut out = uninit_buffer(g.batch * c * l);
    let shared = SharedOut::new_uninit(&mut out);
    let outputs = grid.blocks_per_job * g.dilation * ww.m;
    let work = (ww.components() * c / ww.m + c) * hidden * outputs;
    let chunk = chunk_columns(hidden);
    run_jobs(
        g.batch * grid.jobs_per_batch,
        work,
        |job, scratch, threads| {
            let b = job / grid.jobs_per_batch;
            let xb = &x[b * c * l..][..c * l];
            let pre = Some(PreAct::Snake(unit.snake1));
            let sums = grid.job_sums(job, xb, ww, pre, g, scratch, threads);
            let (lo, hi) = sums.outputs(l);
            let n = hi - lo;
            if n == 0 {
                return;
            }
            // snake2(conv1 + bias): [hidden][n].
            let mut h = std::mem::take(&mut scratch.e);
            h.resize(hidden * n, 0.0);
            for (r, row) in h.chunks_exact_mut(n).enumerate() {
                let bias = unit.conv1.1.map_or(0.0, |bs| bs[r]);
                sums.merge_row(&scratch.d, r, as_uninit(row), None, bias);
                snake_in_place(row, unit.snake2.alpha[r], unit.snake2.inv[r]);
            }
            for c0 in (0..n).step_by(chunk) {
                let cols = chunk.min(n - c0);
                let padded = cols.next_multiple_of(COLS);
                // The chunk in the products' panels, `[panel][hidden][COLS]`, zero past its end.
                let panels = &mut scratch.b;
                panels.resize(padded * hidden, 0.0);
                for (p, panel) in panels.chunks_exact_mut(hidden * COLS).enumerate() {
                    let j0 = c0 + p * COLS;
                    let width = COLS.min(c0 + cols - j0);
                    for (k, dst) in panel.chunks_exact_mut(COLS).enumerate() {
                        dst[..width].copy_from_slice(&h[k * n + j0..][..width]);
                        dst[width..].fill(0.0);
                    }
                }
                let product = &mut scratch.c;
                product.resize(c * padded, 0.0);
                panel_gemm::multiply(unit.conv2.0, panels, cols, product, padded, threads);
                for oc in 0..c {
                    let bias = unit.conv2.1.map_or(0.0, |bs| bs[oc]);
                    let xr = &xb[oc * l + lo + c0..][..cols];
                    let pr = &product[oc * padded..][..cols];
                    // SAFETY: job (b, blocks) alone writes samples lo..hi of batch b's rows, and
                    // writes each of them here, once.
                    unsafe {
                        shared
                            .init_row((b * c + oc) * l + lo + c0, cols, |j| (xr[j] + bias) + pr[j])
                    };
                }
            }
            scratch.e = h;
        },
    );
    // SAFETY: the jobs' blocks cover every sample of every batch, and each job writes every
    // sample of its rows (above).
    unsafe { assume_init(out) }
}
