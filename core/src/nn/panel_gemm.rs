//! `C = A B` for a fixed left operand `A` packed once, at load, and a right operand `B` read in
//! place in panels of [`COLS`] columns: the products of minimal filtering (`conv_winograd`).
//!
//! Each Winograd component multiplies its transformed weights (`c_out x c_in`, up to a few
//! MB) by the transformed inputs of one job's tiles (`c_in x tiles`, a hundred or so columns).
//! A general gemm packs both operands on every call; with so few columns, packing the
//! weights again for each job and component cost a third of the products' time. Here the
//! weights are packed at load into blocks of [`ROWS`] rows, `[k][ROWS]`, so that a step of
//! the kernel broadcasts `ROWS` consecutive values, and `B` is written by its producer (the
//! input transform) straight into panels of [`COLS`] columns, so that it is never packed.
//!
//! Every output is `sum_k a[k] b[k]` accumulated by fused multiply-adds in the order of `k`
//! from zero, whichever kernel runs (AVX-512, AVX2 + FMA, or the portable loop), so all of
//! them, and any thread count, give the same bits.

use rayon::prelude::*;

use super::isa::Isa as Kernel;
use super::packed_linear::OutPtr;

/// Rows of `A` per packed block (the AVX-512 kernel's accumulator rows).
const ROWS: usize = 12;

/// Columns of `B` per kernel call. Callers pad `B` and `C` rows to a multiple of it.
pub(crate) const COLS: usize = 32;

/// A left operand `[rows, k]` in blocks of [`ROWS`] rows, each `[k][block rows]`.
#[derive(Debug, Clone)]
pub(crate) struct PackedRows {
    rows: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedRows {
    /// From `a` `[rows, k]`, row-major.
    pub fn new(a: &[f32], rows: usize, k: usize) -> Self {
        assert_eq!(a.len(), rows * k, "panel gemm: left operand shape");
        let mut data = vec![0f32; rows * k];
        for r0 in (0..rows).step_by(ROWS) {
            let h = ROWS.min(rows - r0);
            let block = &mut data[r0 * k..][..h * k];
            for r in 0..h {
                for (kk, &v) in a[(r0 + r) * k..][..k].iter().enumerate() {
                    block[kk * h + r] = v;
                }
            }
        }
        PackedRows { rows, k, data }
    }

    /// The packed block of rows `r0..r0 + h`.
    fn block(&self, r0: usize) -> (&[f32], usize) {
        let h = ROWS.min(self.rows - r0);
        (&self.data[r0 * self.k..][..h * self.k], h)
    }
}

/// `c = a b`, `b` (`k` rows, `cols` columns) in panels of [`COLS`] columns, each `[k][COLS]`
/// contiguous, one after the other (so that the kernel's reads are sequential); `c` `[rows,
/// ldc]`. Columns `0..cols.next_multiple_of(COLS)` are written, those past `cols` hold
/// nothing useful. Row blocks are shared between `threads` threads of rayon's pool.
///
/// # Panics
/// When a buffer is shorter than that, or a padded panel does not fit a row of `c`.
pub(crate) fn multiply(
    a: &PackedRows,
    b: &[f32],
    cols: usize,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
) {
    let padded = cols.next_multiple_of(COLS);
    let k = a.k;
    let (ldb, panel_step) = (COLS, k * COLS);
    assert!(padded <= ldc, "panel gemm: padded output rows");
    if a.rows == 0 || cols == 0 {
        return;
    }
    assert!(b.len() >= padded * k, "panel gemm: right operand");
    assert!(c.len() >= (a.rows - 1) * ldc + padded, "panel gemm: output");
    let kernel = Kernel::detect();
    let out = OutPtr(c.as_mut_ptr());
    let run_block = |r0: usize| {
        let (block, h) = a.block(r0);
        for (p, j0) in (0..padded).step_by(COLS).enumerate() {
            // SAFETY: rows r0..r0 + h, columns j0..j0 + COLS of `c` are inside it (asserted)
            // and written by this block alone; panel p of `b` is inside it (asserted).
            unsafe {
                let b = b.as_ptr().add(p * panel_step);
                kernel.run_panel(block, h, k, b, ldb, out.at(r0 * ldc + j0), ldc)
            };
        }
    };
    let blocks = a.rows.div_ceil(ROWS);
    if threads > 1 && blocks > 1 {
        (0..blocks)
            .into_par_iter()
            .for_each(|i| run_block(i * ROWS));
    } else {
        (0..blocks).for_each(|i| run_block(i * ROWS));
    }
}

impl Kernel {
    /// `h` rows (a packed block, `[k][h]`) x `COLS` columns of `b`.
    ///
    /// # Safety
    /// `b` points at `k` rows of `COLS` readable floats `ldb` apart, `c` at `h` rows of `COLS`
    /// writable floats `ldc` apart that no one else accesses during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_panel(
        self,
        a: &[f32],
        h: usize,
        k: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        debug_assert!(a.len() == h * k && h <= ROWS);
        // SAFETY: forwarded; each kernel's features were detected.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => avx512::block(a, h, h, k, b, ldb, c, ldc),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 => {
                    for r0 in (0..h).step_by(avx2::MAX_ROWS) {
                        let rows = avx2::MAX_ROWS.min(h - r0);
                        let a = a.get(r0..).unwrap_or_default();
                        avx2::block(a, h, rows, k, b, ldb, c.add(r0 * ldc), ldc);
                    }
                }
                Kernel::Portable => portable(a, h, k, b, ldb, c, ldc),
            }
        }
    }
}

/// The reference order in plain Rust: per output, `mul_add` over `k` from zero.
///
/// # Safety
/// As [`Kernel::run_panel`].
unsafe fn portable(
    a: &[f32],
    h: usize,
    k: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    for r in 0..h {
        let mut acc = [0f32; COLS];
        for kk in 0..k {
            let av = a[kk * h + r];
            for (j, s) in acc.iter_mut().enumerate() {
                // SAFETY: row kk < k, column j < COLS of `b` (caller's contract).
                *s = av.mul_add(unsafe { *b.add(kk * ldb + j) }, *s);
            }
        }
        // SAFETY: row r < h, columns < COLS of `c` (caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), c.add(r * ldc), COLS) };
    }
}

/// One instruction set's kernel: `COLS` columns as `$nv` vectors of `$lanes`, up to `$rows`
/// rows of a packed block (`a_stride` values per step) at a time.
macro_rules! panel_kernel {
    ($module:ident, $features:literal, $vec:ty, $lanes:expr, $nv:expr, [$($rows:literal),+],
     $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use std::arch::x86_64::*;

            use super::COLS;

            const NV: usize = $nv;
            const LANES: usize = $lanes;
            const _: () = assert!(NV * LANES == COLS);
            #[allow(dead_code)]
            pub(super) const MAX_ROWS: usize = [$($rows),+].len();

            /// # Safety
            /// The module's features; `rows <= MAX_ROWS`; `a` holds `k` steps of `a_stride`
            /// values, the first `rows` of each used; `b`, `c` as `Kernel::run_panel`.
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $features)]
            pub(super) unsafe fn block(
                a: &[f32],
                a_stride: usize,
                rows: usize,
                k: usize,
                b: *const f32,
                ldb: usize,
                c: *mut f32,
                ldc: usize,
            ) {
                // SAFETY: forwarded.
                unsafe {
                    match rows {
                        $($rows => rows_of::<$rows>(a, a_stride, k, b, ldb, c, ldc),)+
                        _ => unreachable!("more rows than the kernel takes"),
                    }
                }
            }

            /// `R` rows x `COLS` columns, accumulated in registers over all of `k`.
            ///
            /// # Safety
            /// As `block`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn rows_of<const R: usize>(
                a: &[f32],
                a_stride: usize,
                k: usize,
                b: *const f32,
                ldb: usize,
                c: *mut f32,
                ldc: usize,
            ) {
                assert!(k == 0 || a.len() >= (k - 1) * a_stride + R);
                let mut acc: [[$vec; NV]; R] = [[$zero(); NV]; R];
                let ap = a.as_ptr();
                for kk in 0..k {
                    let mut w: [$vec; NV] = [$zero(); NV];
                    for (v, wv) in w.iter_mut().enumerate() {
                        // SAFETY: row kk < k of `b`, columns < COLS (caller's contract).
                        *wv = unsafe { $load(b.add(kk * ldb + v * LANES)) };
                    }
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        // SAFETY: step kk < k, row r < R (asserted).
                        let av = $set1(unsafe { *ap.add(kk * a_stride + r) });
                        for (s, &wv) in acc_r.iter_mut().zip(&w) {
                            *s = $fma(av, wv, *s);
                        }
                    }
                }
                for (r, acc_r) in acc.iter().enumerate() {
                    for (v, &s) in acc_r.iter().enumerate() {
                        // SAFETY: row r < R, columns < COLS of `c` (caller's contract).
                        unsafe { $store(c.add(r * ldc + v * LANES), s) };
                    }
                }
            }
        }
    };
}

// AVX-512: 12 rows x 2 vectors = 24 accumulators, 2 vectors of `b` and a broadcast, of 32
// registers. AVX2: 3 rows x 4 vectors = 12 of 16.
panel_kernel!(
    avx512,
    "avx512f",
    __m512,
    16,
    2,
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps
);
panel_kernel!(
    avx2,
    "avx2,fma",
    __m256,
    8,
    4,
    [1, 2, 3],
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_values as values;

    fn with_kernel(a: &PackedRows, b: &[f32], ldb: usize, cols: usize, kernel: Kernel) -> Vec<f32> {
        let ldc = cols.next_multiple_of(COLS) + 3;
        let mut c = vec![f32::NAN; a.rows * ldc];
        for r0 in (0..a.rows).step_by(ROWS) {
            let (block, h) = a.block(r0);
            for j0 in (0..cols).step_by(COLS) {
                // SAFETY: in bounds as in `multiply`; single-threaded.
                unsafe {
                    kernel.run_panel(
                        block,
                        h,
                        a.k,
                        b.as_ptr().add(j0),
                        ldb,
                        c.as_mut_ptr().add(r0 * ldc + j0),
                        ldc,
                    )
                };
            }
        }
        (0..a.rows)
            .flat_map(|r| c[r * ldc..][..cols].to_vec())
            .collect()
    }

    #[test]
    fn equals_the_definition_and_every_kernel_gives_the_same_bits() {
        let shapes: [(usize, usize, usize); 5] = [
            (1, 1, 1),
            (12, 7, 32),
            (25, 40, 70),
            (64, 130, 33),
            (7, 0, 5),
        ];
        for (rows, k, cols) in shapes {
            let a = values(rows * k, 3);
            let ldb = cols.next_multiple_of(COLS) + 5;
            let b = values(k * ldb, 11);
            let packed = PackedRows::new(&a, rows, k);
            let portable = with_kernel(&packed, &b, ldb, cols, Kernel::Portable);
            for r in 0..rows {
                for j in 0..cols {
                    let want: f64 = (0..k)
                        .map(|kk| f64::from(a[r * k + kk]) * f64::from(b[kk * ldb + j]))
                        .sum();
                    let got = portable[r * cols + j];
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-5 * (k as f64 + 1.0),
                        "{rows}x{k}x{cols} ({r}, {j}): {got} vs {want}"
                    );
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") {
                    let got = with_kernel(&packed, &b, ldb, cols, Kernel::Avx512);
                    assert!(
                        got.iter()
                            .zip(&portable)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "avx512 {rows}x{k}x{cols}"
                    );
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    let got = with_kernel(&packed, &b, ldb, cols, Kernel::Avx2);
                    assert!(
                        got.iter()
                            .zip(&portable)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "avx2 {rows}x{k}x{cols}"
                    );
                }
            }
            // `multiply`, with `b` in panels and on one or two threads, gives the same bits.
            let ldc = cols.next_multiple_of(COLS);
            let panels: Vec<f32> = (0..ldc / COLS)
                .flat_map(|p| (0..k).flat_map(move |kk| (0..COLS).map(move |j| (kk, p * COLS + j))))
                .map(|(kk, j)| b[kk * ldb + j])
                .collect();
            for threads in [1, 2] {
                let mut c = vec![0f32; rows * ldc];
                multiply(&packed, &panels, cols, &mut c, ldc, threads);
                let got: Vec<f32> = (0..rows)
                    .flat_map(|r| c[r * ldc..][..cols].to_vec())
                    .collect();
                assert!(
                    got.iter()
                        .zip(&portable)
                        .all(|(x, y)| x.to_bits() == y.to_bits())
                );
            }
        }
    }
}
