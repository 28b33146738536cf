//! Dense convolutions on AMX tiles (`nn::amx`), as accurate as f32.
//!
//! A conv is a matrix product whose left rows overlap: output step `t` multiplies the window of
//! `kernel` input steps from `t * stride` by the weight. With the input time-major
//! (`[time][c_in]`), that window is `kernel * c_in` consecutive values, so the tiles read every
//! row straight from the input, `stride * c_in` values apart, with no im2col copy. Each time
//! tile is padded in channel-major order as the other kernels do (`conv_cpu::fill_span`;
//! Snake is applied there, ELU as the tile is split), then transposed and split into three
//! bf16 planes once; the weight (`[c_out][kernel][c_in]`) is split once at load. A dilated
//! conv's taps are not adjacent rows: each tap reads a window of its own, and the tile kernel
//! sums the taps in its accumulators.
//! A transposed conv is a stride-1 conv over input frames ([`TileConvTranspose`]).
//!
//! The products come out time-major and are transposed back, 16 x 16 at a time in registers,
//! as the bias and residual are added.
//!
//! Every output sample depends only on its own window, summed in one fixed order, so a window
//! of a long signal gives the same bits as the whole signal.

use super::amx::{self, AmxRight, BLOCK, KSTEP, SplitPlanes, TILE, Tiles, WindowPart};
use super::conv::EdgeMode;
use std::ops::Range;

use rayon::prelude::*;

use super::conv_cpu::{
    ConvGeom, ConvTrGeom, Fusion, PreAct, Scratch, fill_span, run_jobs, with_thread_scratch,
};
use super::gemm::{SharedOut, assume_init, uninit_buffer};

/// Input channels must be a whole number of tile rows' worth of `k` (32 bf16), so that every
/// window starts on a cache line.
const CHANNEL_MULTIPLE: usize = 32;

/// A conv's weight split for the tiles.
#[derive(Debug, Clone)]
pub(crate) struct TileConv {
    right: AmxRight,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
}

impl TileConv {
    /// Whether the tiles can run this conv: AMX is there, one group, input channels in whole
    /// lines. A dilated conv runs each tap as a product of its own.
    pub(crate) fn fits(c_in: usize, kernel: usize, dilation: usize, groups: usize) -> bool {
        groups == 1
            && dilation >= 1
            && kernel >= 1
            && c_in.is_multiple_of(CHANNEL_MULTIPLE)
            && amx::available()
    }

    /// From torch's weight `[c_out, c_in, kernel]`.
    pub(crate) fn new(
        w: &[f32],
        (c_out, c_in, kernel): (usize, usize, usize),
        stride: usize,
        dilation: usize,
    ) -> Self {
        assert_eq!(w.len(), c_out * c_in * kernel, "tile conv: weight shape");
        // Window order: tap-major, then channel (the time-major input's order).
        let mut windowed = vec![0f32; w.len()];
        for o in 0..c_out {
            for ci in 0..c_in {
                for kx in 0..kernel {
                    windowed[(o * kernel + kx) * c_in + ci] = w[(o * c_in + ci) * kernel + kx];
                }
            }
        }
        TileConv {
            right: AmxRight::from_transposed(&windowed, c_out, kernel * c_in),
            c_in,
            c_out,
            kernel,
            stride,
            dilation,
        }
    }

    /// The split weight, `[c_out][kernel * c_in]`.
    pub(super) fn right(&self) -> &AmxRight {
        &self.right
    }

    pub(super) fn shape(&self) -> (usize, usize, usize, usize) {
        (self.c_in, self.c_out, self.kernel, self.stride)
    }

    pub(super) fn dilation(&self) -> usize {
        self.dilation
    }

    /// Whether a call with this geometry fits the weight.
    pub(crate) fn applies(&self, g: &ConvGeom, f: &Fusion) -> bool {
        g.groups == 1
            && g.dilation == self.dilation
            && g.c_in == self.c_in
            && g.c_out == self.c_out
            && g.kernel == self.kernel
            && g.stride == self.stride
            && f.post.is_none()
    }
}

/// Where the input's activation is applied: an ELU as the tile is split (`true`; it maps 0 to 0
/// and commutes with copied edges), any other, or one before a time scale, as the samples are
/// copied (returned for `fill_span`).
fn split_activation(pre: Option<PreAct>, scaled: bool) -> (Option<PreAct>, bool) {
    match pre {
        Some(PreAct::Elu) if !scaled => (None, true),
        other => (other, false),
    }
}

/// Split weights from this size on are worth streaming once per call instead of once per time
/// tile (see [`conv1d_tiles`]).
const COLUMN_SPLIT_WEIGHT: usize = 16 << 20;
/// The most bytes of planes a call split by columns may hold per thread (the whole signal's).
const COLUMN_SPLIT_PLANES: usize = 16 << 20;

/// The conv over `x` (`[batch, c_in, l_in]`), with every fusion but `post`.
///
/// Jobs are time tiles, each running every output column block over its steps: the split
/// weight is streamed from memory once per tile. Where it is large and the signal short, each
/// thread instead takes a share of the column blocks over the whole signal, splitting the
/// input for itself: the weight is streamed once. Mimi's decoder's first conv (512 -> 1024,
/// 7 taps, 22 MB of split weight over 250 steps, 8 tiles): 6.2 -> 4.9 ms (medians of 20 calls,
/// alternated). Its encoder's 512 -> 1024 stride-8 conv (50 MB) is unchanged at 19-20 ms: its
/// windows of 8192 values fit L2 with neither operand, and reading them bounds it.
pub(crate) fn conv1d_tiles(x: &[f32], conv: &TileConv, f: &Fusion, g: &ConvGeom) -> Vec<f32> {
    conv1d_tiles_split(x, conv, f, g, None)
}

/// [`conv1d_tiles`] by time tiles or by shares of the column blocks over the whole signal:
/// as `by_columns` says, else as the sizes call for.
fn conv1d_tiles_split(
    x: &[f32],
    conv: &TileConv,
    f: &Fusion,
    g: &ConvGeom,
    by_columns: Option<bool>,
) -> Vec<f32> {
    debug_assert!(conv.applies(g, f));
    let l_out = g.l_out().expect("checked by the caller");
    let tile = tile_steps(conv.stride * conv.c_in, l_out, conv.right.bytes());
    let n_tiles = l_out.div_ceil(tile);
    let col_blocks = conv.right.column_blocks().end;
    let threads = rayon::current_num_threads();
    let reach = (g.kernel - 1) * g.dilation + 1;
    let by_columns = by_columns.unwrap_or_else(|| {
        let whole_planes = window_rows(l_out, g.stride, reach) * g.c_in * 6;
        n_tiles > 1
            && threads > 1
            && col_blocks >= threads
            && conv.right.bytes() >= COLUMN_SPLIT_WEIGHT
            && whole_planes <= COLUMN_SPLIT_PLANES
    });
    let mut out = uninit_buffer(g.batch * g.c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    // Steps t0..t0 + nt of batch item b, column blocks `cbs`.
    let run = |b: usize, (t0, nt): (usize, usize), cbs: Range<usize>, scratch: &mut Scratch| {
        let xb = &x[b * g.c_in * g.l_in..][..g.c_in * g.l_in];
        let first = (t0 * g.stride) as isize - g.padding as isize;
        let len = (nt - 1) * g.stride + (g.kernel - 1) * g.dilation + 1;
        let scale = f.in_scale.map(|s| &s[b * g.l_in..][..g.l_in]);
        let (pre, elu) = split_activation(f.pre, scale.is_some());
        let inside = first >= 0 && first as usize + len <= g.l_in;
        // Inside the signal with nothing to apply on the way, the split reads the samples in
        // place; edge tiles (and activations applied as samples are copied) go through a span.
        let span = if inside && pre.is_none() && scale.is_none() {
            (&xb[first as usize..], g.l_in)
        } else {
            fill_span(
                &mut scratch.b,
                xb,
                g.l_in,
                g.c_in,
                0,
                (first, len),
                g.edge,
                pre,
                scale,
            );
            (&scratch.b[..], len)
        };
        let products = TimeMajor::compute(
            span,
            (g.c_in, len),
            (nt, g.stride, g.dilation),
            elu,
            (&conv.right, cbs.clone()),
            &mut scratch.a,
        );
        let dst = ChannelMajor {
            out: &shared,
            first: b * g.c_out * l_out + t0,
            len: l_out,
            bias: f.bias,
            residual: f.residual.map(|r| (r, b * g.c_out * l_out + t0, l_out)),
        };
        let channels = cbs.start * BLOCK..(cbs.end * BLOCK).min(g.c_out);
        // SAFETY: the job alone writes steps t0..t0+nt of these channels of batch b.
        unsafe { products.store(0..nt, channels, None, &dst) };
    };
    if by_columns {
        let per = col_blocks.div_ceil(threads);
        (0..g.batch * threads).into_par_iter().for_each(|job| {
            let (b, part) = (job / threads, job % threads);
            let cbs = part * per..((part + 1) * per).min(col_blocks);
            if !cbs.is_empty() {
                with_thread_scratch(|scratch| run(b, (0, l_out), cbs, scratch));
            }
        });
    } else {
        let work = tile * g.c_out * g.c_in * g.kernel;
        run_jobs(g.batch * n_tiles, work, |job, scratch, _| {
            let b = job / n_tiles;
            let t0 = (job % n_tiles) * tile;
            run(b, (t0, tile.min(l_out - t0)), 0..col_blocks, scratch);
        });
    }
    // SAFETY: the jobs cover every (batch, tile or column block) and write every channel of
    // their steps.
    unsafe { assume_init(out) }
}

/// A transposed conv's weight split for the tiles.
///
/// Output frame `q` (samples `q s .. q s + s`) sums input frames `q - A + 1 ..= q`, `A =
/// ceil(kernel / s)` (frame `q - a` through taps `phase + a s`), so the transposed conv is a
/// stride-1 conv of `A` taps over the input with `s * c_out` outputs per frame, ordered
/// phase-major: a frame's products are its `s` samples, time-major, as they come out.
#[derive(Debug, Clone)]
pub(crate) struct TileConvTranspose {
    right: AmxRight,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
}

impl TileConvTranspose {
    /// Whether the tiles can run this transposed conv: AMX is there, one group, no dilation,
    /// input channels and a frame's outputs in whole lines.
    pub(crate) fn fits(
        c_in: usize,
        c_out: usize,
        stride: usize,
        dilation: usize,
        groups: usize,
    ) -> bool {
        groups == 1
            && dilation == 1
            && c_in.is_multiple_of(CHANNEL_MULTIPLE)
            && (stride * c_out).is_multiple_of(BLOCK)
            && amx::available()
    }

    /// From torch's weight `[c_in, c_out, kernel]`.
    pub(crate) fn new(w: &[f32], c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Self {
        assert_eq!(w.len(), c_in * c_out * kernel, "tile conv: weight shape");
        let frames = kernel.div_ceil(stride);
        let n = stride * c_out;
        let k = frames * c_in;
        let mut windowed = vec![0f32; n * k];
        for phase in 0..stride {
            for co in 0..c_out {
                let row = &mut windowed[(phase * c_out + co) * k..][..k];
                // Window position `p` is input frame `q - (frames - 1) + p`.
                for p in 0..frames {
                    let tap = phase + (frames - 1 - p) * stride;
                    if tap >= kernel {
                        continue;
                    }
                    for ci in 0..c_in {
                        row[p * c_in + ci] = w[(ci * c_out + co) * kernel + tap];
                    }
                }
            }
        }
        TileConvTranspose {
            right: AmxRight::from_transposed(&windowed, n, k),
            c_in,
            c_out,
            kernel,
            stride,
        }
    }

    /// Whether a call with this geometry fits the weight.
    pub(crate) fn applies(&self, g: &ConvTrGeom) -> bool {
        g.dilation == 1
            && g.c_in == self.c_in
            && g.c_out == self.c_out
            && g.kernel == self.kernel
            && g.stride == self.stride
    }
}

/// The transposed conv over `x` (`[batch, c_in, l_in]`), `pre` on its input, plus `bias`.
pub(crate) fn conv_transpose1d_tiles(
    x: &[f32],
    conv: &TileConvTranspose,
    bias: Option<&[f32]>,
    pre: Option<PreAct>,
    g: &ConvTrGeom,
) -> Vec<f32> {
    debug_assert!(conv.applies(g));
    let l_out = g.l_out().expect("checked by the caller");
    let s = g.stride;
    let frames = g.kernel.div_ceil(s);
    // Output sample `o` is sample `o + padding` of the full output, in frame `(o + padding) / s`.
    let first_frame = g.padding / s;
    let end_frame = (g.padding + l_out - 1) / s + 1;
    let tile = tile_steps(g.c_in, end_frame - first_frame, conv.right.bytes());
    let n_tiles = (end_frame - first_frame).div_ceil(tile);
    let mut out = uninit_buffer(g.batch * g.c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    let work = tile * s * g.c_out * g.c_in * frames;
    run_jobs(g.batch * n_tiles, work, |job, scratch, _| {
        let b = job / n_tiles;
        let q0 = first_frame + (job % n_tiles) * tile;
        let nq = tile.min(end_frame - q0);
        let xb = &x[b * g.c_in * g.l_in..][..g.c_in * g.l_in];
        let first = q0 as isize - (frames - 1) as isize;
        let len = nq + frames - 1;
        let (pre, elu) = split_activation(pre, false);
        let zeros = EdgeMode::Zeros;
        fill_span(
            &mut scratch.b,
            xb,
            g.l_in,
            g.c_in,
            0,
            (first, len),
            zeros,
            pre,
            None,
        );
        let span = (&scratch.b[..], len);
        let frames_out = TimeMajor::compute(
            span,
            (g.c_in, len),
            (nq, 1, 1),
            elu,
            (&conv.right, conv.right.column_blocks()),
            &mut scratch.a,
        );
        // The same products as `[nq * s][c_out]`: one row per output sample.
        let samples = TimeMajor {
            values: frames_out.values,
            width: g.c_out,
        };
        let lo = (q0 * s).max(g.padding);
        let hi = ((q0 + nq) * s).min(g.padding + l_out);
        let dst = ChannelMajor {
            out: &shared,
            first: b * g.c_out * l_out + lo - g.padding,
            len: l_out,
            bias,
            residual: None,
        };
        // SAFETY: job (b, tile) alone writes the samples of its frames.
        unsafe { samples.store(lo - q0 * s..hi - q0 * s, 0..g.c_out, None, &dst) };
    });
    // SAFETY: the tiles cover every frame with an output sample, each writing all of its
    // samples of every channel.
    unsafe { assume_init(out) }
}

/// Output steps per time tile: a whole number of blocks, at least two tiles per thread where
/// the signal is long enough, and the split input (`per_step` values a step) within a budget.
/// A tile streams the whole weight (`weight_bytes`, split) from L3 or DRAM once and re-reads its
/// input from L2 for each column block: a small tile keeps the input in L2, a large one reads
/// the weight less often, so the budget grows with the weight, from 256 KiB to 1 MiB. (Mimi's
/// 128 -> 256 stride-5 conv, 2 MB of split weight over 10 s: 19 -> 15 ms at 1 MiB; its 128 ->
/// 64 transposed conv, 0.4 MB: 18 -> 21 ms at 1 MiB.)
pub(super) fn tile_steps(per_step: usize, l_out: usize, weight_bytes: usize) -> usize {
    let budget = (weight_bytes / 2).clamp(256 << 10, 1 << 20);
    let by_cache = (budget / (per_step * 6).max(1)) / BLOCK * BLOCK;
    let threads = rayon::current_num_threads();
    let by_threads = l_out.div_ceil(2 * threads).div_ceil(BLOCK) * BLOCK;
    by_cache.min(by_threads).max(BLOCK)
}

/// Steps of `k` (32 values each) a one-tap window block runs before its partial sums go back
/// to memory.
const WINDOW_SLICE_STEPS: usize = 32;

/// A time tile's products, `[steps][width]` (time-major, `width` a whole number of blocks).
pub(super) struct TimeMajor<'a> {
    pub values: &'a [f32],
    pub width: usize,
}

/// Plane rows that whole blocks of `steps` windows reaching over `reach` rows, `stride` apart,
/// read.
pub(super) fn window_rows(steps: usize, stride: usize, reach: usize) -> usize {
    (steps.div_ceil(BLOCK) * BLOCK - 1) * stride + reach
}

impl<'a> TimeMajor<'a> {
    /// The windows of `steps` output steps, `stride` input steps apart, their taps `dilation`
    /// steps apart, over `span` (channel-major and padded: channel `c`'s `len` samples at
    /// `span.0[c * span.1..]`, activated by ELU on the way with `elu`), times column blocks
    /// `cbs` of `right`, into `buf`.
    pub(super) fn compute(
        span: (&[f32], usize),
        (c_in, len): (usize, usize),
        (steps, stride, dilation): (usize, usize, usize),
        elu: bool,
        (right, cbs): (&AmxRight, Range<usize>),
        buf: &'a mut Vec<f32>,
    ) -> Self {
        let reach = (right.k() / c_in - 1) * dilation + 1;
        let rows = window_rows(steps, stride, reach);
        let planes = SplitPlanes::take_transposed(span, c_in, len, rows, elu);
        let products = Self::windows(&planes, (steps, stride, dilation), cbs, right, buf);
        planes.release();
        products
    }

    /// The windows of `steps` output steps, `stride` plane rows apart, their taps `dilation`
    /// rows apart, times `right`, into `buf`. Without dilation a window is one run of
    /// consecutive rows; with it, each tap reads its own, summed in the same accumulators.
    pub(super) fn windows(
        planes: &SplitPlanes,
        (steps, stride, dilation): (usize, usize, usize),
        cbs: Range<usize>,
        right: &AmxRight,
        buf: &'a mut Vec<f32>,
    ) -> Self {
        let row_blocks = steps.div_ceil(BLOCK);
        let width = right.n().div_ceil(BLOCK) * BLOCK;
        let all_steps = right.k().div_ceil(KSTEP);
        // Without dilation a window is one run of rows; with it, each tap is a run of its own
        // (the steps of a tap are its channels), summed in the tiles.
        let taps = if dilation == 1 {
            1
        } else {
            right.k() / planes.width()
        };
        let per_tap = all_steps / taps;
        // A tile of rows more than the blocks fill: `store` reads whole tiles of rows from any
        // row (the extra values are read, never written out).
        buf.resize((row_blocks * BLOCK + TILE) * width, 0.0);
        let tiles = Tiles::configure();
        // A strided conv's long window (thousands of values) runs `k` in slices, each over
        // every block of the range, the partial sums kept in `buf` (the same bits: they go
        // through memory as f32): a slice of the right operand stays in L2 while the row
        // blocks pass, where whole windows fit L2 with neither operand. Mimi's 512 -> 1024
        // stride-8 conv (windows of 8192): 19.4 -> 18.4 ms, medians of 15 calls; its 256 -> 512
        // stride-6 conv 16.6 -> 16.0.
        let slice = if taps == 1 && stride > 1 {
            WINDOW_SLICE_STEPS
        } else {
            per_tap
        };
        for k0 in (0..per_tap).step_by(slice) {
            for cb in cbs.clone() {
                for rb in 0..row_blocks {
                    let out = &mut buf[rb * BLOCK * width + cb * BLOCK..];
                    let part = WindowPart {
                        first_row: rb * BLOCK * stride,
                        row_step: stride,
                        taps,
                        tap_rows: dilation,
                        steps_per_tap: slice.min(per_tap - k0),
                        first_step: k0,
                        accumulate: k0 > 0,
                    };
                    amx::window_block(planes, &part, (right, cb), (out, width), &tiles);
                }
            }
        }
        TimeMajor { values: buf, width }
    }

    /// Rows `rows` of the first `channels` columns (plus `extra`'s, of the same shape),
    /// transposed into `dst` (row `t` of these products to sample `t - rows.start` of `dst`).
    ///
    /// # Safety
    /// No one else accesses those samples of `dst` during the call.
    pub(super) unsafe fn store(
        &self,
        rows: Range<usize>,
        channels: Range<usize>,
        extra: Option<&TimeMajor>,
        dst: &ChannelMajor,
    ) {
        let mut bias = [0f32; TILE];
        for c0 in channels.clone().step_by(TILE) {
            let m = TILE.min(channels.end - c0);
            if let Some(b) = dst.bias {
                bias[..m].copy_from_slice(&b[c0..c0 + m]);
            }
            let mut r0 = rows.start;
            while r0 < rows.end {
                let n = TILE.min(rows.end - r0);
                let offset = r0 - rows.start;
                let store = amx::TransposedStore {
                    src: (self.values, self.width),
                    extra: extra.map(|e| (e.values, e.width)),
                    bias: &bias,
                    residual: dst
                        .residual
                        .map(|(r, first, len)| (r, first + c0 * len + offset, len)),
                };
                let at = dst.first + c0 * dst.len + offset;
                // SAFETY: `channels` rows of `n` from `at`, `dst.len` apart, are the caller's.
                unsafe { store.block((r0, c0), (n, m), (dst.out.ptr_at(at), dst.len)) };
                r0 += n;
            }
        }
    }
}

/// Where [`TimeMajor::store`] writes: channel `c`'s samples from `first + c * len`, plus the
/// bias and a residual, channel `c`'s samples from `residual.1 + c * residual.2`.
pub(super) struct ChannelMajor<'a> {
    pub out: &'a SharedOut,
    pub first: usize,
    pub len: usize,
    pub bias: Option<&'a [f32]>,
    pub residual: Option<(&'a [f32], usize, usize)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv_cpu::{conv_transpose1d_gemm, conv1d_gemm};
    use crate::nn::snake_cpu::SnakeParams;
    use crate::nn::test_values as values;

    fn geom(c_in: usize, c_out: usize, kernel: usize, stride: usize, l_in: usize) -> ConvGeom {
        ConvGeom {
            batch: 2,
            c_in,
            l_in,
            c_out,
            kernel,
            padding: kernel - stride,
            pad_right: 1,
            edge: EdgeMode::Zeros,
            stride,
            dilation: 1,
            groups: 1,
        }
    }

    /// Snake's `alpha` (0.2-2.2) and `1 / (alpha + 1e-9)` for `c` channels.
    fn snake_params(c: usize) -> (Vec<f32>, Vec<f32>) {
        let alpha: Vec<f32> = values(c, 21).iter().map(|v| 1.2 + v).collect();
        let inv = alpha.iter().map(|a| 1.0 / (a + 1e-9)).collect();
        (alpha, inv)
    }

    /// Within the error of two f32 sums of `terms` products of values in [-1, 1] (which round
    /// differently).
    fn assert_close(got: &[f32], want: &[f32], terms: usize, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        let bound = terms as f32 * 4e-7 * 8.0;
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= bound, "{what} at {i}: {a} vs {b}");
        }
    }

    /// Against the f32 FMA kernels, within the error of an f32 sum of `c_in * kernel` terms
    /// (the two round differently), with every fusion the tiles take.
    #[test]
    fn tiles_match_the_fma_kernels() {
        if !amx::available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        for (c_in, c_out, kernel, stride, l_in, edge) in [
            (32, 32, 3, 1, 100, EdgeMode::Zeros),
            (64, 40, 8, 4, 1000, EdgeMode::Reflect),
            (32, 70, 10, 5, 333, EdgeMode::Replicate),
            (64, 32, 1, 1, 65, EdgeMode::Zeros),
            (96, 128, 4, 2, 5000, EdgeMode::Zeros),
            // A window of 40 steps of `k`: two slices, the second short.
            (128, 64, 10, 5, 2000, EdgeMode::Zeros),
        ] {
            let g = ConvGeom {
                edge,
                ..geom(c_in, c_out, kernel, stride, l_in)
            };
            let l_out = g.l_out().unwrap();
            let w = values(c_out * c_in * kernel, 1);
            let x = values(2 * c_in * l_in, 2);
            let bias = values(c_out, 3);
            let residual = values(2 * c_out * l_out, 4);
            let conv = TileConv::new(&w, (c_out, c_in, kernel), stride, 1);
            let (alpha, inv) = snake_params(c_in);
            let snake = PreAct::Snake(SnakeParams {
                alpha: &alpha,
                inv: &inv,
            });
            for (pre, with_residual) in [
                (None, false),
                (Some(PreAct::Elu), true),
                (Some(snake), false),
            ] {
                let f = Fusion {
                    bias: Some(&bias),
                    pre,
                    residual: with_residual.then_some(&residual[..]),
                    ..Default::default()
                };
                assert!(conv.applies(&g, &f));
                let got = conv1d_tiles(&x, &conv, &f, &g);
                let want = conv1d_gemm(&x, &w, &f, &g);
                let what = format!("{c_in}->{c_out} k{kernel} s{stride}");
                assert_close(&got, &want, c_in * kernel, &what);
            }
        }
    }

    /// Dilated convs (DAC's residual units: 7 taps, dilations 1, 3, 9), each tap a product of
    /// its own, against the f32 FMA kernels.
    #[test]
    fn dilated_tiles_match_the_fma_kernels() {
        if !amx::available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        for (c, dilation, l_in) in [(64, 1, 500), (32, 3, 333), (96, 9, 1000)] {
            let pad = 3 * dilation;
            let g = ConvGeom {
                padding: pad,
                pad_right: pad,
                edge: EdgeMode::Reflect,
                dilation,
                ..geom(c, c, 7, 1, l_in)
            };
            let w = values(c * c * 7, 11);
            let x = values(2 * c * l_in, 12);
            let bias = values(c, 13);
            let conv = TileConv::new(&w, (c, c, 7), 1, dilation);
            let f = Fusion {
                bias: Some(&bias),
                ..Default::default()
            };
            assert!(conv.applies(&g, &f));
            let got = conv1d_tiles(&x, &conv, &f, &g);
            let want = conv1d_gemm(&x, &w, &f, &g);
            assert_close(
                &got,
                &want,
                c * 7,
                &format!("{c} channels, dilation {dilation}"),
            );
        }
    }

    /// Transposed convs against the f32 gemm kernel, cropped and padded as torch's layer is.
    #[test]
    fn transposed_tiles_match_the_fma_kernels() {
        if !amx::available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        for (c_in, c_out, kernel, stride, padding, output_padding, l_in) in [
            (32, 32, 8, 4, 0, 0, 100),
            (64, 32, 10, 5, 3, 1, 257),
            (32, 16, 4, 2, 1, 0, 1000),
            (64, 64, 3, 2, 0, 1, 77),
            (128, 48, 12, 6, 6, 0, 40),
        ] {
            let g = ConvTrGeom {
                batch: 2,
                c_in,
                l_in,
                c_out,
                kernel,
                padding,
                output_padding,
                stride,
                dilation: 1,
            };
            assert!(TileConvTranspose::fits(c_in, c_out, stride, 1, 1));
            let w = values(c_in * c_out * kernel, 7);
            let x = values(2 * c_in * l_in, 8);
            let bias = values(c_out, 9);
            let conv = TileConvTranspose::new(&w, c_in, c_out, kernel, stride);
            let (alpha, inv) = snake_params(c_in);
            let snake = PreAct::Snake(SnakeParams {
                alpha: &alpha,
                inv: &inv,
            });
            for pre in [None, Some(PreAct::Elu), Some(snake)] {
                let got = conv_transpose1d_tiles(&x, &conv, Some(&bias), pre, &g);
                let want = conv_transpose1d_gemm(&x, &w, Some(&bias), pre, &g);
                let what = format!("transposed {c_in}->{c_out} k{kernel} s{stride}");
                assert_close(&got, &want, c_in * kernel.div_ceil(stride), &what);
            }
        }
    }

    /// Shares of the column blocks over the whole signal (what large weights over short
    /// signals take) give the bits of time tiles, with every fusion the tiles apply.
    #[test]
    fn column_split_gives_the_tiles_bits() {
        if !amx::available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        for (c_in, c_out, kernel, stride, l_in) in [(64, 96, 7, 1, 3000), (32, 200, 8, 4, 9000)] {
            let g = geom(c_in, c_out, kernel, stride, l_in);
            let l_out = g.l_out().unwrap();
            let w = values(c_out * c_in * kernel, 31);
            let x = values(2 * c_in * l_in, 32);
            let bias = values(c_out, 33);
            let residual = values(2 * c_out * l_out, 34);
            let conv = TileConv::new(&w, (c_out, c_in, kernel), stride, 1);
            let f = Fusion {
                bias: Some(&bias),
                pre: Some(PreAct::Elu),
                residual: Some(&residual),
                ..Default::default()
            };
            let tiles = conv1d_tiles_split(&x, &conv, &f, &g, Some(false));
            let columns = conv1d_tiles_split(&x, &conv, &f, &g, Some(true));
            assert!(
                tiles
                    .iter()
                    .zip(&columns)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{c_in}->{c_out} k{kernel} s{stride}"
            );
            let want = conv1d_gemm(&x, &w, &f, &g);
            assert_close(&columns, &want, c_in * kernel, "by columns");
        }
    }

    /// A window of the input, padded as the whole signal is at its edges, gives the whole
    /// signal's output samples bit for bit.
    #[test]
    fn windows_give_the_same_bits() {
        if !amx::available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        let (c_in, c_out, kernel, stride, l_in) = (64, 48, 8, 4, 4000);
        let g = ConvGeom {
            batch: 1,
            padding: 0,
            pad_right: 0,
            ..geom(c_in, c_out, kernel, stride, l_in)
        };
        let w = values(c_out * c_in * kernel, 5);
        let x = values(c_in * l_in, 6);
        let conv = TileConv::new(&w, (c_out, c_in, kernel), stride, 1);
        let f = Fusion::default();
        let whole = conv1d_tiles(&x, &conv, &f, &g);
        let l_out = g.l_out().unwrap();
        // Output steps 37..37+101 read input samples 148..148 + 100 * 4 + 8.
        let (first, steps) = (37, 101);
        let len = (steps - 1) * stride + kernel;
        let window: Vec<f32> = (0..c_in)
            .flat_map(|c| x[c * l_in + first * stride..][..len].to_vec())
            .collect();
        let part = conv1d_tiles(&window, &conv, &f, &ConvGeom { l_in: len, ..g });
        for c in 0..c_out {
            let a = &whole[c * l_out + first..][..steps];
            let b = &part[c * steps..][..steps];
            assert!(
                a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()),
                "channel {c}"
            );
        }
    }
}
