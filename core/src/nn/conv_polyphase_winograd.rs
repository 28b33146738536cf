//! Strided convs and transposed convs whose kernel spans at most two strides, by minimal
//! filtering over frames of `stride` samples.
//!
//! The downsampling convs of SEANet encoders (kernel `2 s`, stride `s`) and the upsampling
//! transposed convs of their decoders already run near the FMA peak, so only fewer multiplies
//! make them faster. Cut the signal into frames of `s` samples:
//! - a strided conv's output `t` reads frames `t` and `t + 1` of its padded input: it is a
//!   2-tap stride-1 conv over frames whose channels are the `s` phases of every input channel;
//! - a transposed conv's output frame `m` (samples `m s .. m s + s` before trimming) reads input
//!   frames `m - 1` and `m`: a 2-tap stride-1 conv whose output channels are the `s` phases of
//!   every output channel.
//!
//! Either runs as Toom-Cook F(m, 2) over frames (`conv_winograd`'s tile sums). Strided convs
//! use [`STRIDED_PLAN`], F(3, 2): 4 products per 3 output frames instead of 6, with transforms
//! that only add, subtract and halve. Transposed convs use [`TRANSPOSED_PLAN`], F(4, 2): 5 per
//! 4 instead of 8, which evaluates at 2 and rounds somewhat more. The decoders' audio carries
//! that well within its bounds (full size, 10 s, 2 threads on a Zen 4: Mimi's four upsampling
//! layers 113 -> 98-103 ms, EnCodec's 61 -> 57), but an encoder's codes would carry it:
//! with F(4, 2) in its strided convs, DAC 24 kHz's full-size encoder gave 16 of 5056 codes
//! other than the reference's on a 2 s clip.
//!
//! Tiles of output frames sit on a grid anchored at absolute frame positions (`origin`), as in
//! `conv_winograd`: a tile's values depend only on its own frames, so whole-signal passes are
//! reproducible whatever the caller's windows are, where those windows hold whole tiles.

use super::conv::EdgeMode;
use super::conv_cpu::{ConvGeom, ConvTrGeom, PreAct, fill_span, run_jobs};
use super::conv_winograd::{Plan, WinogradWeights, tile_sums};
use super::gemm::{OutRow, SharedOut, assume_init, uninit_buffer};
use super::panel_gemm;
use super::tile_parts::split_parts;

/// F(3, 2) for strided convs: tiles of 3 output frames.
const STRIDED_PLAN: Plan = Plan {
    outputs: 3,
    piece_taps: 2,
};

/// F(4, 2) for transposed convs: tiles of 4 input frames.
const TRANSPOSED_PLAN: Plan = Plan {
    outputs: 4,
    piece_taps: 2,
};

/// Output frames beyond a strided conv's own reach, on each side, that a value may depend on
/// when the conv runs here: the other frames of its tile. Receptive-field bookkeeping (DAC's
/// chunking context) adds them.
pub fn strided_reach_frames() -> usize {
    STRIDED_PLAN.outputs - 1
}

/// Input frames beyond a transposed conv's own reach, on each side, that a value may depend on
/// when the conv runs here: the other frames of its tile.
pub fn transposed_reach_frames() -> usize {
    TRANSPOSED_PLAN.outputs - 1
}

/// Input rows times tiles that one job's transformed input may hold (floats): 256 KiB, in L2.
const JOB_FLOATS: usize = 1 << 16;

/// Transformed weights beyond this many bytes do not stay in the caches between jobs: every
/// job streams them from memory.
const LARGE_WEIGHT_BYTES: usize = 32 << 20;

/// Tiles per job when the weights are large: a whole low-rate signal, so that the weights
/// stream once, the job's products shared between threads.
const LARGE_WEIGHT_TILES: usize = 1024;

/// Tiles per job of `tiles` for `rows` input rows and transformed weights `ww`: about
/// [`JOB_FLOATS`] of transformed input, or many more when the weights are large, in whole
/// panels of the products (a partial panel costs as much as a whole one).
fn tiles_per_job(ww: &WinogradWeights, rows: usize, tiles: usize) -> usize {
    const COLS: usize = panel_gemm::COLS;
    let weight_bytes = ww.components() * ww.c_out * ww.c_in * std::mem::size_of::<f32>();
    if weight_bytes > LARGE_WEIGHT_BYTES {
        return tiles.clamp(1, LARGE_WEIGHT_TILES);
    }
    ((JOB_FLOATS / rows.max(1) + COLS / 2) / COLS * COLS).clamp(COLS, 256)
}

/// A strided conv's weights as a 2-tap conv over frames: `[c_out, s c_in, 2]`, input row
/// `c s + j` being phase `j` of channel `c`, tap `q` kernel tap `q s + j` (zero past the kernel).
#[derive(Debug)]
pub(crate) struct StridedWinograd {
    ww: WinogradWeights,
    stride: usize,
}

impl StridedWinograd {
    /// Whether a conv of this shape fits: one group, no dilation, `s < kernel <= 2 s`.
    pub fn fits(kernel: usize, stride: usize, dilation: usize, groups: usize) -> bool {
        groups == 1 && dilation == 1 && stride >= 2 && kernel > stride && kernel <= 2 * stride
    }

    /// From `w` `[c_out, c_in, kernel]`.
    pub fn new(w: &[f32], c_out: usize, c_in: usize, kernel: usize, stride: usize) -> Self {
        debug_assert!(Self::fits(kernel, stride, 1, 1));
        let s = stride;
        let mut framed = vec![0f32; c_out * s * c_in * 2];
        for oc in 0..c_out {
            for c in 0..c_in {
                for t in 0..kernel {
                    let (q, j) = (t / s, t % s);
                    framed[((oc * c_in + c) * s + j) * 2 + q] = w[(oc * c_in + c) * kernel + t];
                }
            }
        }
        StridedWinograd {
            ww: WinogradWeights::with_plan(&framed, c_out, s * c_in, 2, STRIDED_PLAN),
            stride,
        }
    }

    /// Whether a call fits these weights.
    pub fn applies(&self, g: &ConvGeom) -> bool {
        Self::fits(g.kernel, g.stride, g.dilation, g.groups)
            && g.stride == self.stride
            && self.ww.c_in == g.stride * g.c_in
    }
}

/// `conv(pre(pad(x))) + bias` with stride `s` and kernel at most `2 s`; output sample `j` is
/// frame `origin + j` of the signal's tile grid.
pub(crate) fn conv1d_strided_winograd(
    x: &[f32],
    sw: &StridedWinograd,
    bias: Option<&[f32]>,
    pre: Option<PreAct>,
    g: &ConvGeom,
    origin: usize,
) -> Vec<f32> {
    debug_assert!(sw.applies(g));
    let l_out = g.l_out().expect("checked by the caller");
    let (s, c_in, c_out) = (g.stride, g.c_in, g.c_out);
    let ww = &sw.ww;
    let m = ww.m;
    let rows = s * c_in;
    let p_first = origin / m;
    let p_end = (origin + l_out).div_ceil(m);
    let per_job = tiles_per_job(ww, rows, p_end - p_first);
    let jobs_per_batch = (p_end - p_first).div_ceil(per_job);
    // Every output is written once by the job whose tiles hold it: no clearing pass (a
    // single-threaded memset of up to 30 MB before the jobs start).
    let mut out = uninit_buffer(g.batch * c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    let work = ww.components() * c_out * rows * per_job;
    run_jobs(g.batch * jobs_per_batch, work, |job, scratch, threads| {
        let b = job / jobs_per_batch;
        let p0 = p_first + (job % jobs_per_batch) * per_job;
        let tiles = per_job.min(p_end - p0);
        // Local index of the job's first output frame (negative when the grid starts earlier).
        let base = (p0 * m) as isize - origin as isize;
        // Frames base .. base + m (tiles + 1): the tiles' own and the one after.
        let frames = m * (tiles + 1);
        let xb = &x[b * c_in * g.l_in..][..c_in * g.l_in];
        let part_len = tiles + 1;
        // Input sample of the job's first frame, and the parts: [c s + j][m][tiles + 1], part
        // `a` of row `c s + j` holding phase `j` of frames a, m + a, 2 m + a, ...
        let first = base * s as isize - g.padding as isize;
        let parts = &mut scratch.b;
        // Every element is written by the regrouping below: only grown elements are cleared.
        parts.resize(rows * frames, 0.0);
        if first >= 0 && first as usize + s * frames <= g.l_in {
            // Inside the signal: gather straight from it.
            let first = first as usize;
            for (c, rows_c) in parts.chunks_exact_mut(s * frames).enumerate() {
                regroup(
                    &xb[c * g.l_in + first..][..s * frames],
                    rows_c,
                    s,
                    m,
                    part_len,
                );
                if let Some(p) = pre {
                    p.apply(rows_c, c);
                }
            }
        } else {
            // At the edges: padded and activated by fill_span, then regrouped.
            fill_span(
                &mut scratch.c,
                xb,
                g.l_in,
                c_in,
                0,
                (first, s * frames),
                g.edge,
                pre,
                None,
            );
            for (row, rows_c) in scratch
                .c
                .chunks_exact(s * frames)
                .zip(parts.chunks_exact_mut(s * frames))
            {
                regroup(row, rows_c, s, m, part_len);
            }
        }
        tile_sums(
            ww,
            parts,
            part_len,
            tiles,
            1,
            &mut scratch.a,
            &mut scratch.d,
            threads,
        );
        let acc = &scratch.d;
        let lo = base.max(0) as usize;
        let hi = ((base + (m * tiles) as isize).max(0) as usize).min(l_out);
        if hi <= lo {
            return;
        }
        let skip = (lo as isize - base) as usize;
        let mut offsets = Vec::with_capacity(m);
        for oc in 0..c_out {
            // SAFETY: job (b, tiles) alone writes outputs lo..hi of batch b's rows.
            let row = OutRow::new(&shared, (b * c_out + oc) * l_out + lo, hi - lo);
            let bias = bias.map_or(0.0, |bs| bs[oc]);
            offsets.clear();
            offsets.extend((0..m).map(|a| (a * c_out + oc) * tiles));
            interleave(row, acc, &offsets, tiles, skip, bias);
        }
    });
    // SAFETY: the jobs' tiles cover every output frame of every batch, and each job writes
    // every sample of its frames in every row (`interleave`).
    unsafe { assume_init(out) }
}

/// One channel's samples (whole frames of `s`) into its `s` phase rows, each split into `m`
/// parts of `part_len` (part `a` holding frames `a, m + a, 2 m + a, ..`).
///
/// Frame `q m + a` sample `j` goes to row `j m + a` column `q`: a transpose of the
/// `[part_len, m s]` block, one destination row at a time so that every store is sequential
/// (the source block stays in L1 across the `m s` strided passes).
fn regroup(src: &[f32], rows: &mut [f32], s: usize, m: usize, part_len: usize) {
    let width = m * s;
    assert_eq!(src.len(), width * part_len);
    assert!(rows.len() >= width * part_len);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature is present; lengths asserted above.
        done = unsafe { regroup_avx512(src, rows, s, m, part_len) };
    }
    for j in 0..s {
        for a in 0..m {
            let dst = &mut rows[(j * m + a) * part_len..][..part_len];
            let col = src.iter().skip(done * width + a * s + j).step_by(width);
            for (d, &v) in dst[done..].iter_mut().zip(col) {
                *d = v;
            }
        }
    }
}

/// [`regroup`] of the whole blocks of 16 frames, as transposes of 16 x 16 blocks in
/// registers: 16 frames' rows of up to 16 samples loaded, transposed by unpacks and lane
/// shuffles, each column stored as 16 samples of its phase row. Returns the frames done.
/// Gathers of 16 samples `m s` apart had been about 4% of Mimi's encode on a Zen 4.
///
/// # Safety
/// AVX-512F; `src` `m s part_len` long, `rows` at least as long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn regroup_avx512(
    src: &[f32],
    rows: &mut [f32],
    s: usize,
    m: usize,
    part_len: usize,
) -> usize {
    use std::arch::x86_64::*;
    let width = m * s;
    let whole = part_len / 16 * 16;
    for c0 in (0..width).step_by(16) {
        let cols = 16.min(width - c0);
        let mask = ((1u32 << cols) - 1) as __mmask16;
        for q0 in (0..whole).step_by(16) {
            let mut v = [_mm512_setzero_ps(); 16];
            for (i, v) in v.iter_mut().enumerate() {
                // SAFETY: row q0 + i < part_len of `src`, its samples c0..c0 + cols < width
                // (the mask leaves the others unread).
                *v =
                    unsafe { _mm512_maskz_loadu_ps(mask, src.as_ptr().add((q0 + i) * width + c0)) };
            }
            transpose16(&mut v);
            for (c, v) in v.iter().take(cols).enumerate() {
                let col = c0 + c;
                let (a, j) = (col / s, col % s);
                let dst = &mut rows[(j * m + a) * part_len + q0..][..16];
                // SAFETY: the 16 values are inside `dst`.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), *v) };
            }
        }
    }
    whole
}

/// `v[i][j]` <-> `v[j][i]` for sixteen vectors of sixteen floats: pairs of rows interleaved,
/// then pairs of pairs, then 128-bit lanes across four rows and across eight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose16(v: &mut [std::arch::x86_64::__m512; 16]) {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    // Now t[2i] lane-wise holds (r2i[0], r2i+1[0], r2i[1], r2i+1[1]) per 128-bit lane, t[2i+1]
    // the same for elements 2 and 3 of each lane.
    for i in 0..4 {
        let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        v[4 * i] = _mm512_shuffle_ps::<0x44>(a, c);
        v[4 * i + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
        v[4 * i + 2] = _mm512_shuffle_ps::<0x44>(b, d);
        v[4 * i + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
    }
    // v[4i + e] now holds, in each 128-bit lane L, element 4L + e of rows 4i..4i + 4.
    for h in 0..2 {
        for e in 0..4 {
            let (a, b) = (v[8 * h + e], v[8 * h + 4 + e]);
            t[8 * h + e] = _mm512_shuffle_f32x4::<0x88>(a, b);
            t[8 * h + 4 + e] = _mm512_shuffle_f32x4::<0xDD>(a, b);
        }
    }
    for e in 0..8 {
        v[e] = _mm512_shuffle_f32x4::<0x88>(t[e], t[8 + e]);
        v[8 + e] = _mm512_shuffle_f32x4::<0xDD>(t[e], t[8 + e]);
    }
}

/// `dst[i] = bias + z[start + i]` for the interleaving `z[q n + k] = sources[k][q]` of the
/// `n = offsets.len()` sources of `len` values that lie in one buffer, source `k` at
/// `offsets[k]`: the tile sums (one source per output phase) back into signal order. On
/// AVX-512, three sources (a strided conv's tile outputs) go by two permutes per vector, more
/// (a transposed conv's `m s` output phases, 12-24) by a gather of 16 samples (against the
/// scalar stores, 10 s on a Zen 4: Mimi's transposed 256 -> 128 32.8 -> 30.4 ms, EnCodec's
/// 128 -> 64 22.2 -> 18.1).
fn interleave(dst: OutRow, buf: &[f32], offsets: &[usize], len: usize, start: usize, bias: f32) {
    let n = offsets.len();
    if dst.len == 0 {
        return;
    }
    // Every source holds the values the row reads from it.
    let last = (start + dst.len - 1) / n;
    assert!(
        last < len && offsets.iter().all(|&o| o + len <= buf.len()),
        "interleave: short source"
    );
    let src = Sources { buf, offsets, len };
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        if n == 3 {
            // The head up to a whole interleaved triple, scalar; then whole blocks of 48.
            let head = ((3 - start % 3) % 3).min(dst.len);
            interleave_scalar(&OutRow { len: head, ..dst }, &src, start, bias);
            let rest = dst.tail(head);
            let blocks = rest.len / 48;
            let three = [src.get(0), src.get(1), src.get(2)];
            let whole = OutRow {
                len: blocks * 48,
                ..rest
            };
            // SAFETY: the feature is present.
            unsafe { interleave3_avx512(&whole, three, (start + head) / 3, bias) };
            done = head + blocks * 48;
        } else if buf.len() <= i32::MAX as usize {
            // SAFETY: the feature is present; every index it gathers is below `buf.len()` (the
            // sources' values up to `last` are in the buffer, asserted above).
            done = unsafe { interleave_gather_avx512(&dst, buf, offsets, start, bias) };
        }
    }
    interleave_scalar(&dst.tail(done), &src, start + done, bias);
}

/// The sources of [`interleave`]: `len` values from each of `offsets` in `buf`.
struct Sources<'a> {
    buf: &'a [f32],
    offsets: &'a [usize],
    len: usize,
}

impl Sources<'_> {
    fn get(&self, k: usize) -> &[f32] {
        &self.buf[self.offsets[k]..][..self.len]
    }
}

/// The whole blocks of 16 samples of [`interleave`]; returns how many samples it wrote.
///
/// # Safety
/// AVX-512F; the indices `offsets[k] + q` the row reads are inside `buf` and below `i32::MAX`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn interleave_gather_avx512(
    dst: &OutRow,
    buf: &[f32],
    offsets: &[usize],
    start: usize,
    bias: f32,
) -> usize {
    use std::arch::x86_64::*;
    let n = offsets.len();
    // The pattern of sources repeats every lcm(16, n) samples, in which each source advances
    // by period / n values: one index vector per block of the period.
    let period = 16 / gcd(16, n) * n;
    let blocks = dst.len / 16;
    let table: Vec<__m512i> = (0..(period / 16).min(blocks))
        .map(|j| {
            let mut ix = [0i32; 16];
            for (l, v) in ix.iter_mut().enumerate() {
                let z = start + 16 * j + l;
                *v = (offsets[z % n] + z / n) as i32;
            }
            // SAFETY: 16 indices.
            unsafe { _mm512_loadu_si512(ix.as_ptr().cast()) }
        })
        .collect();
    let b = _mm512_set1_ps(bias);
    let step = (period / n) as i32;
    for j in 0..blocks {
        let (round, phase) = (j / table.len(), j % table.len());
        let ix = _mm512_add_epi32(table[phase], _mm512_set1_epi32(round as i32 * step));
        // SAFETY: the gathered indices are those of samples start + 16 j + l of the row, inside
        // `buf` (caller's contract); the store's 16 samples are inside the row.
        unsafe {
            let v = _mm512_i32gather_ps::<4>(ix, buf.as_ptr().cast());
            _mm512_storeu_ps(dst.ptr.add(16 * j), _mm512_add_ps(b, v));
        }
    }
    blocks * 16
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// [`interleave`] source by source, so that each source is read sequentially (the row is
/// small enough for L1).
fn interleave_scalar(dst: &OutRow, sources: &Sources, start: usize, bias: f32) {
    let n = sources.offsets.len();
    for k in 0..n {
        let src = sources.get(k);
        // The first destination index whose interleaved position has phase k.
        let first = (k + n - start % n) % n;
        let q0 = (start + first) / n;
        // The row may be uninitialised: every position of this phase must get a value.
        let count = dst.len.saturating_sub(first).div_ceil(n);
        assert!(
            count == 0 || q0 + count <= src.len(),
            "interleave: short source"
        );
        for (i, &v) in (first..dst.len).step_by(n).zip(&src[q0..]) {
            dst.write(i, bias + v);
        }
    }
}

/// [`interleave`] of three sources from their sample `q0` on into whole blocks of 48: each
/// block is 16 samples of every source, put in place by two permutes per vector (the scalar
/// loop's stride-3 stores were 10% of a strided conv's time).
///
/// # Safety
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn interleave3_avx512(dst: &OutRow, src: [&[f32]; 3], q0: usize, bias: f32) {
    use std::arch::x86_64::*;
    assert_eq!(dst.len % 48, 0);
    // Per output vector v of a block, lane l: position p = 16 v + l is source p % 3, sample
    // p / 3. `from_ab` picks sources 0 and 1 (indices 16.. select the second operand),
    // `from_c` and `mask_c` source 2.
    let mut from_ab = [[0i32; 16]; 3];
    let mut from_c = [[0i32; 16]; 3];
    let mut mask_c = [0u16; 3];
    for v in 0..3 {
        for l in 0..16 {
            let p = 16 * v + l;
            let (k, q) = (p % 3, (p / 3) as i32);
            match k {
                0 => from_ab[v][l] = q,
                1 => from_ab[v][l] = 16 + q,
                _ => {
                    from_c[v][l] = q;
                    mask_c[v] |= 1 << l;
                }
            }
        }
    }
    // SAFETY: 16 indices in each table.
    let load_index = |t: &[i32; 16]| unsafe { _mm512_loadu_si512(t.as_ptr().cast()) };
    let ab = [
        load_index(&from_ab[0]),
        load_index(&from_ab[1]),
        load_index(&from_ab[2]),
    ];
    let cc = [
        load_index(&from_c[0]),
        load_index(&from_c[1]),
        load_index(&from_c[2]),
    ];
    let b = _mm512_set1_ps(bias);
    for i in 0..dst.len / 48 {
        let q = q0 + 16 * i;
        let [s0, s1, s2] = src.map(|s| <&[f32; 16]>::try_from(&s[q..q + 16]).expect("in bounds"));
        // SAFETY: 16 values of each source; 48 elements of the row from 48 i (its length is a
        // multiple of 48), which only this job writes.
        unsafe {
            let (x0, x1, x2) = (
                _mm512_loadu_ps(s0.as_ptr()),
                _mm512_loadu_ps(s1.as_ptr()),
                _mm512_loadu_ps(s2.as_ptr()),
            );
            for v in 0..3 {
                let t = _mm512_permutex2var_ps(x0, ab[v], x1);
                let t = _mm512_mask_permutexvar_ps(t, mask_c[v], cc[v], x2);
                _mm512_storeu_ps(dst.ptr.add(48 * i + 16 * v), _mm512_add_ps(b, t));
            }
        }
    }
}

/// A transposed conv's weights as a 2-tap conv over frames: `[c_out s, c_in, 2]`, output row
/// `oc s + r` being phase `r` of channel `oc`; tap 0 reads the frame before (kernel tap
/// `r + s`), tap 1 the frame itself (kernel tap `r`).
#[derive(Debug)]
pub(crate) struct TransposedWinograd {
    ww: WinogradWeights,
    stride: usize,
}

impl TransposedWinograd {
    /// Whether a transposed conv of this shape fits: no dilation, `s < kernel <= 2 s`.
    pub fn fits(kernel: usize, stride: usize, dilation: usize) -> bool {
        dilation == 1 && stride >= 2 && kernel > stride && kernel <= 2 * stride
    }

    /// From `w` in torch's `[c_in, c_out, kernel]` layout.
    pub fn new(w: &[f32], c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Self {
        debug_assert!(Self::fits(kernel, stride, 1));
        let s = stride;
        let mut framed = vec![0f32; c_out * s * c_in * 2];
        for oc in 0..c_out {
            for r in 0..s {
                for c in 0..c_in {
                    let dst = &mut framed[((oc * s + r) * c_in + c) * 2..][..2];
                    let tap = |t: usize| {
                        if t < kernel {
                            w[(c * c_out + oc) * kernel + t]
                        } else {
                            0.0
                        }
                    };
                    dst[0] = tap(r + s);
                    dst[1] = tap(r);
                }
            }
        }
        TransposedWinograd {
            ww: WinogradWeights::with_plan(&framed, c_out * s, c_in, 2, TRANSPOSED_PLAN),
            stride,
        }
    }

    pub fn applies(&self, g: &ConvTrGeom) -> bool {
        Self::fits(g.kernel, g.stride, g.dilation)
            && g.stride == self.stride
            && self.ww.c_in == g.c_in
            && self.ww.c_out == g.c_out * g.stride
    }
}

/// `conv_transpose1d(pre(x)) + bias`, trimmed by the padding; untrimmed output frame `m` is
/// frame `origin + m` of the signal's tile grid.
pub(crate) fn conv_transpose1d_winograd(
    x: &[f32],
    tw: &TransposedWinograd,
    bias: Option<&[f32]>,
    pre: Option<PreAct>,
    g: &ConvTrGeom,
    origin: usize,
) -> Vec<f32> {
    debug_assert!(tw.applies(g));
    let l_out = g.l_out().expect("checked by the caller");
    let (s, p, c_in, c_out) = (g.stride, g.padding, g.c_in, g.c_out);
    let ww = &tw.ww;
    let m = ww.m;
    // Untrimmed frames whose samples reach the trimmed output 0..l_out.
    let f_first = p / s;
    let f_end = (p + l_out).div_ceil(s);
    let p_first = (origin + f_first) / m;
    let p_end = (origin + f_end).div_ceil(m);
    let per_job = tiles_per_job(ww, c_in, p_end - p_first);
    let jobs_per_batch = (p_end - p_first).div_ceil(per_job);
    // Every output is written once by the job whose tiles hold it: no clearing pass (a
    // single-threaded memset of up to 30 MB before the jobs start).
    let mut out = uninit_buffer(g.batch * c_out * l_out);
    let shared = SharedOut::new_uninit(&mut out);
    let work = ww.components() * c_out * s * c_in * per_job;
    run_jobs(g.batch * jobs_per_batch, work, |job, scratch, threads| {
        let b = job / jobs_per_batch;
        let p0 = p_first + (job % jobs_per_batch) * per_job;
        let tiles = per_job.min(p_end - p0);
        // Local untrimmed frame of the job's first output frame.
        let base = (p0 * m) as isize - origin as isize;
        // Input frames base - 1 .. base - 1 + m (tiles + 1), zero outside the signal.
        let frames = m * (tiles + 1);
        let xb = &x[b * c_in * g.l_in..][..c_in * g.l_in];
        fill_span(
            &mut scratch.c,
            xb,
            g.l_in,
            c_in,
            0,
            (base - 1, frames),
            EdgeMode::Zeros,
            pre,
            None,
        );
        let parts = &mut scratch.b;
        // Every element is written by `split_parts` below: only grown elements are cleared.
        parts.resize(c_in * frames, 0.0);
        for (src, dst) in scratch
            .c
            .chunks_exact(frames)
            .zip(parts.chunks_exact_mut(frames))
        {
            split_parts(src, dst, m, 1);
        }
        tile_sums(
            ww,
            parts,
            tiles + 1,
            tiles,
            1,
            &mut scratch.a,
            &mut scratch.d,
            threads,
        );
        let acc = &scratch.d;
        let rows = c_out * s;
        // Trimmed samples of this job's frames: untrimmed u = (base + f) s + r, trimmed u - p.
        let u_lo = (base * s as isize - p as isize).max(0) as usize;
        let u_hi =
            (((base + (m * tiles) as isize) * s as isize - p as isize).max(0) as usize).min(l_out);
        if u_hi <= u_lo {
            return;
        }
        // Sample (q m + a) s + r of a row is phase r of component a of tile q: source
        // k = a s + r of the interleaving starts at `offsets[k]` (plus the row's own phases).
        let offsets: Vec<usize> = (0..m * s)
            .map(|k| ((k / s) * rows + k % s) * tiles)
            .collect();
        let mut row_offsets = Vec::with_capacity(m * s);
        for oc in 0..c_out {
            // SAFETY: job (b, tiles) alone writes the samples of its frames in batch b's rows.
            let row = OutRow::new(&shared, (b * c_out + oc) * l_out + u_lo, u_hi - u_lo);
            let bias = bias.map_or(0.0, |bs| bs[oc]);
            // Offset of the first sample in the job's untrimmed samples.
            let v = ((u_lo + p) as isize - base * s as isize) as usize;
            row_offsets.clear();
            row_offsets.extend(offsets.iter().map(|&o| o + oc * s * tiles));
            interleave(row, acc, &row_offsets, tiles, v, bias);
        }
    });
    // SAFETY: the jobs' tiles cover every frame that reaches the trimmed output, and each job
    // writes every sample of its frames in every row (`interleave`).
    unsafe { assume_init(out) }
}

#[cfg(test)]
mod tests {
    use super::super::conv_cpu::tests::{naive_conv, pseudo};
    use super::*;

    /// The transposed conv by its definition, untrimmed then trimmed.
    fn naive_conv_tr(x: &[f32], w: &[f32], bias: &[f32], g: &ConvTrGeom) -> Vec<f32> {
        let l_out = g.l_out().unwrap();
        let mut out = vec![0f32; g.batch * g.c_out * l_out];
        for b in 0..g.batch {
            for oc in 0..g.c_out {
                for u in 0..l_out {
                    let full = u + g.padding;
                    let mut acc = f64::from(bias[oc]);
                    for c in 0..g.c_in {
                        for t in 0..g.kernel {
                            if full >= t && (full - t).is_multiple_of(g.stride) {
                                let i = (full - t) / g.stride;
                                if i < g.l_in {
                                    acc += f64::from(w[(c * g.c_out + oc) * g.kernel + t])
                                        * f64::from(x[(b * g.c_in + c) * g.l_in + i]);
                                }
                            }
                        }
                    }
                    out[(b * g.c_out + oc) * l_out + u] = acc as f32;
                }
            }
        }
        out
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (j, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{what} at {j}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn interleave_of_three_matches_the_scalar_loop() {
        let buf: Vec<f32> = (0..3).flat_map(|k| crate::nn::test_values(70, k)).collect();
        let offsets = [0, 70, 140];
        let src = Sources {
            buf: &buf,
            offsets: &offsets,
            len: 70,
        };
        let sources = [src.get(0), src.get(1), src.get(2)];
        for start in [0, 1, 2, 5] {
            for len in [0, 1, 47, 48, 100, 3 * 70 - start] {
                let mut want = vec![f32::NAN; len];
                let row = |v: &mut Vec<f32>| OutRow {
                    ptr: v.as_mut_ptr(),
                    len: v.len(),
                };
                interleave_scalar(&row(&mut want), &src, start, 0.25);
                let mut got = vec![f32::NAN; len];
                interleave(row(&mut got), &buf, &offsets, 70, start, 0.25);
                assert!(
                    want.iter()
                        .zip(&got)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
                for (i, &y) in want.iter().enumerate() {
                    let z = start + i;
                    assert_eq!(y, 0.25 + sources[z % 3][z / 3]);
                }
            }
        }
    }

    #[test]
    fn interleave_of_many_matches_the_definition() {
        for n in [3usize, 6, 12, 15, 16, 18, 24, 32, 40] {
            let len = 40;
            // Sources at scattered offsets of one buffer, with gaps between them.
            let buf = crate::nn::test_values(n * (len + 7) + 5, n as _);
            let offsets: Vec<usize> = (0..n).map(|k| ((k * 5) % n) * (len + 7) + 3).collect();
            for start in [0, 1, n - 1, 17] {
                for count in [0, 1, 15, 16, 33, 64, n * len - start] {
                    let mut got = vec![f32::NAN; count];
                    let row = OutRow {
                        ptr: got.as_mut_ptr(),
                        len: count,
                    };
                    interleave(row, &buf, &offsets, len, start, 0.25);
                    for (i, &y) in got.iter().enumerate() {
                        let z = start + i;
                        let want = 0.25 + buf[offsets[z % n] + z / n];
                        assert_eq!(y.to_bits(), want.to_bits(), "n {n} start {start} i {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn regroup_is_a_transpose_on_every_path() {
        for (s, m, part_len) in [
            (2, 3, 1),
            (4, 3, 17),
            (5, 3, 40),
            (8, 3, 33),
            (4, 3, 32),
            (6, 3, 50),
            (8, 3, 64),
            (5, 3, 16),
            (7, 3, 81),
        ] {
            let width = m * s;
            let src = crate::nn::test_values(width * part_len, 7);
            let mut rows = vec![f32::NAN; width * part_len];
            regroup(&src, &mut rows, s, m, part_len);
            for q in 0..part_len {
                for a in 0..m {
                    for j in 0..s {
                        let got = rows[(j * m + a) * part_len + q];
                        assert_eq!(got.to_bits(), src[q * width + a * s + j].to_bits());
                    }
                }
            }
        }
    }

    #[test]
    fn strided_matches_the_definition() {
        // (c_in, c_out, kernel, stride, l_in, (left, right) padding, edge, origin)
        let cases = [
            (3, 5, 8, 4, 301, (4, 3), EdgeMode::Zeros, 0),
            (2, 7, 10, 5, 97, (5, 3), EdgeMode::Reflect, 0),
            (4, 3, 4, 2, 50, (2, 0), EdgeMode::Reflect, 7),
            (5, 300, 16, 8, 120, (8, 0), EdgeMode::Zeros, 2),
            (3, 4, 5, 3, 40, (0, 2), EdgeMode::Zeros, 1),
            (2, 2, 12, 6, 12, (6, 0), EdgeMode::Zeros, 0),
        ];
        for (i, &(c_in, c_out, k, s, l_in, (left, right), edge, origin)) in cases.iter().enumerate()
        {
            let g = ConvGeom {
                batch: 2,
                c_in,
                l_in,
                c_out,
                kernel: k,
                padding: left,
                pad_right: right,
                edge,
                stride: s,
                dilation: 1,
                groups: 1,
            };
            let x = pseudo(2 * c_in * l_in, i as u32);
            let w = pseudo(c_out * c_in * k, 100 + i as u32);
            let bias = pseudo(c_out, 200 + i as u32);
            // The definition on an explicitly padded copy.
            let padded_len = l_in + left + right;
            let mut xp = Vec::new();
            for row in x.chunks_exact(l_in) {
                let mut span = Vec::new();
                fill_span(
                    &mut span,
                    row,
                    l_in,
                    1,
                    0,
                    (-(left as isize), padded_len),
                    edge,
                    None,
                    None,
                );
                xp.extend(span);
            }
            let gp = ConvGeom {
                l_in: padded_len,
                padding: 0,
                pad_right: 0,
                edge: EdgeMode::Zeros,
                ..g
            };
            let want = naive_conv(&xp, &w, Some(&bias), &gp);
            let sw = StridedWinograd::new(&w, c_out, c_in, k, s);
            assert!(sw.applies(&g));
            let got = conv1d_strided_winograd(&x, &sw, Some(&bias), None, &g, origin);
            close(&got, &want, &format!("case {i}"));
        }
    }

    #[test]
    fn transposed_matches_the_definition() {
        // (c_in, c_out, kernel, stride, l_in, padding, output_padding, origin)
        let cases = [
            (3, 5, 8, 4, 31, 0, 0, 0),
            (2, 7, 10, 5, 17, 2, 0, 1),
            (4, 3, 4, 2, 50, 1, 1, 5),
            (300, 6, 16, 8, 9, 0, 0, 2),
            (3, 4, 5, 3, 4, 0, 0, 0),
            (2, 2, 12, 6, 1, 3, 0, 0),
        ];
        for (i, &(c_in, c_out, k, s, l_in, pad, opad, origin)) in cases.iter().enumerate() {
            let g = ConvTrGeom {
                batch: 2,
                c_in,
                l_in,
                c_out,
                kernel: k,
                padding: pad,
                output_padding: opad,
                stride: s,
                dilation: 1,
            };
            let x = pseudo(2 * c_in * l_in, i as u32);
            let w = pseudo(c_in * c_out * k, 100 + i as u32);
            let bias = pseudo(c_out, 200 + i as u32);
            let want = naive_conv_tr(&x, &w, &bias, &g);
            let tw = TransposedWinograd::new(&w, c_in, c_out, k, s);
            assert!(tw.applies(&g));
            let got = conv_transpose1d_winograd(&x, &tw, Some(&bias), None, &g, origin);
            close(&got, &want, &format!("case {i}"));
        }
    }
}
