//! Direct stride-1 convolution for layers with few output channels (AVX2 + FMA).
//!
//! At 16-64 channels over hundreds of thousands of samples (the first and last layers of
//! EnCodec, Mimi, DAC, SNAC) the im2col + gemm path spends more time copying than multiplying:
//! im2col writes `c_in * k` floats per output sample, gemm packs them again, and its 64 x 6
//! micro-tile is mostly empty when the layer has 16 output channels. Here a register block of
//! 4 output channels x 16 samples accumulates straight from the (activated, zero-padded) input
//! rows: every input vector loaded serves 4 channels, every broadcast weight 16 samples, and
//! nothing is copied. One thread reaches about 100 GFLOP/s at 16-32 output channels, where the
//! im2col + gemm path gave 30-60. (A 4 x 24 block spills registers and runs at half that.)

use std::ops::Range;

/// Output channels per register block.
const CO: usize = 4;
/// Samples per vector.
const LANES: usize = 8;
/// Vectors (of [`LANES`] samples) per register block.
const TV: usize = 2;

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
    /// Add to the rows' current values (bias, residual) instead of overwriting them.
    pub accumulate: bool,
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

/// `rows[r][j] (+)= sum_{ci, kx} weight[r][ci * k + kx] * input[ci][j + kx * dilation]` for all
/// rows `r` and columns `j < cols`. Panics (a bug) when a row or the input is too short.
pub(crate) fn conv_rows(rows: &mut [&mut [f32]], cols: usize, tile: &DirectTile<'_>) {
    let ck = tile.c_in * tile.kernel;
    assert!(tile.weight.len() >= rows.len() * ck, "direct conv: weights");
    assert!(rows.iter().all(|r| r.len() >= cols), "direct conv: rows");
    if tile.c_in > 0 && cols > 0 {
        let need = (tile.c_in - 1) * tile.row_stride + tile.reach(cols);
        assert!(tile.input.len() >= need, "direct conv: input");
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        for (b, block) in rows.chunks_mut(CO).enumerate() {
            let w = &tile.weight[b * CO * ck..];
            // SAFETY: AVX2 and FMA are present (checked), and the asserts above bound every
            // access the kernel makes.
            unsafe { avx2::block_rows(block, cols, w, tile) };
        }
        return;
    }
    for (r, row) in rows.iter_mut().enumerate() {
        scalar_columns(row, 0..cols, &tile.weight[r * ck..][..ck], tile);
    }
}

/// The plain loop for columns `cols` of one row (tails and CPUs without AVX2). Fused
/// multiply-adds in the vector kernel's order, so a column gets the same bits whichever path
/// computes it (chunked decoding relies on that: tile edges move with the chunking).
#[inline(always)]
fn scalar_columns(row: &mut [f32], cols: Range<usize>, w: &[f32], tile: &DirectTile<'_>) {
    for j in cols {
        let mut acc = if tile.accumulate { row[j] } else { 0.0 };
        for ci in 0..tile.c_in {
            let x = &tile.input[ci * tile.row_stride + j..];
            for kx in 0..tile.kernel {
                acc = w[ci * tile.kernel + kx].mul_add(x[kx * tile.dilation], acc);
            }
        }
        row[j] = acc;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{CO, DirectTile, LANES, TV, scalar_columns};

    /// Up to [`CO`] rows: full blocks of `TV * LANES` columns, then single vectors, then the
    /// scalar tail.
    ///
    /// # Safety
    /// AVX2 and FMA must be present; `conv_rows`' asserts must hold.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block_rows(
        rows: &mut [&mut [f32]],
        cols: usize,
        w: &[f32],
        tile: &DirectTile<'_>,
    ) {
        let ck = tile.c_in * tile.kernel;
        let mut j = 0;
        // SAFETY (all calls below): columns j..j + width < cols, bounded by the caller.
        unsafe {
            match rows.len() {
                CO => {
                    while j + TV * LANES <= cols {
                        block::<CO, TV>(rows, j, w, tile);
                        j += TV * LANES;
                    }
                    while j + LANES <= cols {
                        block::<CO, 1>(rows, j, w, tile);
                        j += LANES;
                    }
                }
                n => {
                    // 1-3 rows (the last block): one row at a time, with more vectors each.
                    for r in 0..n {
                        let mut jr = j;
                        let row = std::slice::from_mut(&mut rows[r]);
                        let wr = &w[r * ck..];
                        while jr + 4 * TV * LANES <= cols {
                            block::<1, { 4 * TV }>(row, jr, wr, tile);
                            jr += 4 * TV * LANES;
                        }
                        while jr + LANES <= cols {
                            block::<1, 1>(row, jr, wr, tile);
                            jr += LANES;
                        }
                        scalar_columns(row[0], jr..cols, &wr[..ck], tile);
                    }
                    return;
                }
            }
        }
        for (r, row) in rows.iter_mut().enumerate() {
            scalar_columns(row, j..cols, &w[r * ck..][..ck], tile);
        }
    }

    /// `R` rows x `V` vectors of columns starting at `j0`, accumulated in registers.
    ///
    /// # Safety
    /// AVX2 and FMA; rows `0..R` and columns `j0..j0 + V * LANES` in bounds, and the input
    /// columns they read (checked by `conv_rows`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const R: usize, const V: usize>(
        rows: &mut [&mut [f32]],
        j0: usize,
        w: &[f32],
        tile: &DirectTile<'_>,
    ) {
        let ck = tile.c_in * tile.kernel;
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        if tile.accumulate {
            for (acc_r, row) in acc.iter_mut().zip(rows.iter()) {
                for (v, a) in acc_r.iter_mut().enumerate() {
                    // SAFETY: in bounds by the caller's contract.
                    *a = unsafe { _mm256_loadu_ps(row.as_ptr().add(j0 + v * LANES)) };
                }
            }
        }
        let xp = tile.input.as_ptr();
        let wp = w.as_ptr();
        for ci in 0..tile.c_in {
            for kx in 0..tile.kernel {
                let at = ci * tile.row_stride + j0 + kx * tile.dilation;
                let mut xs = [_mm256_setzero_ps(); V];
                for (v, x) in xs.iter_mut().enumerate() {
                    // SAFETY: in bounds by the caller's contract.
                    *x = unsafe { _mm256_loadu_ps(xp.add(at + v * LANES)) };
                }
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    // SAFETY: w holds R rows of ck weights.
                    let wv =
                        unsafe { _mm256_broadcast_ss(&*wp.add(r * ck + ci * tile.kernel + kx)) };
                    for (a, &x) in acc_r.iter_mut().zip(&xs) {
                        *a = _mm256_fmadd_ps(wv, x, *a);
                    }
                }
            }
        }
        for (acc_r, row) in acc.iter().zip(rows.iter_mut()) {
            for (v, &a) in acc_r.iter().enumerate() {
                // SAFETY: in bounds by the caller's contract.
                unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(j0 + v * LANES), a) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn equals_the_definition_for_every_block_shape() {
        for (c_in, kernel, dilation, n_rows, cols, accumulate) in [
            (3, 3, 1, 4, 24, false),
            (5, 7, 2, 6, 61, true),
            (1, 1, 1, 1, 200, false),
            (4, 3, 9, 3, 7, true),
            (2, 4, 1, 9, 57, false),
        ] {
            let stride = cols + dilation * (kernel - 1) + 5;
            let input = values(c_in * stride, 1);
            let weight = values(n_rows * c_in * kernel, 2);
            let start = values(n_rows * cols, 3);
            let mut out = start.clone();
            let mut rows: Vec<&mut [f32]> = out.chunks_mut(cols).collect();
            let tile = DirectTile {
                input: &input,
                row_stride: stride,
                c_in,
                kernel,
                dilation,
                weight: &weight,
                accumulate,
            };
            conv_rows(&mut rows, cols, &tile);
            for r in 0..n_rows {
                for j in 0..cols {
                    let mut want = if accumulate {
                        start[r * cols + j] as f64
                    } else {
                        0.0
                    };
                    for ci in 0..c_in {
                        for kx in 0..kernel {
                            want += weight[(r * c_in + ci) * kernel + kx] as f64
                                * input[ci * stride + j + kx * dilation] as f64;
                        }
                    }
                    let got = out[r * cols + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "c_in {c_in} k {kernel} row {r} col {j}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
