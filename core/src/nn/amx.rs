//! f32 matrix products on Intel AMX tiles, as accurate as f32 fused multiply-adds.
//!
//! AMX multiplies bf16 tiles into f32 accumulators at 512 multiply-adds per cycle and core, 16
//! times what AVX-512 does in f32. bf16 keeps 8 of f32's 24 significant bits, so each operand is
//! split into three bf16 parts, `v = hi + mid + lo` exactly (each part is the nearest bf16 to
//! what the parts before it leave), and a product takes the six partial products that reach
//! f32's precision: `hi*hi`, `hi*mid`, `mid*hi`, `mid*mid`, `hi*lo`, `lo*hi`. What is left out
//! (`mid*lo`, `lo*mid`, `lo*lo`) is at most 2^-23 of the product; every partial product of two
//! bf16 is exact in f32 and is added to an f32 accumulator with one rounding. So a result is
//! within the error bound of an f32 FMA loop with six terms per product (tested against f64;
//! in practice a few units in the last place). TPUs compute f32 matmuls the same way
//! ("bf16_6x").
//!
//! Tiles are 16 rows of 64 bytes. A product block is 32 x 32 outputs in four accumulator tiles;
//! the other four hold two tiles of the left operand (rows 0-15 and 16-31) and two of the right
//! (columns 0-15 and 16-31). Both operands are laid out by blocks of 32 rows or columns, each
//! step of 32 in `k` one contiguous 6 KiB (three parts of two tiles), so the kernel reaches
//! every tile from one pointer per operand, and every tile row is one cache line.
//!
//! Two kinds of left operand: [`PackedLinear`](super::PackedLinear) packs its input into the
//! block layout above on every call (its weight is split once, at load); the convolutions of
//! `conv_amx` split a time tile once into three time-major planes ([`SplitPlanes`]) whose
//! overlapping windows the tile loads read in place, a row stride apart ([`window_block`]).
//! Products come back to channel-major order 16 x 16 at a time in registers
//! ([`TransposedStore`]).
//!
//! Linux hands out AMX state only to processes that ask for it (`arch_prctl`); [`available`]
//! asks once, and says no (the FMA kernels run instead) on other systems, CPUs without AMX or
//! AVX-512 BW, or when `TESSERA_NO_AMX` is set.

use rayon::prelude::*;

use super::packed_linear::OutPtr;

/// Rows and columns of one product block.
pub(crate) const BLOCK: usize = 32;
/// Rows (left operand) or columns (right operand) of a tile.
pub(crate) const TILE: usize = 16;

pub(crate) use platform::Tiles;
/// `k` per tile: 16 pairs of bf16.
pub(crate) const KSTEP: usize = 32;
/// bf16 parts per value.
const PARTS: usize = 3;
/// bf16 values in a tile.
const TILE_LEN: usize = TILE * KSTEP;

/// Whether the AMX kernels run on this machine (checked and set up once per process).
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| std::env::var_os("TESSERA_NO_AMX").is_none() && platform::enable())
}

/// The three bf16 parts of `v`, largest first, that add up to `v` exactly (for `|v|` above
/// 2^-110; below that the smallest part is a subnormal, which AMX reads as zero).
#[inline]
fn split(v: f32) -> [u16; PARTS] {
    let hi = nearest_bf16(v);
    let rest = v - widen(hi);
    let mid = nearest_bf16(rest);
    let lo = nearest_bf16(rest - widen(mid));
    [hi, mid, lo]
}

/// `v` rounded to the nearest bf16 (ties to even), as its bits.
#[inline]
fn nearest_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

#[inline]
fn widen(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// bf16 values in 64-byte lines, so that every tile row is one cache line (a row across two
/// lines costs the load twice: 11 against 6 ns per tile product).
#[derive(Debug, Clone, Default)]
struct Lines(Vec<Line>);

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

impl Lines {
    fn zeros(len: usize) -> Self {
        Lines(vec![Line([0; 32]); len.div_ceil(32)])
    }

    fn as_slice(&self) -> &[u16] {
        // SAFETY: `Line` is 32 `u16` with no padding (`repr(C)`, size 64 = 32 * 2).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 32) }
    }

    fn as_mut_slice(&mut self) -> &mut [u16] {
        // SAFETY: as `as_slice`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 32) }
    }
}

thread_local! {
    /// The left operand's buffer, kept between calls so that a call does not fault in fresh
    /// pages. Taken, not borrowed: a nested call on the same thread (rayon runs other jobs
    /// while it waits) finds the cell empty and allocates its own.
    static LEFT_BUFFER: std::cell::Cell<Lines> = const { std::cell::Cell::new(Lines(Vec::new())) };
}

/// This thread's buffer for at least `len` values (contents arbitrary).
fn take_buffer(len: usize) -> Lines {
    let buf = LEFT_BUFFER.take();
    if buf.0.len() * 32 >= len {
        buf
    } else {
        Lines::zeros(len)
    }
}

/// bf16 values of one step of a block: three parts of two tiles.
const STEP_LEN: usize = PARTS * 2 * TILE_LEN;

/// Where value `(i, kk)` of a block's operand lies in its `[step][part][half][tile]` layout,
/// part 0; `within_tile` places it inside a tile.
#[inline]
fn block_offset(half_index: usize, kk: usize, within_tile: usize) -> usize {
    (kk / KSTEP) * STEP_LEN + (half_index / TILE) * TILE_LEN + within_tile
}

/// Offset of column `c` (of a block), `k` index `kk`, part 0, in a right operand's block
/// (pairs of consecutive `k` side by side, as the tile product reads them).
#[inline]
fn right_offset(c: usize, kk: usize) -> usize {
    let within = kk % KSTEP;
    block_offset(c, kk, (within / 2) * 2 * TILE + (c % TILE) * 2 + within % 2)
}

/// A right operand `[k, n]` (given as its transpose, torch's `[n, k]` weight), split and laid
/// out for the tiles by blocks of 32 columns: `[n / 32][k / 32][part][half][16 pairs of
/// k][16 columns][2]`, padded with zeros. A step of a block is one contiguous 6 KiB, so the
/// kernel reaches all its tiles from one pointer.
#[derive(Debug, Clone)]
pub(crate) struct AmxRight {
    k: usize,
    n: usize,
    steps: usize,
    data: Lines,
}

impl AmxRight {
    /// From `weight` `[n, k]` row-major (row `j` = column `j` of the operand).
    pub(crate) fn from_transposed(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k, "amx: weight shape");
        let steps = k.div_ceil(KSTEP);
        let per_block = steps * STEP_LEN;
        let mut data = Lines::zeros(n.div_ceil(BLOCK) * per_block);
        data.as_mut_slice()
            .par_chunks_mut(per_block.max(1))
            .enumerate()
            .for_each(|(cb, block)| {
                for c in 0..BLOCK.min(n - cb * BLOCK) {
                    let row = &weight[(cb * BLOCK + c) * k..][..k];
                    for (kk, &w) in row.iter().enumerate() {
                        let at = right_offset(c, kk);
                        for (part, b) in split(w).into_iter().enumerate() {
                            block[at + part * 2 * TILE_LEN] = b;
                        }
                    }
                }
            });
        AmxRight { k, n, steps, data }
    }

    /// Columns of the operand (rows of the weight given to [`Self::from_transposed`]).
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// All of the operand's blocks of 32 columns.
    pub(crate) fn column_blocks(&self) -> std::ops::Range<usize> {
        0..self.n.div_ceil(BLOCK)
    }

    /// Bytes of the split operand.
    pub(crate) fn bytes(&self) -> usize {
        self.data.0.len() * 64
    }

    /// Rows of the operand.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Row `j` of the weight given to [`Self::from_transposed`], rebuilt from its parts.
    pub(crate) fn weight_row(&self, j: usize, out: &mut [f32]) {
        let block = &self.data.as_slice()[(j / BLOCK) * self.steps * STEP_LEN..];
        for (kk, o) in out.iter_mut().enumerate().take(self.k) {
            let at = right_offset(j % BLOCK, kk);
            let part = |p: usize| widen(block[at + p * 2 * TILE_LEN]);
            *o = part(0) + part(1) + part(2);
        }
    }
}

/// `rows` rows of `k` values, row `i` at `data[i * rs..]`, split and laid out as a left
/// operand by blocks of 32 rows (`[m / 32][k / 32][part][half][16 rows][32]`, padded with
/// zeros) into `out`, on rayon's pool.
fn pack_left(data: &[f32], rs: usize, rows: usize, k: usize, out: &mut [u16]) {
    let per_block = k.div_ceil(KSTEP) * STEP_LEN;
    let out = &mut out[..rows.div_ceil(BLOCK) * per_block];
    // SAFETY: AVX-512 (F and BW) is part of `available`, which the callers assert.
    let pack =
        |(rb, block): (usize, &mut [u16])| unsafe { pack_left_block(data, rs, rows, k, rb, block) };
    out.par_chunks_mut(per_block).enumerate().for_each(pack);
}

/// Row block `rb` of [`pack_left`].
///
/// # Safety
/// The CPU has AVX-512 F and BW (`available`).
unsafe fn pack_left_block(
    data: &[f32],
    rs: usize,
    m: usize,
    k: usize,
    rb: usize,
    block: &mut [u16],
) {
    let rows = BLOCK.min(m - rb * BLOCK);
    let steps = k.div_ceil(KSTEP);
    // Step by step, so that the writes run through the block in order: row by row they jump
    // 6 KiB (about a page) at a time, a TLB miss per line (250 x 2048 on one thread: 0.7 ->
    // 0.45 ms).
    for step in 0..steps {
        for r in 0..BLOCK {
            let at = block_offset(r, step * KSTEP, (r % TILE) * KSTEP);
            let (hi, rest) = block[at..].split_at_mut(2 * TILE_LEN);
            let (mid, lo) = rest.split_at_mut(2 * TILE_LEN);
            if r < rows {
                let row = &data[(rb * BLOCK + r) * rs..][..k];
                // Padding (`k` past its end) must be zero: it meets every column of the other
                // operand.
                let chunk = &row[step * KSTEP..(step * KSTEP + KSTEP).min(k)];
                // SAFETY: AVX-512 F and BW (the caller's contract); `chunk` holds at most 32
                // values and each part 32 from its start.
                unsafe { platform::split32(chunk, [hi, mid, lo]) };
            } else {
                for part in [hi, mid, lo] {
                    part[..KSTEP].fill(0);
                }
            }
        }
    }
}

/// Multiply-adds a parallel job should hold at least.
const JOB_WORK: usize = 1 << 20;

/// Bytes of the left operand a pass over the output's columns may keep in L2: longer `k` gets
/// fewer rows per pass, so that each column block's pass re-reads them from L2, not L3.
const LEFT_BYTES_IN_L2: usize = 768 << 10;

/// The output of [`multiply`]: `m` rows of `n` values, contiguous.
struct Output {
    ptr: OutPtr,
    m: usize,
    n: usize,
}

/// `out = bias + left x right` on packed operands (`steps` steps of `k`; `bias` a row of `n`,
/// zeros when `None`). A job takes a range of column blocks. `k` runs in slices of at most
/// [`K_SLICE_STEPS`] steps, the output blocks holding the partial sums between slices: a slice
/// of the left operand stays in L2 while the job's column blocks stream past it, where a long
/// `k` (Mimi's 2048 -> 512 projection) would otherwise re-read the whole left operand from L3
/// for every column block. For each chunk of row blocks whose slice fits in L2, every column
/// block of the range runs over every row block of the chunk.
///
/// # Safety
/// Tiles may be configured on the calling threads (AMX [`available`]); `left` and `right` hold
/// whole blocks for `m` and `n`; the output's `m` rows of `n` values are
/// writable and no one else accesses them during the call.
unsafe fn multiply(left: &[u16], right: &[u16], steps: usize, out: &Output, bias: Option<&[f32]>) {
    let (m, n) = (out.m, out.n);
    let block_operand = steps * STEP_LEN;
    let slice_steps = steps.min(K_SLICE_STEPS);
    let col_blocks = n.div_ceil(BLOCK);
    let row_blocks = m.div_ceil(BLOCK);
    let chunk_blocks = (LEFT_BYTES_IN_L2 / (slice_steps * STEP_LEN * 2)).clamp(1, row_blocks);
    let per_col_block = row_blocks * BLOCK * BLOCK * steps * KSTEP * PARTS * 2;
    let per_job = (JOB_WORK / per_col_block).clamp(1, col_blocks);
    // With several slices, a job takes its share of the columns at once, so that each slice
    // of the left operand is read once per job.
    let per_job = if slice_steps < steps {
        per_job.max(col_blocks.div_ceil(rayon::current_num_threads()))
    } else {
        per_job
    };
    let run = |job: usize| {
        let _tiles = platform::Tiles::configure();
        let col_range = job * per_job..((job + 1) * per_job).min(col_blocks);
        // Blocks cut by the edge of the output accumulate here, one per (row, column) block.
        let mut partial = Vec::new();
        for first_rb in (0..row_blocks).step_by(chunk_blocks) {
            let chunk = first_rb..(first_rb + chunk_blocks).min(row_blocks);
            for k0 in (0..steps).step_by(slice_steps) {
                let slice = slice_steps.min(steps - k0);
                let last_slice = k0 + slice == steps;
                for cb in col_range.clone() {
                    let col0 = cb * BLOCK;
                    let cols = BLOCK.min(n - col0);
                    let mut bias_block = [0f32; BLOCK];
                    if let Some(b) = bias {
                        bias_block[..cols].copy_from_slice(&b[col0..col0 + cols]);
                    }
                    let right = &right[cb * block_operand + k0 * STEP_LEN..][..slice * STEP_LEN];
                    for rb in chunk.clone() {
                        let operands = platform::Operands {
                            left: left[rb * block_operand + k0 * STEP_LEN..][..slice * STEP_LEN]
                                .as_ptr(),
                            right: right.as_ptr(),
                            steps: slice,
                        };
                        let init = if k0 == 0 {
                            platform::Init::Bias(bias_block.as_ptr())
                        } else {
                            platform::Init::Accumulate
                        };
                        let row0 = rb * BLOCK;
                        let rows = BLOCK.min(m - row0);
                        // SAFETY: row0 + rows <= m, col0 + cols <= n: inside the output, which
                        // only this job writes in column block `cb`.
                        let dst = unsafe { out.ptr.at(row0 * n + col0) };
                        if rows == BLOCK && cols == BLOCK {
                            // SAFETY: both operands hold `slice` steps from `k0` (the packed
                            // layouts); the bias is 32 floats; the block's 32 x 32 values lie
                            // inside the output (and hold the sums so far when accumulating).
                            unsafe { platform::block(&operands, init, dst, n) };
                            continue;
                        }
                        let at =
                            ((rb - first_rb) * per_job + (cb - col_range.start)) * BLOCK * BLOCK;
                        if partial.len() < at + BLOCK * BLOCK {
                            partial.resize(at + BLOCK * BLOCK, 0f32);
                        }
                        let tmp = &mut partial[at..at + BLOCK * BLOCK];
                        // SAFETY: operands as above; `tmp` is one whole block, holding this
                        // block's sums so far when accumulating.
                        unsafe { platform::block(&operands, init, tmp.as_mut_ptr(), BLOCK) };
                        if last_slice {
                            for r in 0..rows {
                                // SAFETY: row r of the block's valid part, inside the output.
                                let row =
                                    unsafe { std::slice::from_raw_parts_mut(dst.add(r * n), cols) };
                                row.copy_from_slice(&tmp[r * BLOCK..][..cols]);
                            }
                        }
                    }
                }
            }
        }
    };
    let jobs = col_blocks.div_ceil(per_job);
    if jobs == 1 {
        run(0);
    } else {
        (0..jobs).into_par_iter().for_each(run);
    }
}

/// Steps of `k` (32 each) a product runs before its partial sums go back to the output.
const K_SLICE_STEPS: usize = 16;

/// `y = x rhs + bias`: `x` `[m, k]`, `y` `[m, n]` row-major; on rayon's pool.
///
/// # Panics
/// When `x` or `y` is shorter than `m` rows, or AMX is not [`available`].
pub(crate) fn matmul_bias(
    rhs: &AmxRight,
    bias: Option<&[f32]>,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) {
    let (k, n) = (rhs.k, rhs.n);
    assert!(available(), "amx: not available");
    assert!(x.len() >= m * k && y.len() >= m * n, "amx: operand rows");
    assert!(bias.is_none_or(|b| b.len() >= n), "amx: bias");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for row in y[..m * n].chunks_exact_mut(n) {
            match bias {
                Some(b) => row.copy_from_slice(&b[..n]),
                None => row.fill(0.0),
            }
        }
        return;
    }
    let mut left = take_buffer(m.div_ceil(BLOCK) * rhs.steps * STEP_LEN);
    pack_left(x, k, m, k, left.as_mut_slice());
    let out = Output {
        ptr: OutPtr(y.as_mut_ptr()),
        m,
        n,
    };
    // SAFETY: AMX is available (asserted); both operands are packed for m and n; `y` holds
    // `m` rows of `n` (asserted) and is borrowed mutably.
    unsafe { multiply(left.as_slice(), rhs.data.as_slice(), rhs.steps, &out, bias) };
    LEFT_BUFFER.set(left);
}

/// Three bf16 planes `[rows][width]`, the parts of a signal transposed to time-major order:
/// the left operand of a convolution, whose rows (windows of consecutive time steps) overlap.
#[derive(Debug, Default)]
pub(crate) struct SplitPlanes {
    data: Lines,
    width: usize,
    /// Values per plane (a whole number of lines).
    plane: usize,
}

thread_local! {
    /// Each thread's planes, kept between calls (as [`LEFT_BUFFER`]).
    static PLANES: std::cell::Cell<SplitPlanes> = std::cell::Cell::new(SplitPlanes::default());
}

impl SplitPlanes {
    /// This thread's planes, sized for `rows` rows of `width` values, rows from `len` on zero
    /// (the caller fills the rest).
    fn take(width: usize, len: usize, rows: usize) -> Self {
        let plane = rows * width;
        let mut planes = PLANES.take();
        if planes.data.0.len() * 32 < PARTS * plane {
            planes.data = Lines::zeros(PARTS * plane);
        }
        planes.width = width;
        planes.plane = plane;
        let data = planes.data.as_mut_slice();
        for p in 0..PARTS {
            data[p * plane + len * width..(p + 1) * plane].fill(0);
        }
        planes
    }

    /// This thread's planes for `rows` rows of `width` values, rows from `len` on zero,
    /// filled from `span`, channel-major (the conv kernels' layout): channel `c`'s `len`
    /// values at `span[c * ld..]`. With `elu`, the values are activated (ELU) on the way, with
    /// the bits of `nn::elu`.
    ///
    /// # Panics
    /// When AMX is not [`available`] or `width` is not a multiple of 32.
    pub(crate) fn take_transposed(
        (span, ld): (&[f32], usize),
        width: usize,
        len: usize,
        rows: usize,
        elu: bool,
    ) -> Self {
        assert!(available() && width.is_multiple_of(KSTEP), "amx: planes");
        assert!(len <= rows && ld >= len, "amx: planes shape");
        assert!(
            width == 0 || span.len() >= (width - 1) * ld + len,
            "amx: planes span"
        );
        let mut planes = Self::take(width, len, rows);
        let plane = planes.plane;
        let data = planes.data.as_mut_slice();
        // SAFETY: AVX-512 F and BW are part of `available` (asserted); `span` holds `width`
        // rows of `len`, `ld` apart, and each plane `rows >= len` rows of `width` (asserted
        // and sized).
        unsafe { platform::split_transposed((span, ld), width, len, elu, data, plane) };
        planes
    }

    /// This thread's planes for `rows` rows of `width` values, rows from `len` on zero, filled
    /// from `data`, time-major: row `t` is `data[t * ld..][..width]`.
    ///
    /// # Panics
    /// When AMX is not [`available`], `width` is not a multiple of 32, or `data` is short.
    pub(crate) fn take_time_major(
        data: &[f32],
        ld: usize,
        width: usize,
        len: usize,
        rows: usize,
    ) -> Self {
        assert!(available() && width.is_multiple_of(KSTEP), "amx: planes");
        assert!(len <= rows && ld >= width, "amx: planes shape");
        assert!(
            len == 0 || data.len() >= (len - 1) * ld + width,
            "amx: planes data"
        );
        let mut planes = Self::take(width, len, rows);
        let plane = planes.plane;
        let out = planes.data.as_mut_slice();
        let (hi, rest) = out.split_at_mut(plane);
        let (mid, lo) = rest.split_at_mut(plane);
        // SAFETY: AVX-512 F and BW are part of `available` (asserted).
        unsafe { platform::split_rows((data, ld), width, len, [hi, mid, lo]) };
        planes
    }

    /// Values per row.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// Give the planes back to this thread for its next call.
    pub(crate) fn release(self) {
        PLANES.set(self);
    }
}

/// What a convolution block [`window_block`] computes: for each of `taps` taps, the window of
/// `steps_per_tap` steps (32 values of `k` each) from plane row `first_row + tap * tap_rows`
/// (output rows `row_step` rows apart) times the right operand's next `steps_per_tap` steps
/// (the taps' steps follow each other from step `first_step`), all summed.
pub(crate) struct WindowPart {
    pub first_row: usize,
    pub row_step: usize,
    pub taps: usize,
    pub tap_rows: usize,
    pub steps_per_tap: usize,
    /// With one tap: the window's (and the right operand's) first step, for a slice of `k`.
    pub first_step: usize,
    /// Add to what `out` holds (the sum of earlier slices), else write over it.
    pub accumulate: bool,
}

/// `out (+)= left x right` for one 32 x 32 block of a convolution: output row `i` (a time
/// step) is the sum over the taps of the window starting at plane row `first_row + i *
/// row_step + tap * tap_rows`, times the tap's steps of column block `cb` of `right`, added
/// to what `out` holds with `part.accumulate`. `out` holds 32 rows of 32, `ld` apart; rows and
/// columns past the operands' ends hold products of padding. A dilated conv's taps run in one
/// call, accumulating in the tiles (their partial sums stored and reloaded between taps cost
/// DAC's dilated units 5-15%).
///
/// # Panics
/// When a window of the 32 rows reaches past the planes, the steps past the right operand, or
/// `out` is too short.
#[inline(always)]
pub(crate) fn window_block(
    planes: &SplitPlanes,
    part: &WindowPart,
    (right, cb): (&AmxRight, usize),
    (out, ld): (&mut [f32], usize),
    _tiles: &Tiles,
) {
    let w = planes.width;
    let (first_row, row_step) = (part.first_row, part.row_step);
    let (taps, per_tap, tap_rows) = (part.taps, part.steps_per_tap, part.tap_rows);
    let first_step = part.first_step;
    assert!(
        taps >= 1
            && per_tap >= 1
            && (taps == 1 || first_step == 0)
            && first_step + taps * per_tap <= right.steps,
        "amx: window steps"
    );
    let reach = first_row + (BLOCK - 1) * row_step + (taps - 1) * tap_rows;
    let last = reach * w + (first_step + per_tap) * KSTEP;
    assert!(
        last <= planes.plane && cb * BLOCK < right.n,
        "amx: window block"
    );
    assert!(
        ld >= BLOCK && out.len() >= (BLOCK - 1) * ld + BLOCK,
        "amx: window output"
    );
    assert!(
        (row_step * w * 2).is_multiple_of(64) && (tap_rows * w * 2).is_multiple_of(64),
        "amx: rows must start on a line"
    );
    let data = planes.data.as_slice();
    let block_operand = right.steps * STEP_LEN;
    let block = &right.data.as_slice()[cb * block_operand..][..block_operand];
    let operands = platform::Windows {
        hi: data[first_row * w + first_step * KSTEP..].as_ptr(),
        plane_bytes: planes.plane * 2,
        row_bytes: row_step * w * 2,
        right: block[first_step * STEP_LEN..].as_ptr(),
        taps,
        steps_per_tap: per_tap,
        // From the end of a tap's window to the start of the next one's.
        tap_jump: (tap_rows * w * 2).wrapping_sub(per_tap * KSTEP * 2),
    };
    // SAFETY: tiles are configured on this thread (`_tiles`); each of the 32 windows of every
    // tap lies inside its plane (asserted; the planes are `plane` values apart), the right
    // operand's block holds the taps' steps (asserted), `out` 32 rows of 32, `ld` apart
    // (asserted).
    unsafe { platform::window_block(&operands, out.as_mut_ptr(), ld, part.accumulate) };
}

/// A time-major block of products (plus another of the same shape) into channel-major
/// rows, with a bias per channel and a channel-major residual.
pub(crate) struct TransposedStore<'a> {
    /// Time-major values and their row length; rows of 16 are read from each offset.
    pub src: (&'a [f32], usize),
    pub extra: Option<(&'a [f32], usize)>,
    /// 16 values (channels past the valid ones read anything).
    pub bias: &'a [f32; TILE],
    /// Channel-major: channel `j`'s steps at `offset + j * stride`.
    pub residual: Option<(&'a [f32], usize, usize)>,
}

impl TransposedStore<'_> {
    /// Rows `row0..row0 + steps` (time), columns `col0..col0 + channels` of the sources to
    /// `dst` at `at + j * ld + i` (channel `j`, step `i`); `steps` and `channels` at most 16.
    ///
    /// # Safety
    /// `dst` has those elements writable and no one else accesses them during the call.
    ///
    /// # Panics
    /// When a read reaches past its slice, or AMX is not [`available`].
    pub(crate) unsafe fn block(
        &self,
        (row0, col0): (usize, usize),
        (steps, channels): (usize, usize),
        (dst, ld): (*mut f32, usize),
    ) {
        assert!(
            available() && steps <= TILE && channels <= TILE,
            "amx: store"
        );
        let rows16 = |(data, ld): (&[f32], usize)| {
            assert!(ld >= TILE && row0 * ld + col0 + (TILE - 1) * ld + TILE <= data.len());
            (data[row0 * ld + col0..].as_ptr(), ld)
        };
        let residual = self.residual.map(|(r, offset, stride)| {
            let last = offset + channels.saturating_sub(1) * stride + steps;
            assert!(channels == 0 || last <= r.len(), "amx: store residual");
            (r[offset..].as_ptr(), stride)
        });
        // SAFETY: AVX-512 F is part of `available`; every read is inside its slice
        // (asserted); the writes are the caller's contract.
        unsafe {
            platform::store_transposed16(
                rows16(self.src),
                self.extra.map(rows16),
                self.bias.as_ptr(),
                residual,
                (dst, ld),
                steps,
                channels,
            )
        };
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod platform {
    use std::arch::asm;

    use super::{BLOCK, STEP_LEN, TILE_LEN};

    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;

    /// CPUID says AMX with bf16 products, and the kernel grants this process the tile state.
    pub(super) fn enable() -> bool {
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let amx_bf16 = leaf7.edx & (1 << 22) != 0;
        let amx_tile = leaf7.edx & (1 << 24) != 0;
        let avx512 =
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw");
        if !(amx_bf16 && amx_tile && avx512) {
            return false;
        }
        // SAFETY: a plain system call with integer arguments.
        let granted = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        granted == 0
    }

    /// Asks for `data` in L2, one request per cache line.
    /// Palette 1 with all eight tiles at 16 rows of 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    /// Tiles configured on this thread until dropped.
    pub(crate) struct Tiles;

    impl Tiles {
        /// # Panics
        /// When AMX is not [`super::available`].
        pub(crate) fn configure() -> Tiles {
            assert!(super::available(), "amx: not available");
            let mut config = TileConfig([0; 64]);
            config.0[0] = 1;
            for t in 0..8 {
                config.0[16 + 2 * t] = 64;
                config.0[48 + t] = 16;
            }
            // SAFETY: AMX was enabled for this process (`available`, asserted by the callers);
            // the configuration is a valid palette-1 layout.
            unsafe { asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack)) };
            Tiles
        }
    }

    impl Drop for Tiles {
        fn drop(&mut self) {
            // SAFETY: tiles are configured on this thread (`configure`).
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }

    /// One block's operands at their first step, and the number of steps.
    pub(super) struct Operands {
        pub left: *const u16,
        pub right: *const u16,
        pub steps: usize,
    }

    const STEP_BYTES: usize = STEP_LEN * 2;

    /// The four tile products of a 2 x 2 block: accumulators tmm0-3 += rows (tmm4, tmm5) x
    /// columns (tmm6, tmm7).
    macro_rules! products_2x2 {
        () => {
            concat!(
                "tdpbf16ps tmm0, tmm4, tmm6\n",
                "tdpbf16ps tmm1, tmm4, tmm7\n",
                "tdpbf16ps tmm2, tmm5, tmm6\n",
                "tdpbf16ps tmm3, tmm5, tmm7",
            )
        };
    }
    const _: () = assert!(STEP_BYTES == 6144 && TILE_LEN * 2 == 1024 && BLOCK == 32);

    /// What a block's accumulators start from.
    #[derive(Clone, Copy)]
    pub(super) enum Init {
        /// A row of 32 floats, every row's.
        Bias(*const f32),
        /// The block's values in `c` (a sum over earlier steps of `k`).
        Accumulate,
    }

    /// `c = init + left x right` for one 32 x 32 block, `c` rows `ldc` floats apart.
    ///
    /// # Safety
    /// Tiles configured on this thread ([`Tiles`]); `steps >= 1` and both operand pointers
    /// have `steps` steps of 6 KiB readable behind them; `bias` 32 readable floats, `c` 32
    /// writable rows of 32.
    pub(super) unsafe fn block(op: &Operands, init: Init, c: *mut f32, ldc: usize) {
        debug_assert!(op.steps >= 1);
        let (i0, i1, init_stride) = match init {
            Init::Bias(bias) => (bias, bias, 0),
            Init::Accumulate => (
                c.cast_const(),
                c.wrapping_add(16 * ldc).cast_const(),
                ldc * 4,
            ),
        };
        // SAFETY: the caller's contract. tmm0-3 accumulate rows 0-15 / 16-31 x columns 0-15 /
        // 16-31, tmm4-5 hold a part of the left operand, tmm6-7 one of the right. Each step
        // goes through the partial products hi*lo, hi*hi, hi*mid, mid*mid, mid*hi, lo*hi
        // (parts at 0, 2 and 4 KiB of a step, each two tiles), changing one operand at a time.
        unsafe {
            asm!(
                // The accumulators start as the bias (every row: a load with stride 0) or as
                // the block's partial sums in `c`.
                "tileloadd tmm0, [{i0} + {is}*1]",
                "tileloadd tmm1, [{i0} + {is}*1 + 64]",
                "tileloadd tmm2, [{i1} + {is}*1]",
                "tileloadd tmm3, [{i1} + {is}*1 + 64]",
                "2:",
                "tileloadd tmm4, [{a} + {s}*1]",
                "tileloadd tmm5, [{a} + {s}*1 + 1024]",
                "tileloadd tmm6, [{b} + {s}*1 + 4096]",
                "tileloadd tmm7, [{b} + {s}*1 + 5120]",
                products_2x2!(),
                "tileloadd tmm6, [{b} + {s}*1]",
                "tileloadd tmm7, [{b} + {s}*1 + 1024]",
                products_2x2!(),
                "tileloadd tmm6, [{b} + {s}*1 + 2048]",
                "tileloadd tmm7, [{b} + {s}*1 + 3072]",
                products_2x2!(),
                "tileloadd tmm4, [{a} + {s}*1 + 2048]",
                "tileloadd tmm5, [{a} + {s}*1 + 3072]",
                products_2x2!(),
                "tileloadd tmm6, [{b} + {s}*1]",
                "tileloadd tmm7, [{b} + {s}*1 + 1024]",
                products_2x2!(),
                "tileloadd tmm4, [{a} + {s}*1 + 4096]",
                "tileloadd tmm5, [{a} + {s}*1 + 5120]",
                products_2x2!(),
                "add {a}, {step}",
                "add {b}, {step}",
                "dec {n}",
                "jnz 2b",
                "tilestored [{c0} + {ldc}*1], tmm0",
                "tilestored [{c0} + {ldc}*1 + 64], tmm1",
                "tilestored [{c1} + {ldc}*1], tmm2",
                "tilestored [{c1} + {ldc}*1 + 64], tmm3",
                i0 = in(reg) i0,
                i1 = in(reg) i1,
                is = in(reg) init_stride,
                a = inout(reg) op.left => _,
                b = inout(reg) op.right => _,
                s = in(reg) 64usize,
                step = const STEP_BYTES,
                n = inout(reg) op.steps => _,
                c0 = in(reg) c,
                c1 = in(reg) c.wrapping_add(16 * ldc),
                ldc = in(reg) ldc * 4,
                options(nostack),
            );
        }
    }

    /// A convolution block's operands: the left operand's high part at the block's first row
    /// (rows `row_bytes` apart, overlapping windows; the middle and low parts `plane_bytes`
    /// and twice that further), the right operand's column block at its first step, and the
    /// taps: `taps` windows of `steps_per_tap` steps, each `tap_jump` bytes past the end of
    /// the one before.
    pub(super) struct Windows {
        pub hi: *const u16,
        pub plane_bytes: usize,
        pub row_bytes: usize,
        pub right: *const u16,
        pub taps: usize,
        pub steps_per_tap: usize,
        pub tap_jump: usize,
    }

    /// `c (+)= left x right` for one 32 x 32 block of windows, summed over the taps, `c` 32
    /// rows of 32, `ldc` apart; added to what `c` holds with `accumulate`.
    ///
    /// # Safety
    /// Tiles configured on this thread ([`Tiles`]); `taps, steps_per_tap >= 1`; each part has
    /// 32 rows of `steps_per_tap * 32` values readable from each tap's start, `row_bytes`
    /// apart; the right pointer has `taps * steps_per_tap` steps of 6 KiB readable; `c` 32
    /// writable rows of 32.
    pub(super) unsafe fn window_block(op: &Windows, c: *mut f32, ldc: usize, accumulate: bool) {
        debug_assert!(op.taps >= 1 && op.steps_per_tap >= 1);
        let half = 16 * op.row_bytes;
        // SAFETY: the caller's contract. As `block`, each step going through the partial
        // products hi*lo, hi*hi, hi*mid, mid*mid, mid*hi, lo*hi. The left operand's six tiles
        // (rows 0-15 and 16-31 of hi, mid, lo) are reached from one pointer (`h`, moved on by
        // 64 bytes, 32 values of `k`, per step) through `t`, so that all 13 free registers
        // hold the loop: the taps' loop around the steps' loop, the accumulators staying in
        // the tiles throughout.
        unsafe {
            asm!(
                // The accumulators start at zero, or with `accumulate` (in `n` until the
                // loop needs it) at the block's values in `c`.
                "test {n}, {n}",
                "jz 4f",
                "tileloadd tmm0, [{c} + {ldc}*1]",
                "tileloadd tmm1, [{c} + {ldc}*1 + 64]",
                "lea {t}, [{c} + {ldc}*8]",
                "lea {t}, [{t} + {ldc}*8]",
                "tileloadd tmm2, [{t} + {ldc}*1]",
                "tileloadd tmm3, [{t} + {ldc}*1 + 64]",
                "jmp 2f",
                "4:",
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "mov {n}, {per_tap}",
                "3:",
                "tileloadd tmm4, [{h} + {ls}*1]",
                "lea {t}, [{h} + {half}]",
                "tileloadd tmm5, [{t} + {ls}*1]",
                "tileloadd tmm6, [{b} + {s}*1 + 4096]",
                "tileloadd tmm7, [{b} + {s}*1 + 5120]",
                products_2x2!(),
                "tileloadd tmm6, [{b} + {s}*1]",
                "tileloadd tmm7, [{b} + {s}*1 + 1024]",
                products_2x2!(),
                "tileloadd tmm6, [{b} + {s}*1 + 2048]",
                "tileloadd tmm7, [{b} + {s}*1 + 3072]",
                products_2x2!(),
                "lea {t}, [{h} + {plane}]",
                "tileloadd tmm4, [{t} + {ls}*1]",
                "add {t}, {half}",
                "tileloadd tmm5, [{t} + {ls}*1]",
                products_2x2!(),
                "tileloadd tmm6, [{b} + {s}*1]",
                "tileloadd tmm7, [{b} + {s}*1 + 1024]",
                products_2x2!(),
                "lea {t}, [{h} + {plane}*2]",
                "tileloadd tmm4, [{t} + {ls}*1]",
                "add {t}, {half}",
                "tileloadd tmm5, [{t} + {ls}*1]",
                products_2x2!(),
                "add {h}, 64",
                "add {b}, {step}",
                "dec {n}",
                "jnz 3b",
                "add {h}, {jump}",
                "dec {taps}",
                "jnz 2b",
                "tilestored [{c} + {ldc}*1], tmm0",
                "tilestored [{c} + {ldc}*1 + 64], tmm1",
                // Rows 16-31: 16 rows of `ldc` bytes further.
                "lea {t}, [{c} + {ldc}*8]",
                "lea {t}, [{t} + {ldc}*8]",
                "tilestored [{t} + {ldc}*1], tmm2",
                "tilestored [{t} + {ldc}*1 + 64], tmm3",
                h = inout(reg) op.hi => _,
                t = out(reg) _,
                half = in(reg) half,
                plane = in(reg) op.plane_bytes,
                ls = in(reg) op.row_bytes,
                b = inout(reg) op.right => _,
                s = in(reg) 64usize,
                step = const STEP_BYTES,
                n = inout(reg) usize::from(accumulate) => _,
                per_tap = in(reg) op.steps_per_tap,
                taps = inout(reg) op.taps => _,
                jump = in(reg) op.tap_jump,
                c = in(reg) c,
                ldc = in(reg) ldc * 4,
                options(nostack),
            );
        }
    }

    use std::arch::x86_64::*;

    /// Three 16-value runs of bf16 parts (as in [`super::split`]) of the 16 values of `v`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn split16(v: __m512) -> [__m256i; 3] {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw")]
        fn nearest(v: __m512) -> (__m512i, __m512) {
            let bits = _mm512_castps_si512(v);
            let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let round = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd);
            let b = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, round));
            (b, _mm512_castsi512_ps(_mm512_slli_epi32::<16>(b)))
        }
        let (hi, hi_f) = nearest(v);
        let rest = _mm512_sub_ps(v, hi_f);
        let (mid, mid_f) = nearest(rest);
        let (lo, _) = nearest(_mm512_sub_ps(rest, mid_f));
        [hi, mid, lo].map(|p| _mm512_cvtepi32_epi16(p))
    }

    /// [`split16`] by the CPU's bf16 conversion (AVX-512 BF16: one instruction per part where
    /// the integer rounding takes five). It reads subnormal inputs as zero, as the tiles read
    /// subnormal bf16 parts, so the products are the same.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    fn split16_bf16(v: __m512) -> [__m256i; 3] {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
        fn nearest(v: __m512) -> (__m256i, __m512) {
            // SAFETY: `__m256bh` and `__m256i` are both 32 bytes of plain bits.
            let b: __m256i = unsafe { std::mem::transmute(_mm512_cvtneps_pbh(v)) };
            let wide = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(b));
            (b, _mm512_castsi512_ps(wide))
        }
        let (hi, hi_f) = nearest(v);
        let rest = _mm512_sub_ps(v, hi_f);
        let (mid, mid_f) = nearest(rest);
        let (lo, _) = nearest(_mm512_sub_ps(rest, mid_f));
        [hi, mid, lo]
    }

    /// Whether the CPU converts f32 to bf16 in one instruction (AVX-512 BF16).
    fn has_bf16_convert() -> bool {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::is_x86_feature_detected!("avx512bf16"))
    }

    /// Channel-major output from a time-major block: for `j < channels` and `i < steps`,
    /// `dst[j * ldd + i] = src[i * lds + j] (+ extra[i * lde + j]) + bias[j] (+ res[j * ldr + i])`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `src` (and `extra`) have 16 readable rows of 16; `bias` 16
    /// readable values; `dst` (and `res`) `channels` rows of `steps` (<= 16) writable (readable).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn store_transposed16(
        (src, lds): (*const f32, usize),
        extra: Option<(*const f32, usize)>,
        bias: *const f32,
        res: Option<(*const f32, usize)>,
        (dst, ldd): (*mut f32, usize),
        steps: usize,
        channels: usize,
    ) {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, row) in r.iter_mut().enumerate() {
            // SAFETY: the caller's contract (16 rows of 16).
            unsafe {
                *row = _mm512_loadu_ps(src.add(i * lds));
                if let Some((e, lde)) = extra {
                    *row = _mm512_add_ps(*row, _mm512_loadu_ps(e.add(i * lde)));
                }
            }
        }
        // SAFETY: 16 readable values.
        let b = unsafe { _mm512_loadu_ps(bias) };
        let mut bias_of = [0f32; 16];
        // SAFETY: a local array of 16.
        unsafe { _mm512_storeu_ps(bias_of.as_mut_ptr(), b) };
        let cols = transpose16_regs(r);
        let mask: __mmask16 = if steps >= 16 {
            0xffff
        } else {
            (1u16 << steps) - 1
        };
        for (j, col) in cols.into_iter().enumerate().take(channels) {
            let mut v = _mm512_add_ps(col, _mm512_set1_ps(bias_of[j]));
            // SAFETY: the caller's contract (`channels` rows of `steps`).
            unsafe {
                if let Some((res, ldr)) = res {
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, res.add(j * ldr)));
                }
                _mm512_mask_storeu_ps(dst.add(j * ldd), mask, v);
            }
        }
    }

    /// Sixteen rows of sixteen values, transposed.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose16_regs(r: [__m512; 16]) -> [__m512; 16] {
        // Pairs of rows interleaved, then pairs of pairs: lane L of u[4i + j] holds column
        // 4L + j of rows 4i..4i+3. The lanes are then transposed as a 4 x 4 matrix.
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (g, j) = (i / 4 * 4, i % 4);
            let (a, b) = (
                _mm512_castps_pd(t[g + j / 2]),
                _mm512_castps_pd(t[g + 2 + j / 2]),
            );
            _mm512_castpd_ps(if j % 2 == 0 {
                _mm512_unpacklo_pd(a, b)
            } else {
                _mm512_unpackhi_pd(a, b)
            })
        });
        let mut out = [_mm512_setzero_ps(); 16];
        for j in 0..4 {
            let v0 = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
            let v1 = _mm512_shuffle_f32x4::<0xdd>(u[j], u[4 + j]);
            let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
            let v3 = _mm512_shuffle_f32x4::<0xdd>(u[8 + j], u[12 + j]);
            out[j] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
            out[4 + j] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
            out[8 + j] = _mm512_shuffle_f32x4::<0xdd>(v0, v2);
            out[12 + j] = _mm512_shuffle_f32x4::<0xdd>(v1, v3);
        }
        out
    }

    /// `len` rows of `width` values of `data`, `ld` apart, split into the planes (rows of
    /// `width`; a multiple of 16).
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW.
    pub(super) unsafe fn split_rows(
        data: (&[f32], usize),
        width: usize,
        len: usize,
        parts: [&mut [u16]; 3],
    ) {
        // SAFETY: the caller's contract, and AVX-512 BF16 where it is used (checked).
        unsafe {
            if has_bf16_convert() {
                split_rows_bf16(data, width, len, parts)
            } else {
                split_rows_int(data, width, len, parts)
            }
        }
    }

    /// `span` (`width` rows of `len`, `ld` apart) transposed to `[len][width]`, activated
    /// (ELU) with `elu`, and split into the three planes of `out`, `plane` values apart.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW; `width` is a multiple of 16; `span` holds `width` rows of
    /// `len`, `ld` apart, and `out` three planes of at least `len * width`.
    pub(super) unsafe fn split_transposed(
        span: (&[f32], usize),
        width: usize,
        len: usize,
        elu: bool,
        out: &mut [u16],
        plane: usize,
    ) {
        // SAFETY: the caller's contract, and AVX-512 BF16 where it is used (checked).
        unsafe {
            if has_bf16_convert() {
                split_transposed_bf16(span, width, len, elu, out, plane)
            } else {
                split_transposed_int(span, width, len, elu, out, plane)
            }
        }
    }

    /// The parts of up to 32 values (zeros past `src`'s end) into the first 32 values of each
    /// of `parts`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW; `src` holds at most 32 values, each part at least 32.
    pub(super) unsafe fn split32(src: &[f32], parts: [&mut [u16]; 3]) {
        // SAFETY: the caller's contract, and AVX-512 BF16 where it is used (checked).
        unsafe {
            if has_bf16_convert() {
                split32_bf16(src, parts)
            } else {
                split32_int(src, parts)
            }
        }
    }

    /// The splitting loops, compiled once for each way of rounding to bf16.
    macro_rules! splitters {
        ($features:literal, $split16:ident, $split32:ident, $rows:ident, $transposed:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $split32(src: &[f32], mut parts: [&mut [u16]; 3]) {
                assert!(src.len() <= 32 && parts.iter().all(|p| p.len() >= 32));
                for half in 0..2 {
                    let n = src.len().saturating_sub(16 * half).min(16);
                    let mask: __mmask16 = ((1u32 << n) - 1) as __mmask16;
                    // SAFETY: the mask limits the read to src[16 * half..][..n], inside `src`;
                    // each part holds 32 values (asserted).
                    unsafe {
                        let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().wrapping_add(16 * half));
                        for (part, p) in $split16(v).into_iter().zip(parts.iter_mut()) {
                            let to = p.as_mut_ptr().add(16 * half);
                            _mm256_storeu_si256(to.cast(), part);
                        }
                    }
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn $rows(
                (data, ld): (&[f32], usize),
                width: usize,
                len: usize,
                [hi, mid, lo]: [&mut [u16]; 3],
            ) {
                assert!(width % 16 == 0 && (len == 0 || data.len() >= (len - 1) * ld + width));
                assert!(hi.len().min(mid.len()).min(lo.len()) >= len * width);
                for t in 0..len {
                    for c0 in (0..width).step_by(16) {
                        let at = t * width + c0;
                        // SAFETY: 16 values of row `t` (asserted), stored inside each plane.
                        unsafe {
                            let v = _mm512_loadu_ps(data.as_ptr().add(t * ld + c0));
                            let [a, b, c] = $split16(v);
                            _mm256_storeu_si256(hi.as_mut_ptr().add(at).cast(), a);
                            _mm256_storeu_si256(mid.as_mut_ptr().add(at).cast(), b);
                            _mm256_storeu_si256(lo.as_mut_ptr().add(at).cast(), c);
                        }
                    }
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn $transposed(
                (span, ld): (&[f32], usize),
                width: usize,
                len: usize,
                elu: bool,
                out: &mut [u16],
                plane: usize,
            ) {
                assert!(width == 0 || span.len() >= (width - 1) * ld + len);
                assert!(out.len() >= 2 * plane + len * width);
                let full = len / 16 * 16;
                let mut block = [0f32; 256];
                for c0 in (0..width).step_by(16) {
                    for t0 in (0..full).step_by(16) {
                        for (i, row) in block.chunks_exact_mut(16).enumerate() {
                            row.copy_from_slice(&span[(c0 + i) * ld + t0..][..16]);
                        }
                        if elu {
                            crate::nn::elu::elu_slice(&mut block);
                        }
                        // SAFETY: 16 rows of 16 in `block`.
                        let r: [__m512; 16] = std::array::from_fn(|i| unsafe {
                            _mm512_loadu_ps(block.as_ptr().add(16 * i))
                        });
                        for (i, row) in transpose16_regs(r).into_iter().enumerate() {
                            let at = (t0 + i) * width + c0;
                            for (p, part) in $split16(row).into_iter().enumerate() {
                                // SAFETY: 16 values at `at` inside plane `p` (asserted above).
                                unsafe {
                                    let to = out.as_mut_ptr().add(p * plane + at);
                                    _mm256_storeu_si256(to.cast(), part)
                                };
                            }
                        }
                    }
                }
                // The last steps one value at a time: the same parts as the vector paths
                // (subnormal parts, which the tiles read as zero, aside).
                for t in full..len {
                    for c in 0..width {
                        let v = span[c * ld + t];
                        let v = if elu { crate::nn::elu::elu_f32(v) } else { v };
                        for (p, part) in super::split(v).into_iter().enumerate() {
                            out[p * plane + t * width + c] = part;
                        }
                    }
                }
            }
        };
    }

    splitters!(
        "avx512f,avx512bw",
        split16,
        split32_int,
        split_rows_int,
        split_transposed_int
    );
    splitters!(
        "avx512f,avx512bw,avx512bf16",
        split16_bf16,
        split32_bf16,
        split_rows_bf16,
        split_transposed_bf16
    );
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod platform {
    pub(super) fn enable() -> bool {
        false
    }

    pub(crate) struct Tiles;

    impl Tiles {
        pub(crate) fn configure() -> Tiles {
            unreachable!("AMX is never available here")
        }
    }

    pub(super) struct Operands {
        pub left: *const u16,
        pub right: *const u16,
        pub steps: usize,
    }

    #[derive(Clone, Copy)]
    pub(super) enum Init {
        Bias(*const f32),
        Accumulate,
    }

    pub(super) unsafe fn block(_: &Operands, _: Init, _: *mut f32, _: usize) {
        unreachable!("AMX is never available here")
    }

    pub(super) struct Windows {
        pub hi: *const u16,
        pub plane_bytes: usize,
        pub row_bytes: usize,
        pub right: *const u16,
        pub taps: usize,
        pub steps_per_tap: usize,
        pub tap_jump: usize,
    }

    pub(super) unsafe fn window_block(_: &Windows, _: *mut f32, _: usize, _: bool) {
        unreachable!("AMX is never available here")
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn store_transposed16(
        _: (*const f32, usize),
        _: Option<(*const f32, usize)>,
        _: *const f32,
        _: Option<(*const f32, usize)>,
        _: (*mut f32, usize),
        _: usize,
        _: usize,
    ) {
        unreachable!("AMX is never available here")
    }

    pub(super) unsafe fn split_rows(_: (&[f32], usize), _: usize, _: usize, _: [&mut [u16]; 3]) {
        unreachable!("AMX is never available here")
    }

    pub(super) unsafe fn split32(_: &[f32], _: [&mut [u16]; 3]) {
        unreachable!("AMX is never available here")
    }

    pub(super) unsafe fn split_transposed(
        _: (&[f32], usize),
        _: usize,
        _: usize,
        _: bool,
        _: &mut [u16],
        _: usize,
    ) {
        unreachable!("AMX is never available here")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_values as values;

    #[test]
    fn the_parts_add_up_to_the_value() {
        for v in values(4096, 7).into_iter().chain([
            0.0,
            -0.0,
            1.0,
            f32::MIN_POSITIVE * 2f32.powi(30),
            3.0e38,
            -1.2345e-20,
        ]) {
            let [hi, mid, lo] = split(v * 1.000_123);
            let v = v * 1.000_123;
            assert_eq!(widen(hi) + widen(mid) + widen(lo), v, "{v}");
        }
    }

    /// The worst case: six partial products per term, each added to an f32 accumulator with
    /// one rounding of at most 2^-24 of the running sum, and the left-out partial products
    /// (at most 2^-23 of each term).
    fn amx_bound(k: usize, scale: f64) -> f64 {
        (6.0 * k as f64 + 4.0) * scale * 2f64.powi(-24)
    }

    #[test]
    fn products_match_f64_to_f32_precision() {
        if !available() {
            eprintln!("AMX not available here: skipped");
            return;
        }
        for (m, n, k, with_bias) in [
            (1, 1, 1, false),
            (32, 32, 32, true),
            (5, 40, 7, true),
            (33, 70, 100, false),
            (250, 96, 512, true),
            (64, 64, 0, true),
            // Several slices of `k` (the last one short), blocks cut by both edges.
            (70, 75, 1100, true),
            (250, 64, 2048, false),
        ] {
            let w = values(n * k, 1);
            let b = values(n, 2);
            let x = values(m * k, 3);
            let rhs = AmxRight::from_transposed(&w, n, k);
            let mut row = vec![0f32; k];
            for j in 0..n {
                rhs.weight_row(j, &mut row);
                assert_eq!(&row[..], &w[j * k..][..k]);
            }
            let mut y = vec![f32::NAN; m * n];
            matmul_bias(&rhs, with_bias.then_some(&b[..]), &x, m, &mut y);
            for i in 0..m {
                for j in 0..n {
                    let mut want = if with_bias { f64::from(b[j]) } else { 0.0 };
                    let mut scale = want.abs();
                    for kk in 0..k {
                        let p = f64::from(x[i * k + kk]) * f64::from(w[j * k + kk]);
                        want += p;
                        scale += p.abs();
                    }
                    let got = f64::from(y[i * n + j]);
                    let bound = amx_bound(k, scale);
                    assert!(
                        (got - want).abs() <= bound,
                        "m {m} n {n} k {k} at ({i}, {j}): {got} vs {want} (bound {bound:e})"
                    );
                }
            }
        }
    }
}
