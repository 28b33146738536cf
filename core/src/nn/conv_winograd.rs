//! Dense stride-1 convs by minimal filtering (Winograd / Toom-Cook), for wide layers.
//!
//! A DAC decoder spends three quarters of its arithmetic in 7-tap convs over 96-1536 channels,
//! and there the im2col gemm already runs near the FMA peak: only fewer multiplies make it
//! faster. Outputs are computed in tiles of `m` (`t, t + d, .., t + (m - 1) d`, `d` the
//! dilation). The kernel is split into pieces of a few taps, each computed as Toom-Cook's
//! F(m, r), which gets `m` outputs of an r-tap filter from `m + r - 1` products instead of
//! `m r`: the weights (`U_i = G w`, once at load) and each tile's input samples (`V_i = B^T x`)
//! are transformed, every transformed component `i` is one gemm over the channels
//! (`M_i = U_i V_i`), and the tile's outputs are `A^T M`.
//!
//! The plan ([`PLAN`]) is F(4, 4) + F(4, 3): 13 products per 4 outputs of a 7-tap kernel
//! instead of 28. It was chosen by measuring, on the full-size DAC decoders (10 s, 2 threads),
//! against other splits: F(2, 3) pieces (error at the level of the direct sum, but only 1.2x
//! faster), F(3, 4) + F(3, 3) (1.4x) and this one (1.5x). The larger tiles evaluate at +-2 and
//! 1/2, which costs accuracy: the full-size decoders' audio moves from within 2.6e-5 of the
//! reference to within 3.5e-5 (the bound is 1e-4). DAC's encoders run their units here too;
//! their codes stay identical to the reference's on the fixtures and the full-size checks.
//!
//! Tiles sit on a grid anchored to absolute sample positions (`origin`): output `t` starts a
//! tile when `t mod m d < d`. A value's bits depend on which tile it belongs to, so a window of
//! a long signal, given its offset in the signal, reproduces the whole-signal pass exactly
//! wherever its inputs agree. A tile reads up to `(m - 1) d` samples beyond each output's own
//! reach; [`reach_extension`] tells receptive-field bookkeeping by how much.

use std::mem::MaybeUninit;

use super::conv::EdgeMode;
use super::conv_cpu::{ConvGeom, Fusion, PreAct, Scratch, fill_span, run_jobs};
use super::gemm::{OutRow, SharedOut, assume_init, uninit_buffer};
use super::panel_gemm::{self, PackedRows};
use super::tile_parts::{merge_parts, split_parts};

/// Outputs per tile, and taps per piece of a split kernel (the last piece takes the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub outputs: usize,
    pub piece_taps: usize,
}

/// Tiles of 4 outputs, pieces of 4 taps: a 7-tap kernel as F(4, 4) + F(4, 3), 13 products per
/// 4 outputs instead of 28.
pub(crate) const PLAN: Plan = Plan {
    outputs: 4,
    piece_taps: 4,
};

/// Evaluation points of Toom-Cook, in the order they are taken (infinity comes on top).
const POINTS: [f64; 7] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];

/// Kernel sizes whose convs may run here.
pub(crate) fn supported_kernel(kernel: usize) -> bool {
    kernel >= 2
}

/// Whether a call of a conv with transformed weights fits this kernel: one group, stride 1,
/// zero padding, and no fusion but the input activation, bias and residual.
pub(crate) fn applies(g: &ConvGeom, f: &Fusion) -> bool {
    g.groups == 1
        && g.stride == 1
        && g.edge == EdgeMode::Zeros
        && f.in_scale.is_none()
        && f.post.is_none()
}

/// How many samples beyond the direct conv's reach, on each side, an output may depend on when
/// its conv runs here (dilation `d`): the other outputs of its tile.
pub fn reach_extension(dilation: usize) -> usize {
    (PLAN.outputs - 1) * dilation
}

/// F(m, r) for one piece of the kernel: taps `first_tap .. first_tap + taps`, `m` outputs.
#[derive(Debug, Clone)]
struct Piece {
    first_tap: usize,
    taps: usize,
    /// `m x n` (`n = m + taps - 1` components): output transform, non-zero terms per row.
    at: Vec<Vec<(usize, f32)>>,
    /// `n x taps`: weight transform (applied in f64 at load).
    g: Vec<Vec<f64>>,
    /// `n x n`: input transform, non-zero terms per row.
    bt: Vec<Vec<(usize, f32)>>,
}

impl Piece {
    fn new(first_tap: usize, taps: usize, m: usize) -> Self {
        let n = m + taps - 1;
        let finite = &POINTS[..n - 1];
        // An evaluation matrix with `cols` columns: powers of each point, then the leading
        // coefficient for the point at infinity.
        let eval = |cols: usize| -> Vec<Vec<f64>> {
            let mut rows: Vec<Vec<f64>> = finite
                .iter()
                .map(|&p| (0..cols).map(|k| f64::powi(p, k as i32)).collect())
                .collect();
            let mut inf = vec![0.0; cols];
            inf[cols - 1] = 1.0;
            rows.push(inf);
            rows
        };
        let sparse = |rows: Vec<Vec<f64>>| -> Vec<Vec<(usize, f32)>> {
            rows.into_iter()
                .map(|r| {
                    r.into_iter()
                        .enumerate()
                        .filter(|&(_, v)| v.abs() > 1e-12)
                        .map(|(j, v)| (j, v as f32))
                        .collect()
                })
                .collect()
        };
        Piece {
            first_tap,
            taps,
            at: sparse(transpose(&eval(m))),
            g: eval(taps),
            bt: sparse(transpose(&invert(&eval(n)))),
        }
    }

    fn components(&self) -> usize {
        self.g.len()
    }
}

fn transpose(m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..m[0].len())
        .map(|j| m.iter().map(|row| row[j]).collect())
        .collect()
}

/// Gauss-Jordan inverse of a small well-conditioned matrix (the Toom-Cook evaluation matrix).
fn invert(m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = m.len();
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut r = row.clone();
            r.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            r
        })
        .collect();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .expect("non-empty");
        a.swap(col, pivot);
        let p = a[col][col];
        a[col].iter_mut().for_each(|v| *v /= p);
        let pivot_row = a[col].clone();
        for (row, r) in a.iter_mut().enumerate() {
            let f = r[col];
            if row != col && f != 0.0 {
                r.iter_mut()
                    .zip(&pivot_row)
                    .for_each(|(v, &pv)| *v -= f * pv);
            }
        }
    }
    a.into_iter().map(|r| r[n..].to_vec()).collect()
}

/// A conv's weights transformed for this kernel.
#[derive(Debug)]
pub(crate) struct WinogradWeights {
    /// Outputs per tile.
    pub(crate) m: usize,
    pieces: Vec<Piece>,
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    /// Per component (of all pieces in order), `[c_out][c_in]` packed for the products.
    u: Vec<PackedRows>,
}

impl WinogradWeights {
    /// From `w` `[c_out, c_in, kernel]` (one group).
    pub fn new(w: &[f32], c_out: usize, c_in: usize, kernel: usize) -> Self {
        Self::with_plan(w, c_out, c_in, kernel, PLAN)
    }

    pub fn with_plan(w: &[f32], c_out: usize, c_in: usize, kernel: usize, plan: Plan) -> Self {
        debug_assert!(supported_kernel(kernel) && w.len() == c_out * c_in * kernel);
        let m = plan.outputs;
        let pieces: Vec<Piece> = (0..kernel)
            .step_by(plan.piece_taps)
            .map(|t| Piece::new(t, plan.piece_taps.min(kernel - t), m))
            .collect();
        let comps: usize = pieces.iter().map(Piece::components).sum();
        let mut u = Vec::with_capacity(comps);
        let mut dst = vec![0f32; c_out * c_in];
        for piece in &pieces {
            for g_row in &piece.g {
                for (oc, v) in dst.iter_mut().enumerate() {
                    let taps = &w[oc * kernel + piece.first_tap..][..piece.taps];
                    *v = g_row
                        .iter()
                        .zip(taps)
                        .map(|(&g, &t)| g * f64::from(t))
                        .sum::<f64>() as f32;
                }
                u.push(PackedRows::new(&dst, c_out, c_in));
            }
        }
        WinogradWeights {
            m,
            pieces,
            c_in,
            c_out,
            u,
        }
    }

    pub(crate) fn components(&self) -> usize {
        self.pieces.iter().map(Piece::components).sum()
    }
}

/// Tiles per job: enough gemm columns to amortise packing the weights, few enough that one
/// component's buffers stay in the L2 cache.
const TILES_PER_JOB: usize = 256;

/// `post`-free fused conv (zero padding, one group, stride 1) whose output sample `j` sits at
/// absolute position `origin + j` of the signal (the tile grid's anchor).
///
/// A job takes whole blocks of `m d` outputs; tile `r < d` of a block holds its outputs
/// `r, r + d, .., r + (m - 1) d`. With each block of input split the same way into `m` parts of
/// `d` samples, tap `t` of tile `p` (tiles numbered block by block) is sample
/// `p + (t / m) d` of part `t mod m`: every transform is a run of contiguous vector operations,
/// whatever the dilation.
pub(crate) fn conv1d_winograd(
    x: &[f32],
    ww: &WinogradWeights,
    f: &Fusion,
    g: &ConvGeom,
    origin: usize,
) -> Vec<f32> {
    debug_assert!(applies(g, f));
    debug_assert!(g.c_in == ww.c_in && g.c_out == ww.c_out);
    let l_out = g.l_out().expect("checked by the caller");
    let (c_in, c_out) = (g.c_in, g.c_out);
    let grid = JobGrid::new(ww, g, origin);
    // Every output is written once by the job whose blocks hold it (`merge_row`): no clearing
    // pass.
    let mut out = uninit_buffer(g.batch * c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    let work = ww.components() * c_out * c_in * grid.blocks_per_job * g.dilation;
    run_jobs(
        g.batch * grid.jobs_per_batch,
        work,
        |job, scratch, threads| {
            let b = job / grid.jobs_per_batch;
            let xb = &x[b * c_in * g.l_in..][..c_in * g.l_in];
            let sums = grid.job_sums(job, xb, ww, f.pre, g, scratch, threads);
            let (lo, hi) = sums.outputs(l_out);
            for oc in 0..c_out {
                // SAFETY: job (b, blocks) alone writes samples lo..hi of batch b's rows, each once.
                let row = OutRow::new(&shared, (b * c_out + oc) * l_out + lo, hi - lo);
                let bias = f.bias.map_or(0.0, |bs| bs[oc]);
                let res = f
                    .residual
                    .map(|r| &r[(b * c_out + oc) * l_out + lo..][..hi - lo]);
                // SAFETY: the row is this job's alone (above).
                sums.merge_row(&scratch.d, oc, unsafe { row.slice() }, res, bias);
            }
        },
    );
    // SAFETY: the jobs' blocks cover every output of every batch, and `merge_row` writes each
    // sample of a job's rows.
    unsafe { assume_init(out) }
}

/// How a stride-1 conv over the whole signal splits into jobs of whole blocks of `m d`
/// outputs on the grid anchored at `origin`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobGrid {
    m: usize,
    d: usize,
    /// First block on the absolute grid, and blocks per job and jobs per batch row.
    q_first: usize,
    q_end: usize,
    pub blocks_per_job: usize,
    pub jobs_per_batch: usize,
    /// Blocks of input a job reads beyond its own: the kernel's reach plus the tile's.
    extra_blocks: usize,
    origin: usize,
}

/// The tile sums of one job: which outputs they hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobSums {
    m: usize,
    d: usize,
    c_out: usize,
    tiles: usize,
    blocks: usize,
    /// Local index of the first output of the job's first block (negative when the grid
    /// starts before the window).
    base: isize,
}

impl JobGrid {
    pub fn new(ww: &WinogradWeights, g: &ConvGeom, origin: usize) -> Self {
        let l_out = g.l_out().expect("checked by the caller");
        let (m, d) = (ww.m, g.dilation);
        let blk = m * d;
        let q_first = origin / blk;
        let q_end = (origin + l_out).div_ceil(blk);
        let blocks_per_job = (TILES_PER_JOB / d).max(1);
        JobGrid {
            m,
            d,
            q_first,
            q_end,
            blocks_per_job,
            jobs_per_batch: (q_end - q_first).div_ceil(blocks_per_job),
            extra_blocks: (g.kernel + m - 2) / m + 1,
            origin,
        }
    }

    /// The tile sums of job `job` (its blocks of batch row `xb`), `[m][c_out][tiles]`, left in
    /// `scratch.d`; `scratch.a`, `.b` and `.c` are working space.
    #[allow(clippy::too_many_arguments)]
    pub fn job_sums(
        &self,
        job: usize,
        xb: &[f32],
        ww: &WinogradWeights,
        pre: Option<PreAct>,
        g: &ConvGeom,
        scratch: &mut Scratch,
        threads: usize,
    ) -> JobSums {
        let (m, d) = (self.m, self.d);
        let blk = m * d;
        let q0 = self.q_first + (job % self.jobs_per_batch) * self.blocks_per_job;
        let nb = self.blocks_per_job.min(self.q_end - q0);
        let tiles = nb * d;
        let base = (q0 * blk) as isize - self.origin as isize;
        let span_blocks = nb + self.extra_blocks;
        fill_span(
            &mut scratch.b,
            xb,
            g.l_in,
            g.c_in,
            0,
            (base - g.padding as isize, blk * span_blocks),
            EdgeMode::Zeros,
            pre,
            None,
        );
        // [c_in][part][span_blocks * d].
        let part_len = span_blocks * d;
        let parts = &mut scratch.c;
        // Every element is written by `split_parts` below: only grown elements are cleared.
        parts.resize(m * g.c_in * part_len, 0.0);
        for (row, dst) in scratch
            .b
            .chunks_exact(blk * span_blocks)
            .zip(parts.chunks_exact_mut(m * part_len))
        {
            split_parts(row, dst, m, d);
        }
        tile_sums(
            ww,
            parts,
            part_len,
            tiles,
            d,
            &mut scratch.a,
            &mut scratch.d,
            threads,
        );
        JobSums {
            m,
            d,
            c_out: ww.c_out,
            tiles,
            blocks: nb,
            base,
        }
    }
}

impl JobSums {
    /// The local outputs `lo..hi` of an output of `l_out` samples that the job holds.
    pub fn outputs(&self, l_out: usize) -> (usize, usize) {
        let lo = self.base.max(0) as usize;
        let hi =
            ((self.base + (self.m * self.d * self.blocks) as isize).max(0) as usize).min(l_out);
        (lo, hi.max(lo))
    }

    /// Output channel `oc`'s outputs `lo..lo + row.len()` (from [`Self::outputs`]) from the
    /// sums `acc`: `row = (res + bias) + sum`, each element written once.
    pub fn merge_row(
        &self,
        acc: &[f32],
        oc: usize,
        row: &mut [MaybeUninit<f32>],
        res: Option<&[f32]>,
        bias: f32,
    ) {
        let (m, d, tiles) = (self.m, self.d, self.tiles);
        let blk = m * d;
        let sums = |a: usize| &acc[(a * self.c_out + oc) * tiles..][..tiles];
        // Local output lo + k is sample `skip + k` of the job's blocks.
        let skip = (self.base.max(0) - self.base) as usize;
        if skip == 0 && row.len() == blk * self.blocks {
            merge_parts(&sums, row, m, d, res, bias);
            return;
        }
        for (k, y) in row.iter_mut().enumerate() {
            let (q, pos) = ((skip + k) / blk, (skip + k) % blk);
            let s = sums(pos / d)[q * d + pos % d];
            y.write(match res {
                Some(r) => (r[k] + bias) + s,
                None => bias + s,
            });
        }
    }
}

/// The sums of every output of `tiles` tiles, `acc` `[m][c_out][tiles]`, from their inputs split
/// into parts (`parts`: `[c_in][m][part_len]`, as [`split_parts`] leaves them, dilation `d`).
/// `vm` is working space.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_sums(
    ww: &WinogradWeights,
    parts: &[f32],
    part_len: usize,
    tiles: usize,
    d: usize,
    vm: &mut Vec<f32>,
    acc: &mut Vec<f32>,
    threads: usize,
) {
    let (c_in, c_out, m) = (ww.c_in, ww.c_out, ww.m);
    // Running sums of each output of the tiles, [m][c_out][tiles]. Both buffers are written
    // before they are read (each sum's first term, V's first term, M by gemm without
    // accumulation), so only grown elements are cleared.
    acc.resize(m * c_out * tiles, 0.0);
    // One component at a time: V = B^T x, M = U V [c_out][ld], then M into the sums by A^T.
    // V is laid out in the products' panels of `COLS` tiles, `[panel][c_in][COLS]`, and `ld`
    // is the tiles rounded up to whole panels; the padding's columns are computed and never
    // read.
    const COLS: usize = panel_gemm::COLS;
    let ld = tiles.next_multiple_of(COLS);
    vm.resize((c_in + c_out) * ld, 0.0);
    let (v, mm) = vm.split_at_mut(c_in * ld);
    let mut comp = 0;
    let wide = simd::wide();
    let mut offsets = Vec::new();
    for (pi, piece) in ww.pieces.iter().enumerate() {
        for (i, terms) in piece.bt.iter().enumerate() {
            // Where each term's tap starts in a channel's parts.
            offsets.clear();
            offsets.extend(terms.iter().map(|&(j, w)| {
                let t = piece.first_tap + j;
                ((t % m) * part_len + (t / m) * d, w)
            }));
            let step = m * part_len;
            simd::transform_inputs(wide, v, parts, step, &offsets, c_in, tiles);
            panel_gemm::multiply(&ww.u[comp], v, tiles, mm, ld, threads);
            for (a, sums) in acc.chunks_exact_mut(c_out * tiles).enumerate() {
                let w = piece.at[a].iter().find(|&&(k, _)| k == i).map(|&(_, w)| w);
                // Every output's first term is in the first piece's first components.
                let first = pi == 0 && !piece.at[a].iter().any(|&(k, _)| k < i);
                if let Some(w) = w {
                    simd::add_products(wide, sums, mm, tiles, ld, w, first);
                }
            }
            comp += 1;
        }
    }
}

/// The element-wise passes of [`tile_sums`], compiled for AVX-512 where the CPU has it (the
/// crate's baseline is SSE2). Every path gives the bits of `sum + w * x` with the product
/// rounded on its own ([`Term`]), so all of them agree.
mod simd {
    use super::panel_gemm::COLS;

    /// Whether the AVX-512 builds may run.
    pub(super) fn wide() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// A transform coefficient `w`, by how its product joins a sum. When `w` is a power of two
    /// (the output transforms, and every transform of F(3, 2)), `w x` is exact, so `sum + w x`
    /// rounds once, as a fused multiply-add does, and for `w = +-1` it is an addition or a
    /// subtraction: half the operations, the same bits (short of underflow to subnormals).
    #[derive(Clone, Copy, Debug)]
    enum Term {
        Add,
        Sub,
        /// A power of two other than +-1.
        Exact(f32),
        /// Any other coefficient: the product is rounded before the sum.
        Rounded(f32),
    }

    impl Term {
        fn of(w: f32) -> Term {
            let exponent = (w.to_bits() >> 23) & 0xff;
            let power_of_two = w.to_bits() & 0x7f_ffff == 0 && exponent != 0 && exponent != 0xff;
            match w {
                1.0 => Term::Add,
                -1.0 => Term::Sub,
                _ if power_of_two => Term::Exact(w),
                _ => Term::Rounded(w),
            }
        }

        /// `dst = w src`.
        #[inline(always)]
        fn set(self, dst: &mut [f32], src: &[f32]) {
            match self {
                Term::Add => dst.copy_from_slice(&src[..dst.len()]),
                Term::Sub => dst.iter_mut().zip(src).for_each(|(o, &x)| *o = -x),
                Term::Exact(w) | Term::Rounded(w) => {
                    dst.iter_mut().zip(src).for_each(|(o, &x)| *o = w * x)
                }
            }
        }

        /// `dst += w src`; `FMA`: the build has fused multiply-adds.
        #[inline(always)]
        fn add<const FMA: bool>(self, dst: &mut [f32], src: &[f32]) {
            let pairs = dst.iter_mut().zip(src);
            match self {
                Term::Add => pairs.for_each(|(o, &x)| *o += x),
                Term::Sub => pairs.for_each(|(o, &x)| *o -= x),
                Term::Exact(w) if FMA => pairs.for_each(|(o, &x)| *o = w.mul_add(x, *o)),
                Term::Exact(w) | Term::Rounded(w) => pairs.for_each(|(o, &x)| *o += w * x),
            }
        }
    }

    /// `V = B^T x` for one component: `v` `[panel][c_in][COLS]` from `parts` (channel `c`'s at
    /// `c step`), term `(offset, w)` reading `tiles` values from `offset`.
    fn transform_body(
        v: &mut [f32],
        parts: &[f32],
        step: usize,
        terms: &[(usize, f32)],
        c_in: usize,
        tiles: usize,
    ) {
        let (&(o0, w0), rest) = terms.split_first().expect("a component has terms");
        let first = Term::of(w0);
        let rest: Vec<(usize, Term)> = rest.iter().map(|&(o, w)| (o, Term::of(w))).collect();
        for c in 0..c_in {
            let chan = &parts[c * step..];
            for t0 in (0..tiles).step_by(COLS) {
                let n = COLS.min(tiles - t0);
                let dst = &mut v[(t0 / COLS * c_in + c) * COLS..][..n];
                first.set(dst, &chan[o0 + t0..][..n]);
                for &(off, term) in &rest {
                    term.add::<false>(dst, &chan[off + t0..][..n]);
                }
            }
        }
    }

    /// [`transform_body`] with each panel's two vectors in registers through all the terms
    /// (compiled from the generic loops, every term reloaded and stored them), the last,
    /// partial panel by masked loads.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn transform_avx512(
        v: &mut [f32],
        parts: &[f32],
        step: usize,
        terms: &[(usize, f32)],
        c_in: usize,
        tiles: usize,
    ) {
        use std::arch::x86_64::*;
        let panels = tiles.div_ceil(COLS);
        let (&(o0, w0), rest) = terms.split_first().expect("a component has terms");
        let rest: Vec<(usize, Term)> = rest.iter().map(|&(o, w)| (o, Term::of(w))).collect();
        let reach = terms.iter().map(|&(o, _)| o).max().unwrap_or(0) + tiles;
        assert!(c_in == 0 || (c_in - 1) * step + reach <= parts.len());
        assert!(panels * c_in * COLS <= v.len());
        let w0v = _mm512_set1_ps(w0);
        for p in 0..panels {
            // The panel's tiles: the low vector's lanes up to `n`, then the high one's.
            let n = COLS.min(tiles - p * COLS);
            let lanes = |k: usize| -> __mmask16 {
                match n.saturating_sub(16 * k) {
                    0 => 0,
                    l if l >= 16 => !0,
                    l => (1 << l) - 1,
                }
            };
            let (lo, hi) = (lanes(0), lanes(1));
            let load = |at: usize| {
                // SAFETY: the masks cover tiles p COLS .. p COLS + n <= tiles, and
                // `c step + offset + tiles <= parts.len()` for every channel and offset
                // (asserted above).
                unsafe {
                    let q = parts.as_ptr().add(at);
                    (
                        _mm512_maskz_loadu_ps(lo, q),
                        _mm512_maskz_loadu_ps(hi, q.add(16)),
                    )
                }
            };
            for c in 0..c_in {
                let t0 = c * step + p * COLS;
                let (mut a, mut b) = load(t0 + o0);
                if w0 != 1.0 {
                    (a, b) = (_mm512_mul_ps(w0v, a), _mm512_mul_ps(w0v, b));
                }
                for &(off, term) in &rest {
                    let (x, y) = load(t0 + off);
                    (a, b) = match term {
                        Term::Add => (_mm512_add_ps(a, x), _mm512_add_ps(b, y)),
                        Term::Sub => (_mm512_sub_ps(a, x), _mm512_sub_ps(b, y)),
                        Term::Exact(w) => {
                            let w = _mm512_set1_ps(w);
                            (_mm512_fmadd_ps(w, x, a), _mm512_fmadd_ps(w, y, b))
                        }
                        Term::Rounded(w) => {
                            let w = _mm512_set1_ps(w);
                            let (px, py) = (_mm512_mul_ps(w, x), _mm512_mul_ps(w, y));
                            (_mm512_add_ps(a, px), _mm512_add_ps(b, py))
                        }
                    };
                }
                // SAFETY: panel p, channel c of `v` (asserted above); the padding columns
                // past `tiles` are written too (zeros), and never read.
                unsafe {
                    let d = v.as_mut_ptr().add((p * c_in + c) * COLS);
                    _mm512_storeu_ps(d, a);
                    _mm512_storeu_ps(d.add(16), b);
                }
            }
        }
    }

    /// `sums[r] (+)= w m[r]` for every row `r` (`tiles` long; `m`'s rows `ld` apart), `=` when
    /// `first`.
    #[inline(always)]
    fn add_products_body<const FMA: bool>(
        sums: &mut [f32],
        m: &[f32],
        tiles: usize,
        ld: usize,
        w: f32,
        first: bool,
    ) {
        let term = Term::of(w);
        for (s, mr) in sums.chunks_exact_mut(tiles).zip(m.chunks(ld)) {
            let mr = &mr[..tiles];
            if first {
                term.set(s, mr);
            } else {
                term.add::<FMA>(s, mr);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn add_products_avx512(
        sums: &mut [f32],
        m: &[f32],
        tiles: usize,
        ld: usize,
        w: f32,
        first: bool,
    ) {
        add_products_body::<true>(sums, m, tiles, ld, w, first)
    }

    pub(super) fn transform_inputs(
        wide: bool,
        v: &mut [f32],
        parts: &[f32],
        step: usize,
        terms: &[(usize, f32)],
        c_in: usize,
        tiles: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide` says the CPU has AVX-512 (and so FMA).
            return unsafe { transform_avx512(v, parts, step, terms, c_in, tiles) };
        }
        let _ = wide;
        transform_body(v, parts, step, terms, c_in, tiles)
    }

    pub(super) fn add_products(
        wide: bool,
        sums: &mut [f32],
        m: &[f32],
        tiles: usize,
        ld: usize,
        w: f32,
        first: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide` says the CPU has AVX-512 (and so FMA).
            return unsafe { add_products_avx512(sums, m, tiles, ld, w, first) };
        }
        let _ = wide;
        add_products_body::<false>(sums, m, tiles, ld, w, first)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv_cpu::tests::{naive_conv, pseudo};
    use super::*;

    fn geom(c_in: usize, c_out: usize, kernel: usize, dil: usize, l_in: usize) -> ConvGeom {
        let pad = dil * (kernel - 1) / 2;
        ConvGeom {
            batch: 2,
            c_in,
            l_in,
            c_out,
            kernel,
            padding: pad,
            pad_right: dil * (kernel - 1) - pad,
            edge: EdgeMode::Zeros,
            stride: 1,
            dilation: dil,
            groups: 1,
        }
    }

    /// The AVX-512 transform and sums give the bits of the portable loops, for coefficients
    /// of every kind (+-1, other powers of two, any other value), whole and partial panels.
    #[test]
    fn element_passes_agree_across_builds() {
        if !simd::wide() {
            eprintln!("AVX-512 not available here: skipped");
            return;
        }
        let (c_in, step) = (3, 200);
        let parts = pseudo(c_in * step, 7);
        let terms = [
            (0, 1.0),
            (5, -1.0),
            (9, 0.25),
            (13, -0.6666667),
            (40, 4.0),
            (2, 0.11),
        ];
        for tiles in [1usize, 31, 32, 33, 64, 100] {
            let ld = tiles.next_multiple_of(panel_gemm::COLS);
            for first in 0..terms.len() {
                let mut order = terms.to_vec();
                order.rotate_left(first);
                let mut wide = vec![f32::NAN; c_in * ld];
                let mut narrow = vec![f32::NAN; c_in * ld];
                simd::transform_inputs(true, &mut wide, &parts, step, &order, c_in, tiles);
                simd::transform_inputs(false, &mut narrow, &parts, step, &order, c_in, tiles);
                for p in 0..ld / panel_gemm::COLS {
                    for c in 0..c_in {
                        for j in 0..panel_gemm::COLS.min(tiles - p * panel_gemm::COLS) {
                            let at = (p * c_in + c) * panel_gemm::COLS + j;
                            assert_eq!(wide[at].to_bits(), narrow[at].to_bits(), "tiles {tiles}");
                        }
                    }
                }
            }
            for &(_, w) in &terms {
                for first in [true, false] {
                    let m = pseudo(c_in * ld, 11);
                    let mut wide = pseudo(c_in * tiles, 12);
                    let mut narrow = wide.clone();
                    simd::add_products(true, &mut wide, &m, tiles, ld, w, first);
                    simd::add_products(false, &mut narrow, &m, tiles, ld, w, first);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&wide), bits(&narrow), "tiles {tiles}, w {w}");
                }
            }
        }
    }

    #[test]
    fn toom_cook_pieces_are_exact_in_rationals() {
        // F(2, 3) at 0, 1, -1, inf: the transforms only add, subtract and halve.
        let p = Piece::new(0, 3, 2);
        for row in p.bt.iter().chain(&p.at) {
            for &(_, v) in row {
                assert!([1.0, -1.0, 0.5, -0.5].contains(&v), "{v}");
            }
        }
    }

    #[test]
    fn matches_the_definition() {
        // (c_in, c_out, kernel, dilation, l_in, origin)
        let cases = [
            (3, 5, 7, 1, 300, 0),
            (4, 70, 7, 3, 301, 5),
            (8, 6, 7, 9, 200, 13),
            (5, 4, 3, 1, 33, 1),
            (6, 3, 2, 2, 40, 0),
            (4, 4, 5, 2, 9, 7),
            (7, 9, 7, 9, 1000, 17),
            (2, 3, 4, 1, 1, 0),
        ];
        for (i, &(c_in, c_out, k, dil, l_in, origin)) in cases.iter().enumerate() {
            let g = geom(c_in, c_out, k, dil, l_in);
            let x = pseudo(2 * c_in * l_in, i as u32);
            let w = pseudo(c_out * c_in * k, 100 + i as u32);
            let bias = pseudo(c_out, 200 + i as u32);
            let ww = WinogradWeights::new(&w, c_out, c_in, k);
            let want = naive_conv(&x, &w, Some(&bias), &g);
            let res = pseudo(want.len(), 300 + i as u32);
            let f = Fusion {
                bias: Some(&bias),
                residual: Some(&res),
                ..Default::default()
            };
            let got = conv1d_winograd(&x, &ww, &f, &g, origin);
            assert_eq!(got.len(), want.len());
            for (j, (a, b)) in got.iter().zip(&want).enumerate() {
                let b = b + res[j];
                assert!(
                    (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                    "case {i} at {j}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn windows_reproduce_the_whole_signal_bit_for_bit() {
        let (c_in, c_out, k, dil, l_in) = (6, 80, 7, 3, 700);
        let g = geom(c_in, c_out, k, dil, l_in);
        let x = pseudo(2 * c_in * l_in, 1);
        let w = pseudo(c_out * c_in * k, 2);
        let ww = WinogradWeights::new(&w, c_out, c_in, k);
        let whole = conv1d_winograd(&x, &ww, &Fusion::default(), &g, 0);
        // Outputs further than the reach plus the tile extension from a window's edges depend
        // only on samples inside the window.
        let margin = dil * (k - 1) / 2 + reach_extension(dil);
        for (s0, s1) in [
            (100, 400),
            (101, 333),
            (7, 700),
            (250, 251 + 2 * margin + 5),
        ] {
            let len = s1 - s0;
            let xw: Vec<f32> = (0..2 * c_in)
                .flat_map(|row| x[row * l_in + s0..row * l_in + s1].to_vec())
                .collect();
            let gw = ConvGeom { l_in: len, ..g };
            let win = conv1d_winograd(&xw, &ww, &Fusion::default(), &gw, s0);
            let misaligned = conv1d_winograd(&xw, &ww, &Fusion::default(), &gw, s0 + 1);
            let mut differs = false;
            for row in 0..2 * c_out {
                let lo = if s0 == 0 { 0 } else { margin };
                let hi = if s1 == l_in { len } else { len - margin };
                for j in lo..hi {
                    let (a, b) = (win[row * len + j], whole[row * l_in + s0 + j]);
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "window {s0}..{s1} row {row} at {j}"
                    );
                    differs |= misaligned[row * len + j].to_bits() != b.to_bits();
                }
            }
            // The anchor matters: a shifted grid groups the samples differently.
            assert!(differs, "window {s0}..{s1}");
        }
    }
}
