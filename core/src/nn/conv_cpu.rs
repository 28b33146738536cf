//! CPU f32 kernels for 1-D convolutions, laid out for long signals with few channels.
//!
//! candle's CPU conv1d builds one im2col matrix for the whole signal with a scalar, single-threaded
//! loop, multiplies it in `[time, channels]` order and transposes the result; grouped convs run
//! group by group. For audio codecs (32-64 channels over hundreds of thousands of samples) that is
//! 4-5x slower than torch. Here:
//! - dense and grouped convs cut the output into time tiles; a tile's im2col block
//!   (`[c_in * k, tile]`, rows copied as shifted slices of the input) stays in cache and one gemm
//!   writes the tile straight into the `[c_out, time]` output. Tiles run in parallel.
//!   Pointwise convs (k = 1) read the input in place.
//! - convs whose output channels each read one input channel (depthwise, or a single input
//!   channel as in the first layer of a codec) are a direct loop per output channel.
//! - transposed convs are one gemm per output tile into `[frame, c_out * k]` columns, then an
//!   overlap-add of each frame's contiguous taps (tiles own disjoint samples: parallel).
//! - the depthwise-separable residual unit (`x + pw(depthwise(x))`) runs tile by tile with the
//!   depthwise output never leaving the cache.
//!
//! Every kernel applies the surrounding element-wise work while the data is in cache (see
//! [`Fusion`]): an activation (Snake) on its input and output, a bias, a residual of the output's
//! shape. Each fused step saves a full read, write and allocation of the signal, which on long
//! inputs costs as much as the arithmetic. All buffers are contiguous `[batch, channels, time]`.

use rayon::prelude::*;

use super::conv::EdgeMode;
use super::conv_direct::{self, DirectTile, Start};
use super::conv_strided_direct;
use super::elu::{elu_in_place, elu_into};
use super::gemm::{MatRef, SharedOut, assume_init, uninit_buffer};
use super::snake_cpu::{SnakeParams, snake_in_place, snake_row};

/// An activation applied to a kernel's input samples as they are copied into its tile.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PreAct<'a> {
    /// Snake, per input channel.
    Snake(SnakeParams<'a>),
    /// ELU (alpha 1). It maps 0 to 0 and commutes with reflect/replicate padding, so it may be
    /// applied to an already padded input.
    Elu,
}

impl PreAct<'_> {
    pub(crate) fn apply(&self, x: &mut [f32], ch: usize) {
        match self {
            PreAct::Snake(p) => snake_in_place(x, p.alpha[ch], p.inv[ch]),
            PreAct::Elu => elu_in_place(x),
        }
    }
}

/// What a kernel does around the convolution:
/// `post(conv(pre(x) * in_scale) + bias) + residual`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fusion<'a> {
    pub bias: Option<&'a [f32]>,
    /// An activation of each input channel.
    pub pre: Option<PreAct<'a>>,
    /// `[batch, l_in]`: every input sample of a time step scaled by one factor (gemm kernel only).
    pub in_scale: Option<&'a [f32]>,
    /// Snake on each output channel (single-input-channel kernel only).
    pub post: Option<SnakeParams<'a>>,
    /// `[batch, c_out, l_out]`, added last.
    pub residual: Option<&'a [f32]>,
}

/// Shape and hyper-parameters of a conv1d call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvGeom {
    pub batch: usize,
    pub c_in: usize,
    pub l_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    /// Samples added before the input (`padding`) and after it (`pad_right`), and how.
    pub padding: usize,
    pub pad_right: usize,
    pub edge: EdgeMode,
    pub stride: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl ConvGeom {
    /// Output length, or `None` when the padded input is shorter than the kernel's reach.
    pub fn l_out(&self) -> Option<usize> {
        let reach = self.dilation * (self.kernel - 1) + 1;
        let padded = self.l_in + self.padding + self.pad_right;
        (padded >= reach).then(|| (padded - reach) / self.stride + 1)
    }
}

/// Shape and hyper-parameters of a conv_transpose1d call (one group).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvTrGeom {
    pub batch: usize,
    pub c_in: usize,
    pub l_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub padding: usize,
    pub output_padding: usize,
    pub stride: usize,
    pub dilation: usize,
}

impl ConvTrGeom {
    pub fn l_out(&self) -> Option<usize> {
        let full = (self.l_in.checked_sub(1)?) * self.stride
            + self.dilation * (self.kernel - 1)
            + self.output_padding
            + 1;
        full.checked_sub(2 * self.padding).filter(|&l| l > 0)
    }
}

/// Stride-1 convs with at most this many output channels (per group) run the direct kernel
/// (`conv_direct`) instead of im2col + gemm.
const DIRECT_MAX_OUT_CHANNELS: usize = 64;

/// Per-thread working buffers of a job.
#[derive(Default)]
pub(crate) struct Scratch {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub c: Vec<f32>,
    pub d: Vec<f32>,
    pub e: Vec<f32>,
}

/// Time-tile length for an im2col block with `rows` rows: small enough that the block stays in
/// the L2 cache, large enough that a gemm call amortises packing the weights.
fn tile_len(rows: usize, l_out: usize) -> usize {
    const TARGET_FLOATS: usize = 1 << 16;
    let t = (TARGET_FLOATS / rows.max(1)).clamp(64, 2048) / 16 * 16;
    t.min(l_out.max(1))
}

thread_local! {
    /// Each pool thread's working buffers, kept from job to job and call to call: allocating
    /// them per rayon split made many short-lived buffers of several MB, which the allocator
    /// kept resident (docs/performance.md, "Allocator").
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Run `f` on this thread's scratch buffers (fresh ones if they are in use further up the
/// stack, as when a thread waiting in a nested parallel call steals a job).
pub(crate) fn with_thread_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Split `jobs` independent tiles between threads: in parallel when there are enough of them,
/// else one after another with the threads inside gemm.
pub(crate) fn run_jobs<F>(jobs: usize, work_per_job: usize, f: F)
where
    F: Fn(usize, &mut Scratch, usize) + Sync,
{
    let threads = rayon::current_num_threads();
    if threads > 1 && jobs >= 2 * threads {
        (0..jobs)
            .into_par_iter()
            .for_each(|job| with_thread_scratch(|scratch| f(job, scratch, 1)));
    } else {
        // Few large jobs (low-rate layers with many channels): let gemm split each one, unless
        // it is too small to be worth waking the pool.
        let inner = if work_per_job >= 1 << 18 { threads } else { 1 };
        let mut scratch = Scratch::default();
        for job in 0..jobs {
            f(job, &mut scratch, inner);
        }
    }
}

/// Copy input samples `first..first + len` of `rows` channels into `span` as `[rows, len]`,
/// extended past `0..l_in` by `edge`, applying the input fusions (the activation of channel
/// `ch0 + r`, the time scale). The reference pads after activating: zero padding stays zero,
/// and copied edge samples are activated like the samples they copy.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fill_span(
    span: &mut Vec<f32>,
    x: &[f32],
    l_in: usize,
    rows: usize,
    ch0: usize,
    at: (isize, usize),
    edge: EdgeMode,
    pre: Option<PreAct>,
    scale: Option<&[f32]>,
) {
    fill_span_strided(span, (x, l_in), l_in, rows, ch0, at, edge, pre, scale)
}

/// Asks the caches for `run` (one prefetch per 64-byte line), so that the next row of a tile
/// streams in from memory while the current one is copied.
#[inline]
fn prefetch_run(run: &[f32]) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = run;
    #[cfg(target_arch = "x86_64")]
    for i in (0..run.len()).step_by(16) {
        // SAFETY: a prefetch of an address inside the slice; it never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                run.as_ptr().add(i).cast(),
            )
        };
    }
}

/// [`fill_span`] from input rows `row_stride` apart (a view trimmed in time, read in place).
///
/// Every element of the span is written exactly once (no clearing pass), and an ELU is applied
/// as the samples are copied: at 32-64 channels over 240k samples, clearing, copying and
/// activating the tile in three passes showed as 5-10% of a codec's time.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fill_span_strided(
    span: &mut Vec<f32>,
    (x, row_stride): (&[f32], usize),
    l_in: usize,
    rows: usize,
    ch0: usize,
    (first, len): (isize, usize),
    edge: EdgeMode,
    pre: Option<PreAct>,
    scale: Option<&[f32]>,
) {
    debug_assert!(scale.is_none() || edge == EdgeMode::Zeros);
    // Only newly grown elements are cleared; every element is overwritten below.
    span.resize(rows * len, 0.0);
    let li = l_in as isize;
    let lo = (-first).clamp(0, len as isize) as usize;
    let hi = (li - first).clamp(lo as isize, len as isize) as usize;
    let s0 = (first + lo as isize).max(0) as usize;
    let copies_edges = edge != EdgeMode::Zeros && (lo > 0 || hi < len) && l_in > 0;
    for r in 0..rows {
        let src = &x[r * row_stride..][..l_in];
        let row = &mut span[r * len..][..len];
        let body = &src[s0..s0 + (hi - lo)];
        // A tile's rows are short runs far apart (at 64 channels, 2 KB in rows of 1 MB), which
        // the hardware prefetchers pick up late: the residual units' input fill waited on
        // memory (Mimi's 64- to 256-channel units 2-4% faster with this).
        if r + 1 < rows {
            prefetch_run(&x[(r + 1) * row_stride + s0..][..hi - lo]);
        }
        match pre {
            Some(PreAct::Elu) => elu_into(&mut row[lo..hi], body),
            // Snake over the copied samples alone (zero padding stays zero): in the same pass.
            Some(PreAct::Snake(p)) if !copies_edges => {
                snake_row(&mut row[lo..hi], body, p.alpha[ch0 + r], p.inv[ch0 + r])
            }
            _ => row[lo..hi].copy_from_slice(body),
        }
        if copies_edges {
            for j in (0..lo).chain(hi..len) {
                let i = first + j as isize;
                let s = match edge {
                    EdgeMode::Reflect => {
                        let m = if i < 0 { -i } else { 2 * (li - 1) - i };
                        m.clamp(0, li - 1)
                    }
                    _ => i.clamp(0, li - 1),
                };
                row[j] = src[s as usize];
            }
        } else {
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
        }
        match pre {
            // ELU is the same function of each element wherever it sits: only the copied edges
            // are left to activate.
            Some(p @ PreAct::Elu) if copies_edges => {
                p.apply(&mut row[..lo], ch0 + r);
                p.apply(&mut row[hi..], ch0 + r);
            }
            Some(PreAct::Elu) | None => {}
            Some(PreAct::Snake(_)) if !copies_edges => {}
            // Snake's vector and tail paths may round differently, so it runs over the same
            // range as it always has.
            Some(p) => p.apply(
                if copies_edges {
                    &mut row[..]
                } else {
                    &mut row[lo..hi]
                },
                ch0 + r,
            ),
        }
        if let Some(scale) = scale {
            for (v, &sc) in row[lo..hi].iter_mut().zip(&scale[s0..]) {
                *v *= sc;
            }
        }
    }
}

/// Dense or grouped conv1d with every fusion but `post`; `w` is `[c_out, c_in / groups, k]`.
pub(crate) fn conv1d_gemm(x: &[f32], w: &[f32], f: &Fusion, g: &ConvGeom) -> Vec<f32> {
    debug_assert!(f.post.is_none());
    if conv_strided_direct::applies(g, f) {
        return conv_strided_direct::conv1d_strided_polyphase(x, w, f, g);
    }
    let l_out = g.l_out().expect("checked by the caller");
    let cin_g = g.c_in / g.groups;
    let cout_g = g.c_out / g.groups;
    let rows = cin_g * g.kernel;
    let pointwise = g.kernel == 1 && g.stride == 1 && g.padding == 0 && g.pad_right == 0;
    // Inputs that are not read in place: activated, scaled, or extended by copied edges.
    let transform = f.pre.is_some() || f.in_scale.is_some() || g.edge != EdgeMode::Zeros;
    let direct = g.stride == 1 && cout_g <= DIRECT_MAX_OUT_CHANNELS && conv_direct::available();
    let tile = if direct {
        // The direct kernel keeps no im2col block: size the tile by its input span.
        conv_direct::whole_blocks(((1usize << 15) / cin_g.max(1)).clamp(256, 4096))
    } else if pointwise {
        l_out.min(1024)
    } else {
        tile_len(rows, l_out)
    }
    .min(l_out);
    let n_tiles = l_out.div_ceil(tile);
    let mut out = uninit_buffer(g.batch * g.c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    let work = cout_g * rows * tile * g.groups;
    let reach = g.dilation * (g.kernel - 1);
    run_jobs(g.batch * n_tiles, work, |job, scratch, threads| {
        let b = job / n_tiles;
        let t0 = (job % n_tiles) * tile;
        let nt = tile.min(l_out - t0);
        for grp in 0..g.groups {
            let xg = &x[(b * g.c_in + grp * cin_g) * g.l_in..][..cin_g * g.l_in];
            let dst = (b * g.c_out + grp * cout_g) * l_out + t0;
            // The tile's input samples of this group, padded and activated (and scaled).
            let fill_input = |span: &mut Vec<f32>, xg: &[f32], at: (isize, usize)| {
                let scale = f.in_scale.map(|s| &s[b * g.l_in..][..g.l_in]);
                let (l, ch0) = (g.l_in, grp * cin_g);
                fill_span(span, xg, l, cin_g, ch0, at, g.edge, f.pre, scale);
            };
            if direct {
                let first = t0 as isize - g.padding as isize;
                let len = nt + reach;
                let interior = first >= 0 && first as usize + len <= g.l_in;
                let in_place = f.pre.is_none() && f.in_scale.is_none();
                let (input, row_stride) = if interior && in_place {
                    (&xg[first as usize..], g.l_in)
                } else {
                    fill_input(&mut scratch.b, xg, (first, len));
                    (&scratch.b[..], len)
                };
                // SAFETY: job (b, tile) alone writes columns t0..t0+nt of batch b's rows.
                let (out_rows, start) =
                    unsafe { direct_rows(&shared, dst, (cout_g, nt), l_out, grp * cout_g, f) };
                let tile = DirectTile {
                    input,
                    row_stride,
                    c_in: cin_g,
                    kernel: g.kernel,
                    dilation: g.dilation,
                    weight: &w[grp * cout_g * rows..][..cout_g * rows],
                    start,
                };
                // SAFETY: as above; the rows are distinct rows of the output.
                unsafe { conv_direct::conv_rows_raw(&out_rows, nt, &tile) };
                continue;
            }
            let rhs = if transform {
                // The input samples this tile reads, activated once, then columns from them.
                let first = (t0 * g.stride) as isize - g.padding as isize;
                let len = (nt - 1) * g.stride + reach + 1;
                fill_input(&mut scratch.b, xg, (first, len));
                if pointwise {
                    MatRef::new(&scratch.b, len, 1)
                } else {
                    let local = ConvGeom {
                        l_in: len,
                        padding: 0,
                        pad_right: 0,
                        edge: EdgeMode::Zeros,
                        ..*g
                    };
                    im2col(&scratch.b, cin_g, &local, 0, nt, &mut scratch.a);
                    MatRef::new(&scratch.a, nt, 1)
                }
            } else if pointwise {
                MatRef::new(&xg[t0..], g.l_in, 1)
            } else {
                im2col(xg, cin_g, g, t0, nt, &mut scratch.a);
                MatRef::new(&scratch.a, nt, 1)
            };
            let lhs = MatRef::new(&w[grp * cout_g * rows..][..cout_g * rows], rows, 1);
            // SAFETY: job (b, tile) alone writes columns t0..t0+nt of batch b's rows.
            let init = unsafe { init_rows(&shared, dst, cout_g, nt, l_out, grp * cout_g, f) };
            // SAFETY: as above.
            unsafe { shared.sgemm_into(dst, l_out, cout_g, nt, rows, lhs, rhs, init, threads) };
        }
    });
    // SAFETY: the jobs cover every (batch, group, tile), and the direct kernel or `init_rows`
    // wrote all their rows.
    unsafe { assume_init(out) }
}

/// Initialise the output rows of a tile: bias and residual, which the kernel then accumulates
/// onto, or zeros, and false when there is nothing to add (the kernel then overwrites). Every
/// element is written here, so the output may come from [`uninit_buffer`].
///
/// # Safety
/// The caller must own the tile.
pub(crate) unsafe fn init_rows(
    out: &SharedOut,
    dst: usize,
    rows: usize,
    cols: usize,
    stride: usize,
    first_channel: usize,
    f: &Fusion,
) -> bool {
    let adds = f.bias.is_some() || f.residual.is_some();
    for r in 0..rows {
        let b = f.bias.map_or(0.0, |b| b[first_channel + r]);
        let at = dst + r * stride;
        // SAFETY: the caller owns the tile.
        unsafe {
            match f.residual {
                // `+ 0.0` would turn -0.0 into 0.0: add only a bias there is.
                Some(res) if b != 0.0 => out.init_row(at, cols, |j| res[at + j] + b),
                Some(res) => out.init_row(at, cols, |j| res[at + j]),
                None => out.init_row(at, cols, |_| b),
            }
        };
    }
    adds
}

/// The output rows of a direct-kernel tile (`rows x cols` at `dst`, `stride` apart) and where
/// the kernel starts their sums: from the bias in registers when there is no residual (the
/// rows are then only written, never read), else from the rows, which [`init_rows`] fills.
///
/// # Safety
/// The caller must own the tile.
pub(crate) unsafe fn direct_rows<'f>(
    out: &SharedOut,
    dst: usize,
    (rows, cols): (usize, usize),
    stride: usize,
    first_channel: usize,
    f: &Fusion<'f>,
) -> (Vec<*mut f32>, Start<'f>) {
    let start = match (f.residual, f.bias) {
        (None, Some(b)) => Start::Bias(&b[first_channel..first_channel + rows]),
        (None, None) => Start::Zero,
        (Some(_), _) => {
            // SAFETY: the caller owns the tile.
            unsafe { init_rows(out, dst, rows, cols, stride, first_channel, f) };
            Start::Current
        }
    };
    let ptrs = (0..rows)
        .map(|r| out.row_ptr(dst + r * stride, cols))
        .collect();
    (ptrs, start)
}

/// The im2col block of output columns `t0..t0 + nt`: row `ci * kernel + kx`, column `j` holds
/// input sample `(t0 + j) * stride + kx * dilation - padding` of channel `ci` (0 outside).
fn im2col(xg: &[f32], cin: usize, g: &ConvGeom, t0: usize, nt: usize, col: &mut Vec<f32>) {
    col.clear();
    col.resize(cin * g.kernel * nt, 0.0);
    let l_in = g.l_in as isize;
    for ci in 0..cin {
        let src = &xg[ci * g.l_in..][..g.l_in];
        for kx in 0..g.kernel {
            let row = &mut col[(ci * g.kernel + kx) * nt..][..nt];
            // First input sample of the row; columns step by `stride` samples.
            let first = (t0 * g.stride + kx * g.dilation) as isize - g.padding as isize;
            // Columns j in lo..hi read inside the input; the rest stay zero (padding).
            let s = g.stride as isize;
            let lo = div_ceil_i(-first, s).clamp(0, nt as isize) as usize;
            let hi = div_ceil_i(l_in - first, s).clamp(lo as isize, nt as isize) as usize;
            if hi > lo {
                let s0 = (first + lo as isize * s) as usize;
                if g.stride == 1 {
                    row[lo..hi].copy_from_slice(&src[s0..s0 + (hi - lo)]);
                } else {
                    let taken = src[s0..].iter().step_by(g.stride);
                    for (v, &xv) in row[lo..hi].iter_mut().zip(taken) {
                        *v = xv;
                    }
                }
            }
        }
    }
}

/// Convs whose output channels each read a single input channel (`c_in / groups == 1`:
/// depthwise, channel multipliers, one-channel input), with every fusion but `in_scale`; `w` is
/// `[c_out, 1, kernel]`. Each job is a time tile of one input channel and all the output
/// channels that read it, so that the input is padded and activated once for all of them (a
/// codec's first conv, one channel to 32-64, filled it again for every output channel); tiles
/// spread long rows over the threads.
pub(crate) fn conv1d_single_input(x: &[f32], w: &[f32], f: &Fusion, g: &ConvGeom) -> Vec<f32> {
    debug_assert!(g.c_in == g.groups && f.in_scale.is_none());
    let l_out = g.l_out().expect("checked by the caller");
    let k = g.kernel;
    let per_input = g.c_out / g.groups;
    let tile = l_out.min(4096);
    let n_tiles = l_out.div_ceil(tile);
    let reach = g.dilation * (k - 1);
    let mut out = uninit_buffer(g.batch * g.c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    (0..g.batch * g.c_in * n_tiles)
        .into_par_iter()
        .for_each_init(Scratch::default, |scratch, job| {
            let input = job / n_tiles;
            let t0 = (job % n_tiles) * tile;
            let nt = tile.min(l_out - t0);
            let (b, ci) = (input / g.c_in, input % g.c_in);
            let src = &x[(b * g.c_in + ci) * g.l_in..][..g.l_in];
            let first = (t0 * g.stride) as isize - g.padding as isize;
            let len = (nt - 1) * g.stride + reach + 1;
            fill_span(
                &mut scratch.a,
                src,
                g.l_in,
                1,
                ci,
                (first, len),
                g.edge,
                f.pre,
                None,
            );
            for co in ci * per_input..(ci + 1) * per_input {
                let row = b * g.c_out + co;
                let bias = f.bias.map_or(0.0, |b| b[co]);
                let at = row * l_out + t0;
                let wk = &w[co * k..][..k];
                // SAFETY: job (input, tile) alone writes these samples of its output channels,
                // and `depthwise_row` writes every one of them before the slice is made.
                let o = unsafe {
                    depthwise_row(
                        shared.row_ptr(at, nt),
                        nt,
                        &scratch.a,
                        wk,
                        g.stride,
                        g.dilation,
                        bias,
                    );
                    shared.row(at, nt)
                };
                if let Some(post) = f.post {
                    snake_in_place(o, post.alpha[co], post.inv[co]);
                }
                if let Some(res) = f.residual {
                    for (y, &r) in o.iter_mut().zip(&res[row * l_out + t0..][..nt]) {
                        *y += r;
                    }
                }
            }
        });
    // SAFETY: the jobs cover every (input channel, tile), and each wrote all the rows of its
    // output channels (`depthwise_row` writes every sample).
    unsafe { assume_init(out) }
}

/// The residual unit of depthwise-separable codecs, `x + pw(post(dw(pre(x))))`, one time tile
/// at a time: the depthwise conv (stride 1, output as long as the input) fills a
/// `[channels, tile]` block with both Snakes applied, and the pointwise gemm reads it from the
/// cache and adds `x` in place.
pub(crate) fn residual_dw_pw(
    x: &[f32],
    dw: (&[f32], Option<&[f32]>),
    pw: (&[f32], Option<&[f32]>),
    pre: Option<SnakeParams>,
    post: Option<SnakeParams>,
    g: &ConvGeom,
) -> Vec<f32> {
    let (c, l) = (g.c_in, g.l_in);
    debug_assert!(g.groups == c && g.c_out == c && g.stride == 1 && g.l_out() == Some(l));
    let k = g.kernel;
    let tile = ((1usize << 16) / c.max(1)).clamp(256, 2048).min(l);
    let n_tiles = l.div_ceil(tile);
    let reach = g.dilation * (k - 1);
    let mut out = uninit_buffer(g.batch * c * l);
    let shared = SharedOut::new_uninit(&mut out);
    run_jobs(g.batch * n_tiles, c * c * tile, |job, scratch, threads| {
        let b = job / n_tiles;
        let t0 = (job % n_tiles) * tile;
        let nt = tile.min(l - t0);
        let xb = &x[b * c * l..][..c * l];
        let mid = &mut scratch.b;
        mid.clear();
        mid.resize(c * nt, 0.0);
        let first = t0 as isize - g.padding as isize;
        let len = nt + reach;
        for (ch, o) in mid.chunks_exact_mut(nt).enumerate() {
            fill_span(
                &mut scratch.a,
                &xb[ch * l..][..l],
                l,
                1,
                ch,
                (first, len),
                g.edge,
                pre.map(PreAct::Snake),
                None,
            );
            let bias = dw.1.map_or(0.0, |b| b[ch]);
            let n = o.len();
            // SAFETY: `o` is this job's own row of `n` samples.
            unsafe {
                depthwise_row(
                    o.as_mut_ptr(),
                    n,
                    &scratch.a,
                    &dw.0[ch * k..][..k],
                    1,
                    g.dilation,
                    bias,
                )
            };
            if let Some(p) = post {
                snake_in_place(o, p.alpha[ch], p.inv[ch]);
            }
        }
        let dst = b * c * l + t0;
        let f = Fusion {
            bias: pw.1,
            residual: Some(x),
            ..Default::default()
        };
        // SAFETY: job (b, tile) alone writes columns t0..t0+nt of batch b's rows.
        unsafe {
            init_rows(&shared, dst, c, nt, l, 0, &f);
            shared.sgemm_into(
                dst,
                l,
                c,
                nt,
                c,
                MatRef::new(pw.0, c, 1),
                MatRef::new(mid, nt, 1),
                true,
                threads,
            );
        }
    });
    // SAFETY: the jobs cover every (batch, tile), and `init_rows` wrote all their rows.
    unsafe { assume_init(out) }
}

/// `o[t] = bias + sum_kx w[kx] padded[t stride + kx dilation]` for the `n` samples at `o`. The
/// sums start from the bias in registers and each sample is written once: filling an output
/// row with the bias first, then adding onto it, stalled on memory for every line of a
/// codec's first conv (tens of MB of output).
///
/// # Safety
/// `o` must be valid for writes of `n` floats (they may be uninitialised), and no other thread
/// may access them during the call.
unsafe fn depthwise_row(
    o: *mut f32,
    n: usize,
    padded: &[f32],
    w: &[f32],
    stride: usize,
    dilation: usize,
    bias: f32,
) {
    assert!(padded.len() > (n.max(1) - 1) * stride + (w.len().max(1) - 1) * dilation);
    #[cfg(target_arch = "x86_64")]
    if stride == 1 && is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above); bounds asserted above, `o` by the
        // caller.
        unsafe { depthwise_row_s1_avx512(o, n, padded, w, dilation, bias) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if stride == 1 && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); bounds asserted above, `o` by
        // the caller.
        unsafe { depthwise_row_s1_avx2(o, n, padded, w, dilation, bias) };
        return;
    }
    for t in 0..n {
        let base = t * stride;
        let mut y = bias;
        for (kx, &wk) in w.iter().enumerate() {
            y += wk * padded[base + kx * dilation];
        }
        // SAFETY: t < n, by the caller's contract.
        unsafe { o.add(t).write(y) };
    }
}

/// The samples from `t` on of [`depthwise_row`]'s stride-1 vector kernels, one at a time, by
/// the same fused operations per sample.
///
/// # Safety
/// As [`depthwise_row`].
#[inline(always)]
unsafe fn depthwise_tail_s1(
    o: *mut f32,
    t: usize,
    n: usize,
    padded: &[f32],
    w: &[f32],
    d: usize,
    bias: f32,
) {
    for i in t..n {
        let mut y = bias;
        for (kx, &wk) in w.iter().enumerate() {
            y = wk.mul_add(padded[i + kx * d], y);
        }
        // SAFETY: i < n, by the caller's contract.
        unsafe { o.add(i).write(y) };
    }
}

/// Sixteen outputs at a time held in two registers while the taps accumulate, so each output
/// is stored once.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `padded` must hold `n + (w.len() - 1) * dilation`
/// samples; `o` as for [`depthwise_row`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_row_s1_avx2(
    o: *mut f32,
    n: usize,
    padded: &[f32],
    w: &[f32],
    dilation: usize,
    bias: f32,
) {
    use std::arch::x86_64::*;
    let mut t = 0;
    // SAFETY: every access below is at most n - 1 + (w.len() - 1) * dilation into `padded`
    // (the caller's bound) and below n past `o`.
    unsafe {
        while t + 16 <= n {
            let mut a0 = _mm256_set1_ps(bias);
            let mut a1 = a0;
            for (kx, &wk) in w.iter().enumerate() {
                let wv = _mm256_set1_ps(wk);
                let p = padded.as_ptr().add(t + kx * dilation);
                a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), a0);
                a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(8)), a1);
            }
            _mm256_storeu_ps(o.add(t), a0);
            _mm256_storeu_ps(o.add(t + 8), a1);
            t += 16;
        }
        depthwise_tail_s1(o, t, n, padded, w, dilation, bias);
    }
}

/// [`depthwise_row_s1_avx2`] with 32 outputs at a time in two AVX-512 registers (the same
/// operations per output, so the same bits).
///
/// # Safety
/// As [`depthwise_row_s1_avx2`], with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn depthwise_row_s1_avx512(
    o: *mut f32,
    n: usize,
    padded: &[f32],
    w: &[f32],
    dilation: usize,
    bias: f32,
) {
    use std::arch::x86_64::*;
    let mut t = 0;
    // SAFETY: as in the AVX2 kernel.
    unsafe {
        while t + 32 <= n {
            let mut a0 = _mm512_set1_ps(bias);
            let mut a1 = a0;
            for (kx, &wk) in w.iter().enumerate() {
                let wv = _mm512_set1_ps(wk);
                let p = padded.as_ptr().add(t + kx * dilation);
                a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p), a0);
                a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p.add(16)), a1);
            }
            _mm512_storeu_ps(o.add(t), a0);
            _mm512_storeu_ps(o.add(t + 16), a1);
            t += 32;
        }
        depthwise_tail_s1(o, t, n, padded, w, dilation, bias);
    }
}

/// conv_transpose1d with one group and an optional activation of the input; `w` is
/// `[c_in, c_out, kernel]` as torch stores it.
///
/// Per output tile, one gemm forms `col[j, (co, kx)] = sum_ci x[ci, j] w[ci, co, kx]` for the
/// input frames `j` that reach the tile; frame j then adds its `kernel` contiguous values of each
/// output channel at samples `j * stride + kx * dilation - padding` (overlap-add). Tiles cover
/// disjoint output samples, so they run in parallel; frames near a tile edge are computed by
/// both neighbours.
pub(crate) fn conv_transpose1d_gemm(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    pre: Option<PreAct>,
    g: &ConvTrGeom,
) -> Vec<f32> {
    let l_out = g.l_out().expect("checked by the caller");
    let (s, d, p, k) = (g.stride, g.dilation, g.padding as isize, g.kernel);
    let rows = g.c_out * k;
    // Frames per tile: enough that packing the weights (gemm's rhs) costs little next to the
    // product, few enough that the column block stays near the cache.
    let frames = ((1usize << 17) / rows.max(1)).clamp(128, 2048);
    let tile = (frames * s).min(l_out);
    let n_tiles = l_out.div_ceil(tile);
    let mut out = vec![0f32; g.batch * g.c_out * l_out];
    let shared = SharedOut::new(&mut out);
    let work = rows * g.c_in * frames;
    let reach = ((k - 1) * d) as isize;
    run_jobs(g.batch * n_tiles, work, |job, scratch, threads| {
        let b = job / n_tiles;
        let t0 = (job % n_tiles) * tile;
        let t1 = (t0 + tile).min(l_out);
        let dst = b * g.c_out * l_out;
        if let Some(bias) = bias {
            // SAFETY: job (b, tile) alone writes samples t0..t1 of batch b's rows.
            unsafe { shared.fill_rows(dst + t0, g.c_out, t1 - t0, l_out, bias) };
        }
        // Input frames j that reach this tile: t = j * s + kx * d - p for some kx.
        let j0 = div_ceil_i(t0 as isize + p - reach, s as isize).max(0) as usize;
        let j1 =
            ((t1 as isize - 1 + p).div_euclid(s as isize) + 1).clamp(0, g.l_in as isize) as usize;
        if j1 <= j0 {
            return;
        }
        let nj = j1 - j0;
        let xb = &x[b * g.c_in * g.l_in..][..g.c_in * g.l_in];
        let lhs = match pre {
            Some(pre) => {
                let (span, first) = (&mut scratch.b, j0 as isize);
                let zeros = EdgeMode::Zeros;
                fill_span(
                    span,
                    xb,
                    g.l_in,
                    g.c_in,
                    0,
                    (first, nj),
                    zeros,
                    Some(pre),
                    None,
                );
                MatRef::new(span, 1, nj)
            }
            None => MatRef::new(&xb[j0..], 1, g.l_in),
        };
        let col = &mut scratch.a;
        col.clear();
        col.resize(nj * rows, 0.0);
        let col_out = SharedOut::new(col);
        // SAFETY: `col` is this job's own scratch buffer.
        unsafe {
            col_out.sgemm_into(
                0,
                rows,
                nj,
                rows,
                g.c_in,
                lhs,
                MatRef::new(w, rows, 1),
                false,
                threads,
            )
        };
        for co in 0..g.c_out {
            // SAFETY: row co of batch b, samples t0..t1 belong to this job only.
            let orow = unsafe { shared.row(dst + co * l_out + t0, t1 - t0) };
            for j in j0..j1 {
                let taps = &col[(j - j0) * rows + co * k..][..k];
                let start = (j * s) as isize - p - t0 as isize;
                if d == 1 {
                    // Taps kx land on orow[start + kx]; keep those inside the tile.
                    let lo = (-start).clamp(0, k as isize) as usize;
                    let hi = (orow.len() as isize - start).clamp(lo as isize, k as isize) as usize;
                    let o0 = (start + lo as isize) as usize;
                    for (o, &v) in orow[o0..o0 + (hi - lo)].iter_mut().zip(&taps[lo..hi]) {
                        *o += v;
                    }
                } else {
                    for (kx, &v) in taps.iter().enumerate() {
                        let t = start + (kx * d) as isize;
                        if t >= 0 && (t as usize) < orow.len() {
                            orow[t as usize] += v;
                        }
                    }
                }
            }
        }
    });
    out
}

fn div_ceil_i(a: isize, b: isize) -> isize {
    -((-a).div_euclid(b))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::nn::conv_tr_direct;

    /// Straightforward conv1d, the definition the kernels must reproduce.
    pub(crate) fn naive_conv(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom) -> Vec<f32> {
        let l_out = g.l_out().unwrap();
        let (cin_g, cout_g) = (g.c_in / g.groups, g.c_out / g.groups);
        let mut out = vec![0f32; g.batch * g.c_out * l_out];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                let grp = co / cout_g;
                for t in 0..l_out {
                    let mut acc = bias.map_or(0.0, |b| b[co]) as f64;
                    for ci in 0..cin_g {
                        for kx in 0..g.kernel {
                            let pos =
                                (t * g.stride + kx * g.dilation) as isize - g.padding as isize;
                            if pos >= 0 && (pos as usize) < g.l_in {
                                let xv = x[(b * g.c_in + grp * cin_g + ci) * g.l_in + pos as usize];
                                acc += (w[(co * cin_g + ci) * g.kernel + kx] * xv) as f64;
                            }
                        }
                    }
                    out[(b * g.c_out + co) * l_out + t] = acc as f32;
                }
            }
        }
        out
    }

    fn naive_conv_tr(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvTrGeom) -> Vec<f32> {
        let l_out = g.l_out().unwrap();
        let mut out = vec![0f64; g.batch * g.c_out * l_out];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for t in 0..l_out {
                    out[(b * g.c_out + co) * l_out + t] = bias.map_or(0.0, |b| b[co]) as f64;
                }
                for ci in 0..g.c_in {
                    for j in 0..g.l_in {
                        for kx in 0..g.kernel {
                            let t = (j * g.stride + kx * g.dilation) as isize - g.padding as isize;
                            if t >= 0 && (t as usize) < l_out {
                                out[(b * g.c_out + co) * l_out + t as usize] += (x
                                    [(b * g.c_in + ci) * g.l_in + j]
                                    * w[(ci * g.c_out + co) * g.kernel + kx])
                                    as f64;
                            }
                        }
                    }
                }
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    pub(crate) fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-4, "at {i}: {x} vs {y}");
        }
    }

    /// The depthwise row writes every sample once from the bias (whatever was there before),
    /// and its AVX-512 and AVX2 kernels give the same bits, tails included.
    #[test]
    fn depthwise_row_starts_from_the_bias_on_every_path() {
        let (k, dilation, bias) = (7, 2, 0.37f32);
        let w = crate::nn::test_values(k, 1);
        for n in [0, 5, 31, 75, 200] {
            let padded = crate::nn::test_values(n + (k - 1) * dilation + 1, 2);
            let mut got = vec![f32::NAN; n];
            // SAFETY: `got` holds n floats.
            unsafe { depthwise_row(got.as_mut_ptr(), n, &padded, &w, 1, dilation, bias) };
            for (t, &y) in got.iter().enumerate() {
                let want: f64 = f64::from(bias)
                    + (0..k)
                        .map(|kx| f64::from(w[kx]) * f64::from(padded[t + kx * dilation]))
                        .sum::<f64>();
                assert!(
                    (f64::from(y) - want).abs() < 1e-5,
                    "n {n} t {t}: {y} vs {want}"
                );
            }
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                let mut narrow = vec![f32::NAN; n];
                // SAFETY: the features are present; `narrow` holds n floats.
                unsafe {
                    depthwise_row_s1_avx2(narrow.as_mut_ptr(), n, &padded, &w, dilation, bias)
                };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&narrow), bits(&got), "n {n}");
            }
        }
    }

    #[test]
    fn dense_grouped_and_depthwise_match_the_definition() {
        let cases = [
            // (c_in, c_out, k, pad, stride, dil, groups, l_in)
            (3, 5, 7, 3, 1, 1, 1, 300),
            (4, 6, 4, 1, 2, 1, 1, 301),
            (4, 4, 6, 2, 3, 1, 2, 200),
            (2, 3, 1, 0, 1, 1, 1, 2500),
            (2, 3, 1, 1, 2, 1, 1, 50),
            (6, 6, 7, 9, 1, 3, 6, 3000),
            (6, 6, 7, 27, 1, 9, 6, 90),
            (5, 5, 3, 0, 2, 2, 5, 40),
            (4, 8, 3, 1, 1, 1, 4, 33),
            (1, 6, 7, 3, 1, 1, 1, 500),
        ];
        for (i, &(c_in, c_out, k, pad, stride, dil, groups, l_in)) in cases.iter().enumerate() {
            let g = ConvGeom {
                batch: 2,
                c_in,
                l_in,
                c_out,
                kernel: k,
                padding: pad,
                pad_right: pad,
                edge: EdgeMode::Zeros,
                stride,
                dilation: dil,
                groups,
            };
            let x = pseudo(2 * c_in * l_in, i as u32);
            let w = pseudo(c_out * c_in / groups * k, 100 + i as u32);
            let bias = pseudo(c_out, 200 + i as u32);
            let want = naive_conv(&x, &w, Some(&bias), &g);
            let with_bias = Fusion {
                bias: Some(&bias),
                ..Default::default()
            };
            close(&conv1d_gemm(&x, &w, &with_bias, &g), &want);
            if c_in == groups {
                close(&conv1d_single_input(&x, &w, &with_bias, &g), &want);
            }
            let want = naive_conv(&x, &w, None, &g);
            close(&conv1d_gemm(&x, &w, &Fusion::default(), &g), &want);
            // A residual is added last.
            let res = pseudo(want.len(), 300 + i as u32);
            let with_res = Fusion {
                residual: Some(&res),
                ..Default::default()
            };
            let want_res: Vec<f32> = want.iter().zip(&res).map(|(a, b)| a + b).collect();
            close(&conv1d_gemm(&x, &w, &with_res, &g), &want_res);
            if c_in == groups {
                close(&conv1d_single_input(&x, &w, &with_res, &g), &want_res);
            }
        }
    }

    #[test]
    fn transposed_matches_the_definition() {
        let cases = [
            // (c_in, c_out, k, pad, out_pad, stride, dil, l_in)
            (4, 3, 16, 4, 0, 8, 1, 37),
            (3, 2, 14, 4, 1, 7, 1, 50),
            (3, 5, 6, 2, 1, 3, 1, 400),
            (2, 2, 4, 1, 0, 2, 1, 3000),
            (2, 3, 3, 0, 0, 1, 2, 20),
            (2, 3, 5, 0, 2, 3, 1, 1),
            (5, 6, 8, 2, 0, 4, 1, 1500),
            (3, 4, 5, 7, 1, 2, 1, 300),
        ];
        for (i, &(c_in, c_out, k, pad, out_pad, stride, dil, l_in)) in cases.iter().enumerate() {
            let g = ConvTrGeom {
                batch: 2,
                c_in,
                l_in,
                c_out,
                kernel: k,
                padding: pad,
                output_padding: out_pad,
                stride,
                dilation: dil,
            };
            let x = pseudo(2 * c_in * l_in, i as u32);
            let w = pseudo(c_in * c_out * k, 50 + i as u32);
            let bias = pseudo(c_out, 70 + i as u32);
            let want = naive_conv_tr(&x, &w, Some(&bias), &g);
            close(&conv_transpose1d_gemm(&x, &w, Some(&bias), None, &g), &want);
            if conv_tr_direct::applies(&g) {
                let got = conv_tr_direct::conv_transpose1d_polyphase(&x, &w, Some(&bias), None, &g);
                close(&got, &want);
            }
        }
    }
}
