//! Direct stride-1 convolution for layers with few output channels (AVX2 + FMA).
//!
//! At 16-64 channels over hundreds of thousands of samples (the first and last layers of
//! EnCodec, Mimi, DAC, SNAC) the im2col + gemm path spends more time copying than multiplying:
//! im2col writes `c_in * k` floats per output sample, gemm packs them again, and its 64 x 6
//! micro-tile is mostly empty when the layer has 16 output channels. Here a register block of
//! 4 output channels x 16 samples (AVX2) or 8 x 48 (AVX-512) accumulates straight from the
//! (activated, zero-padded) input rows: every input vector loaded serves 4-8 channels, every
//! broadcast weight 16-48 samples, and nothing is copied. One thread reaches 100-110 GFLOP/s
//! at 16-128 output channels (about the FMA peak of one core of the development machine),
//! where the im2col + gemm path gave 30-60 at 16-64 channels; on a Xeon with two 512-bit FMA
//! units per core it is about half that core's peak.

use std::ops::Range;

// (Column windows outermost, so that a window's input stays in L1 across row groups, measured
// no faster: the kernel is bound by the FMA units, not by L2.)

/// Where a tile's sums start, row by row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start<'a> {
    /// From zero.
    Zero,
    /// From the rows' current values (a bias or residual written there before).
    Current,
    /// From `bias[r]` for row `r` of the call.
    Bias(&'a [f32]),
    /// From `base[r * stride + j] + bias[r]` (a residual plus a bias, added in f32 as a caller
    /// writing the rows first would): `(base, stride, bias)`, column `j` of the call at 0.
    Residual(&'a [f32], usize, &'a [f32]),
}

impl Start<'_> {
    /// This start for the rows `r0..` of the call.
    fn rows_from(self, r0: usize) -> Self {
        match self {
            Start::Bias(b) => Start::Bias(&b[r0..]),
            Start::Residual(base, stride, b) => {
                Start::Residual(&base[r0 * stride..], stride, &b[r0..])
            }
            other => other,
        }
    }
}

/// The rows of one output tile and what they read.
pub(crate) struct DirectTile<'a> {
    /// `[c_in, ..]` input rows, row `ci` starting at `ci * row_stride`; output column `j` reads
    /// column `j + kx * dilation` of each row (so the rows already include any padding).
    pub input: &'a [f32],
    pub row_stride: usize,
    pub c_in: usize,
    pub kernel: usize,
    pub dilation: usize,
    /// `[rows, c_in * kernel]`, the weights of the tile's output rows.
    pub weight: &'a [f32],
    /// What the sums start from. Except from [`Start::Current`] the rows are only written, so
    /// a caller need not initialise them: writing an output tile's rows first (a bias) and
    /// then the sums cost a pass of stores that waited on memory for every line (12% of
    /// EnCodec's 32-channel residual unit).
    pub start: Start<'a>,
}

impl DirectTile<'_> {
    /// Input columns output column `cols - 1` reads up to (exclusive).
    fn reach(&self, cols: usize) -> usize {
        cols + self.dilation * (self.kernel - 1)
    }
}

/// Whether [`conv_rows`] has a fast kernel on this CPU (else the caller keeps its gemm path).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The kernel's register block on this CPU as (output rows, columns): 8 x 48 with AVX-512, 4 x
/// 16 with AVX2, 1 x 16 for the portable loop.
fn register_block() -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        return if std::is_x86_feature_detected!("avx512f") {
            (avx512::CO, avx512::COLUMNS)
        } else {
            (avx2::CO, avx2::COLUMNS)
        };
    }
    (1, 16)
}

/// Columns of the kernel's full register block on this CPU. Callers size their tiles in
/// multiples of it: the columns left over after the last full block run one vector at a time,
/// which is load-bound and about half as fast (a 256-column tile left 16 of every 256 columns
/// there).
pub(crate) fn column_block() -> usize {
    register_block().1
}

/// Output rows of the kernel's register block on this CPU: callers that split the rows between
/// jobs split them in multiples of it.
pub(crate) fn row_block() -> usize {
    register_block().0
}

/// `tile` rounded down to whole [`column_block`]s (at least one).
pub(crate) fn whole_blocks(tile: usize) -> usize {
    let block = column_block();
    (tile / block).max(1) * block
}

/// `rows[r][j] = start[r][j] + sum_{ci, kx} weight[r][ci * k + kx] * input[ci][j + kx *
/// dilation]` for all rows `r` and columns `j < cols`. Panics (a bug) when a row or the input
/// is too short.
pub(crate) fn conv_rows(rows: &mut [&mut [f32]], cols: usize, tile: &DirectTile<'_>) {
    assert!(rows.iter().all(|r| r.len() >= cols), "direct conv: rows");
    let ptrs: Vec<*mut f32> = rows.iter_mut().map(|r| r.as_mut_ptr()).collect();
    // SAFETY: the rows are distinct mutable slices of at least `cols` initialised elements.
    unsafe { conv_rows_raw(&ptrs, cols, tile) }
}

/// [`conv_rows`] over rows given as pointers, which may point at uninitialised memory unless
/// `tile.start` is [`Start::Current`] (every element `0..cols` of every row is written).
///
/// # Safety
/// Each pointer must be valid for writes (and, from [`Start::Current`], reads) of `cols`
/// floats, the rows must not overlap, and no other thread may access them during the call.
pub(crate) unsafe fn conv_rows_raw(rows: &[*mut f32], cols: usize, tile: &DirectTile<'_>) {
    let ck = tile.c_in * tile.kernel;
    assert!(tile.weight.len() >= rows.len() * ck, "direct conv: weights");
    if tile.c_in > 0 && cols > 0 {
        let need = (tile.c_in - 1) * tile.row_stride + tile.reach(cols);
        assert!(tile.input.len() >= need, "direct conv: input");
    }
    match tile.start {
        Start::Bias(b) => assert!(b.len() >= rows.len(), "direct conv: bias"),
        Start::Residual(base, stride, b) => {
            assert!(b.len() >= rows.len(), "direct conv: bias");
            if !rows.is_empty() && cols > 0 {
                assert!(
                    base.len() >= (rows.len() - 1) * stride + cols,
                    "direct conv: residual"
                );
            }
        }
        Start::Zero | Start::Current => {}
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        let wide = std::is_x86_feature_detected!("avx512f");
        let co = row_block();
        for (b, block) in rows.chunks(co).enumerate() {
            let w = &tile.weight[b * co * ck..];
            let start = tile.start.rows_from(b * co);
            // SAFETY: the kernel's features are present (checked), the asserts above bound
            // every access it makes to the input and weights, and the caller vouches for the
            // rows.
            unsafe {
                if wide {
                    avx512::block_rows(block, cols, w, tile, start)
                } else {
                    avx2::block_rows(block, cols, w, tile, start)
                }
            };
        }
        return;
    }
    for (r, &row) in rows.iter().enumerate() {
        // SAFETY: as the caller vouches.
        unsafe {
            scalar_columns(
                row,
                0..cols,
                &tile.weight[r * ck..][..ck],
                tile,
                tile.start.rows_from(r),
            )
        };
    }
}

/// The plain loop for columns `cols` of one row (tails and CPUs without AVX2), starting from
/// row 0 of `start`. Fused multiply-adds in the vector kernel's order, so a column gets the
/// same bits whichever path computes it (chunked decoding relies on that: tile edges move with
/// the chunking).
///
/// # Safety
/// `row` valid for writes (and reads from [`Start::Current`]) of the columns.
#[inline(always)]
unsafe fn scalar_columns(
    row: *mut f32,
    cols: Range<usize>,
    w: &[f32],
    tile: &DirectTile<'_>,
    start: Start<'_>,
) {
    for j in cols {
        let mut acc = match start {
            Start::Zero => 0.0,
            // SAFETY: by the caller's contract.
            Start::Current => unsafe { *row.add(j) },
            Start::Bias(b) => b[0],
            Start::Residual(base, _, b) => base[j] + b[0],
        };
        for ci in 0..tile.c_in {
            let x = &tile.input[ci * tile.row_stride + j..];
            for kx in 0..tile.kernel {
                acc = w[ci * tile.kernel + kx].mul_add(x[kx * tile.dilation], acc);
            }
        }
        // SAFETY: by the caller's contract.
        unsafe { row.add(j).write(acc) };
    }
}

/// One instruction set's kernel: `$lanes`-wide vectors, blocks of [`CO`] rows x `$tv` vectors.
macro_rules! direct_kernel {
    ($module:ident, $features:literal, $vec:ty, $lanes:expr, $co:expr, $tv:expr,
     $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident, $add:ident) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use std::arch::x86_64::*;

            use super::{DirectTile, Start, scalar_columns};

            pub(super) const CO: usize = $co;
            const LANES: usize = $lanes;
            const TV: usize = $tv;
            pub(super) const COLUMNS: usize = TV * LANES;

            /// Up to [`CO`] rows: full blocks of `TV * LANES` columns, then single vectors,
            /// then the scalar tail.
            ///
            /// # Safety
            /// The CPU must have the module's features; `conv_rows_raw`'s asserts and contract
            /// must hold.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn block_rows(
                rows: &[*mut f32],
                cols: usize,
                w: &[f32],
                tile: &DirectTile<'_>,
                start: Start<'_>,
            ) {
                let ck = tile.c_in * tile.kernel;
                // SAFETY (all blocks below): their columns lie below `cols`, bounded by the
                // caller.
                unsafe {
                    if rows.len() == CO {
                        let mut j = 0;
                        while j + TV * LANES <= cols {
                            block::<CO, TV>(rows, j, w, tile, start);
                            j += TV * LANES;
                        }
                        while j + LANES <= cols {
                            block::<CO, 1>(rows, j, w, tile, start);
                            j += LANES;
                        }
                        for (r, &row) in rows.iter().enumerate() {
                            scalar_columns(
                                row,
                                j..cols,
                                &w[r * ck..][..ck],
                                tile,
                                start.rows_from(r),
                            );
                        }
                        return;
                    }
                    // Fewer than CO rows (the last block): one row at a time, with more vectors
                    // each.
                    for r in 0..rows.len() {
                        let mut j = 0;
                        let row = &rows[r..=r];
                        let wr = &w[r * ck..];
                        let sr = start.rows_from(r);
                        // Several accumulators hide the FMA latency: one alone would wait on
                        // itself at every step.
                        while j + 4 * TV * LANES <= cols {
                            block::<1, { 4 * TV }>(row, j, wr, tile, sr);
                            j += 4 * TV * LANES;
                        }
                        while j + TV * LANES <= cols {
                            block::<1, TV>(row, j, wr, tile, sr);
                            j += TV * LANES;
                        }
                        while j + LANES <= cols {
                            block::<1, 1>(row, j, wr, tile, sr);
                            j += LANES;
                        }
                        scalar_columns(row[0], j..cols, &wr[..ck], tile, sr);
                    }
                }
            }

            /// `R` rows x `V` vectors of columns from `j0`, accumulated in registers.
            ///
            /// # Safety
            /// The module's features; rows `0..R` and columns `j0..j0 + V * LANES` in bounds,
            /// and the input columns they read (checked by `conv_rows_raw`).
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn block<const R: usize, const V: usize>(
                rows: &[*mut f32],
                j0: usize,
                w: &[f32],
                tile: &DirectTile<'_>,
                start: Start<'_>,
            ) {
                let ck = tile.c_in * tile.kernel;
                let mut acc: [[$vec; V]; R] = [[$zero(); V]; R];
                match start {
                    Start::Zero => {}
                    Start::Current => {
                        for (acc_r, &row) in acc.iter_mut().zip(rows) {
                            for (v, a) in acc_r.iter_mut().enumerate() {
                                // SAFETY: in bounds by the caller's contract.
                                *a = unsafe { $load(row.add(j0 + v * LANES)) };
                            }
                        }
                    }
                    // Fixed trip counts (`R`, `V`): a loop bounded by a slice's length would
                    // index the accumulators at run time and keep them in memory.
                    Start::Bias(b) => {
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            *acc_r = [$set1(b[r]); V];
                        }
                    }
                    Start::Residual(base, stride, b) => {
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            let bv = $set1(b[r]);
                            for (v, a) in acc_r.iter_mut().enumerate() {
                                let at = r * stride + j0 + v * LANES;
                                // SAFETY: in bounds: `conv_rows_raw` asserted that the
                                // residual covers every row and column of the call.
                                *a = $add(unsafe { $load(base.as_ptr().add(at)) }, bv);
                            }
                        }
                    }
                }
                let xp = tile.input.as_ptr();
                let wp = w.as_ptr();
                for ci in 0..tile.c_in {
                    for kx in 0..tile.kernel {
                        let at = ci * tile.row_stride + j0 + kx * tile.dilation;
                        let mut xs: [$vec; V] = [$zero(); V];
                        for (v, x) in xs.iter_mut().enumerate() {
                            // SAFETY: in bounds by the caller's contract.
                            *x = unsafe { $load(xp.add(at + v * LANES)) };
                        }
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            // SAFETY: w holds R rows of ck weights.
                            let wv = $set1(unsafe { *wp.add(r * ck + ci * tile.kernel + kx) });
                            for (a, &x) in acc_r.iter_mut().zip(&xs) {
                                *a = $fma(wv, x, *a);
                            }
                        }
                    }
                }
                for (acc_r, &row) in acc.iter().zip(rows) {
                    for (v, &a) in acc_r.iter().enumerate() {
                        // SAFETY: in bounds by the caller's contract.
                        unsafe { $store(row.add(j0 + v * LANES), a) };
                    }
                }
            }
        }
    };
}

// Blocks of 4 rows x 2 vectors keep AVX2's 16 registers free of spills (4 x 3 spilled and ran
// at half the speed). AVX-512's 32 registers take 8 x 3: 11 loads per 24 FMAs instead of 8 per
// 16; on a Xeon (two 512-bit FMA units) Mimi ran 2-5% faster than with 4 x 4, and 6 x 4, 4 x 6
// and 12 x 2 were no better in isolation (all near 100 GFLOP/s on one core, half its peak).
direct_kernel!(
    avx2,
    "avx2,fma",
    __m256,
    8,
    4,
    2,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps
);
direct_kernel!(
    avx512,
    "avx512f",
    __m512,
    16,
    8,
    3,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_values as values;

    /// What each start mode adds to row `r`, column `j` (the rows' values before the call are
    /// `before`).
    fn start_value(start: &Start, before: &[f32], cols: usize, r: usize, j: usize) -> f32 {
        match *start {
            Start::Zero => 0.0,
            Start::Current => before[r * cols + j],
            Start::Bias(b) => b[r],
            Start::Residual(base, stride, b) => base[r * stride + j] + b[r],
        }
    }

    #[test]
    fn equals_the_definition_for_every_block_shape_and_start() {
        for (c_in, kernel, dilation, n_rows, cols) in [
            (3, 3, 1, 4, 24),
            (5, 7, 2, 6, 61),
            (1, 1, 1, 1, 200),
            (4, 3, 9, 3, 7),
            (2, 4, 1, 9, 57),
            (3, 3, 2, 5, 700),
            (3, 3, 1, 16, 100),
            (2, 5, 3, 13, 150),
        ] {
            let stride = cols + dilation * (kernel - 1) + 5;
            let input = values(c_in * stride, 1);
            let weight = values(n_rows * c_in * kernel, 2);
            let before = values(n_rows * cols, 3);
            let bias = values(n_rows, 4);
            let base_stride = cols + 3;
            let base = values(n_rows * base_stride, 5);
            for start in [
                Start::Zero,
                Start::Current,
                Start::Bias(&bias),
                Start::Residual(&base, base_stride, &bias),
            ] {
                let tile = DirectTile {
                    input: &input,
                    row_stride: stride,
                    c_in,
                    kernel,
                    dilation,
                    weight: &weight,
                    start,
                };
                let mut out = before.clone();
                let mut rows: Vec<&mut [f32]> = out.chunks_mut(cols).collect();
                conv_rows(&mut rows, cols, &tile);
                drop(rows);
                #[cfg(target_arch = "x86_64")]
                if available() {
                    // The AVX2 kernel gives the same bits as whichever kernel ran above.
                    let mut narrow = before.clone();
                    let ptrs: Vec<*mut f32> =
                        narrow.chunks_mut(cols).map(|r| r.as_mut_ptr()).collect();
                    let ck = c_in * kernel;
                    for (b, block) in ptrs.chunks(avx2::CO).enumerate() {
                        let w = &weight[b * avx2::CO * ck..];
                        // SAFETY: AVX2 and FMA present; shapes as conv_rows checked them, and
                        // the rows are distinct rows of `narrow`.
                        unsafe {
                            avx2::block_rows(block, cols, w, &tile, start.rows_from(b * avx2::CO))
                        };
                    }
                    assert!(
                        narrow == out,
                        "AVX2 and the dispatched kernel differ ({start:?})"
                    );
                }
                for r in 0..n_rows {
                    for j in 0..cols {
                        let mut want = start_value(&start, &before, cols, r, j) as f64;
                        for ci in 0..c_in {
                            for kx in 0..kernel {
                                want += weight[(r * c_in + ci) * kernel + kx] as f64
                                    * input[ci * stride + j + kx * dilation] as f64;
                            }
                        }
                        let got = out[r * cols + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "c_in {c_in} k {kernel} row {r} col {j} {start:?}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// Starting from a bias (or a residual plus a bias) gives the bits of writing those into the
    /// rows first and accumulating onto them, which is what the callers did before.
    #[test]
    fn bias_and_residual_starts_equal_writing_the_rows_first() {
        let (c_in, kernel, n_rows, cols) = (6, 3, 11, 203);
        let stride = cols + kernel - 1;
        let input = values(c_in * stride, 6);
        let weight = values(n_rows * c_in * kernel, 7);
        let bias = values(n_rows, 8);
        let base = values(n_rows * cols, 9);
        let run = |start: Start, before: Vec<f32>| {
            let tile = DirectTile {
                input: &input,
                row_stride: stride,
                c_in,
                kernel,
                dilation: 1,
                weight: &weight,
                start,
            };
            let mut out = before;
            let mut rows: Vec<&mut [f32]> = out.chunks_mut(cols).collect();
            conv_rows(&mut rows, cols, &tile);
            drop(rows);
            out
        };
        let written: Vec<f32> = (0..n_rows * cols).map(|i| bias[i / cols]).collect();
        let garbage = vec![f32::NAN; n_rows * cols];
        assert_eq!(
            run(Start::Bias(&bias), garbage.clone()),
            run(Start::Current, written)
        );
        let written: Vec<f32> = (0..n_rows * cols)
            .map(|i| base[i] + bias[i / cols])
            .collect();
        let got = run(Start::Residual(&base, cols, &bias), garbage);
        let want = run(Start::Current, written);
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}
