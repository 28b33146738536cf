//! `y = x W^T + b` with `W` packed once, at load, into the order the kernel reads it.
//!
//! A transformer's projections multiply a few hundred frames by weights that are far larger
//! than the caches (Mimi: 100 MB per pass), so a general gemm repacks every weight on every
//! call, out of DRAM, before it can start: at 250 frames that packing costs about a quarter of
//! the call. Here the weight is stored as panels of 32 output columns, each panel `[k][32]`
//! contiguous, so a call streams every weight once, front to back, straight into the FMAs. The
//! activations are read in place: a block of up to 12 rows broadcasts one value per row and
//! step, and those rows stay in L1/L2 while the panel streams past.
//!
//! Every output is `bias + sum_k x[k] w[k]` accumulated by fused multiply-adds in the order of
//! `k`, whichever kernel runs (AVX-512, AVX2 + FMA, or the portable loop), so the three give the
//! same bits, and so does any thread count.
//!
//! On CPUs with AMX (Intel Sapphire Rapids and later) the weight is instead split at load into
//! the three bf16 parts of `nn::amx` and the products run on its tiles: as accurate as f32, not
//! the same bits as the FMA kernels (Mimi's eight layers of projections over 250 frames, two
//! threads: 40-43 -> 33-39 ms, alternated). Each output row still depends only on its own input row, so a
//! streaming step and a whole signal give the same bits on one machine.

use rayon::prelude::*;

use super::amx::{self, AmxRight};
use super::isa::Isa as Kernel;

/// Output columns per panel.
const PANEL: usize = 32;

/// Multiply-adds a parallel job should hold at least, so that small calls (a streaming step of
/// one frame) do not pay for more jobs than they have work.
const JOB_WORK: usize = 1 << 18;

/// A linear layer's weight `[out, in]` (and bias) in panels of [`PANEL`] output columns.
#[derive(Debug, Clone)]
pub struct PackedLinear {
    k: usize,
    n: usize,
    weight: Weight,
    bias: Option<Vec<f32>>,
}

/// The form the weight is kept in, for the kernel that reads it.
#[derive(Debug, Clone)]
enum Weight {
    /// `[n.div_ceil(PANEL)][k][PANEL]`, columns past `n` zero, for the FMA kernels.
    Panels(Vec<f32>),
    /// Split for the AMX tiles, where the machine has them.
    Tiles(AmxRight),
}

/// `weight` `[n_out, k_in]` as panels of [`PANEL`] output columns, each `[k_in][PANEL]`.
fn pack_panels(weight: &[f32], n_out: usize, k_in: usize) -> Vec<f32> {
    let n_panels = n_out.div_ceil(PANEL);
    let mut panels = vec![0f32; n_panels * k_in * PANEL];
    for (p, panel) in panels.chunks_exact_mut(k_in * PANEL).enumerate() {
        for j in 0..PANEL.min(n_out - p * PANEL) {
            let row = &weight[(p * PANEL + j) * k_in..][..k_in];
            for (kk, &w) in row.iter().enumerate() {
                panel[kk * PANEL + j] = w;
            }
        }
    }
    panels
}

impl PackedLinear {
    /// From torch's `nn.Linear` layout: `weight` `[n_out, k_in]` row-major, `bias` `[n_out]`.
    ///
    /// # Panics
    /// When the slices do not have those lengths (a bug in the caller: shapes come from the
    /// checked tensors).
    pub fn new(weight: &[f32], n_out: usize, k_in: usize, bias: Option<&[f32]>) -> Self {
        Self::with_kernel(weight, n_out, k_in, bias, amx::available())
    }

    /// [`Self::new`] for the AMX kernel (`amx`, which must be available) or the FMA kernels.
    fn with_kernel(
        weight: &[f32],
        n_out: usize,
        k_in: usize,
        bias: Option<&[f32]>,
        amx: bool,
    ) -> Self {
        assert_eq!(weight.len(), n_out * k_in, "packed linear: weight shape");
        assert!(bias.is_none_or(|b| b.len() == n_out), "packed linear: bias");
        let weight = if amx {
            Weight::Tiles(AmxRight::from_transposed(weight, n_out, k_in))
        } else {
            Weight::Panels(pack_panels(weight, n_out, k_in))
        };
        PackedLinear {
            k: k_in,
            n: n_out,
            weight,
            bias: bias.map(<[f32]>::to_vec),
        }
    }

    pub fn in_features(&self) -> usize {
        self.k
    }

    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Row `j` of the weight as given to [`Self::new`] (`[in]`), into `out`.
    ///
    /// # Panics
    /// When `j` is not an output or `out` is not `in` long.
    pub fn weight_row(&self, j: usize, out: &mut [f32]) {
        assert!(
            j < self.n && out.len() == self.k,
            "packed linear: weight row"
        );
        let panels = match &self.weight {
            Weight::Panels(panels) => panels,
            Weight::Tiles(tiles) => return tiles.weight_row(j, out),
        };
        let panel = &panels[(j / PANEL) * self.k * PANEL..][..self.k * PANEL];
        for (o, &w) in out.iter_mut().zip(panel[j % PANEL..].iter().step_by(PANEL)) {
            *o = w;
        }
    }

    /// `y = x W^T + b` for `m` rows: `x` `[m, in]`, `y` `[m, out]`, both row-major and
    /// contiguous; on rayon's pool.
    ///
    /// # Panics
    /// When `x` or `y` is shorter than `m` rows.
    pub fn forward_into(&self, x: &[f32], m: usize, y: &mut [f32]) {
        assert!(x.len() >= m * self.k, "packed linear: input rows");
        assert!(y.len() >= m * self.n, "packed linear: output rows");
        if m == 0 || self.n == 0 {
            return;
        }
        let panels = match &self.weight {
            Weight::Panels(panels) => panels,
            Weight::Tiles(tiles) => return amx::matmul_bias(tiles, self.bias.as_deref(), x, m, y),
        };
        let n_panels = self.n.div_ceil(PANEL);
        let per_panel = m * self.k * PANEL;
        let per_job = (JOB_WORK / per_panel.max(1)).clamp(1, n_panels);
        let out = OutPtr(y.as_mut_ptr());
        let run = |job: usize| {
            let first = job * per_job;
            // SAFETY: job `job` alone writes the columns of its panels (asserted sizes above).
            unsafe { self.panels_into(panels, first..(first + per_job).min(n_panels), x, m, out) };
        };
        let jobs = n_panels.div_ceil(per_job);
        if jobs == 1 {
            run(0);
        } else {
            (0..jobs).into_par_iter().for_each(run);
        }
    }

    /// [`Self::forward_into`] on the calling thread alone (for callers that already split their
    /// work between threads by rows). The same bits.
    ///
    /// # Panics
    /// When `x` or `y` is shorter than `m` rows.
    pub fn forward_serial_into(&self, x: &[f32], m: usize, y: &mut [f32]) {
        assert!(x.len() >= m * self.k, "packed linear: input rows");
        assert!(y.len() >= m * self.n, "packed linear: output rows");
        if m == 0 || self.n == 0 {
            return;
        }
        match &self.weight {
            Weight::Panels(panels) => {
                let out = OutPtr(y.as_mut_ptr());
                // SAFETY: every panel of `y`, inside it (asserted above), written by this call.
                unsafe { self.panels_into(panels, 0..self.n.div_ceil(PANEL), x, m, out) }
            }
            Weight::Tiles(tiles) => amx::matmul_bias(tiles, self.bias.as_deref(), x, m, y),
        }
    }

    /// Columns of panels `range` of `y = x W^T + b`, all `m` rows.
    ///
    /// # Safety
    /// `x` holds `m` rows and `out` points at `m` rows of `self.n` floats, whose columns of these
    /// panels no one else accesses during the call.
    unsafe fn panels_into(
        &self,
        panels: &[f32],
        range: std::ops::Range<usize>,
        x: &[f32],
        m: usize,
        out: OutPtr,
    ) {
        let kernel = Kernel::detect();
        for p in range {
            let col0 = p * PANEL;
            let cols = PANEL.min(self.n - col0);
            let panel = &panels[p * self.k * PANEL..][..self.k * PANEL];
            let bias = self.bias.as_ref().map(|b| &b[col0..col0 + cols]);
            let mut r0 = 0;
            while r0 < m {
                let rows = kernel.max_rows().min(m - r0);
                let block = Block {
                    x: &x[r0 * self.k..][..rows * self.k],
                    k: self.k,
                    panel,
                    bias,
                    cols,
                };
                // SAFETY: rows r0..r0 + rows, columns col0..col0 + cols of `out` (the caller's
                // contract).
                unsafe {
                    let dst = out.at(r0 * self.n + col0);
                    kernel.run(&block, rows, dst, self.n)
                };
                r0 += rows;
            }
        }
    }

    /// [`Self::forward_into`] into a new `[m, out]` buffer.
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * self.n];
        self.forward_into(x, m, &mut y);
        y
    }
}

/// The output pointer, shared by jobs that write disjoint columns (here and in `amx`).
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut f32);
// SAFETY: jobs write disjoint panels' or blocks' columns (see `forward_into`, `amx::multiply`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// # Safety
    /// `offset` within the buffer.
    pub(super) unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

/// One kernel call: up to `max_rows` rows of `x` against one panel.
struct Block<'a> {
    /// `[rows, k]`.
    x: &'a [f32],
    k: usize,
    /// `[k][PANEL]`.
    panel: &'a [f32],
    bias: Option<&'a [f32]>,
    /// Valid columns of the panel (the rest are padding).
    cols: usize,
}

impl Kernel {
    /// Rows per call: as many accumulators as the registers hold beside the panel's vectors.
    fn max_rows(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => 12,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => 3,
            Kernel::Portable => 4,
        }
    }

    /// # Safety
    /// `dst` must point at `rows` rows of `cols` writable floats, `ldc` apart, that no one else
    /// accesses during the call; `rows <= max_rows()`; `block.x` holds `rows` rows.
    unsafe fn run(self, block: &Block<'_>, rows: usize, dst: *mut f32, ldc: usize) {
        // SAFETY: forwarded; each kernel's features were detected.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 => avx512::block(block, rows, dst, ldc),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 => avx2::block(block, rows, dst, ldc),
                Kernel::Portable => portable(block, rows, dst, ldc),
            }
        }
    }
}

/// The reference order in plain Rust: per output, `mul_add` over `k`, then the bias.
///
/// # Safety
/// As [`Kernel::run`].
unsafe fn portable(block: &Block<'_>, rows: usize, dst: *mut f32, ldc: usize) {
    for r in 0..rows {
        let x = &block.x[r * block.k..][..block.k];
        let mut acc = [0f32; PANEL];
        for (kk, &xv) in x.iter().enumerate() {
            let w = &block.panel[kk * PANEL..][..PANEL];
            for (a, &wv) in acc.iter_mut().zip(w) {
                *a = xv.mul_add(wv, *a);
            }
        }
        for (j, &a) in acc.iter().enumerate().take(block.cols) {
            let v = a + block.bias.map_or(0.0, |b| b[j]);
            // SAFETY: row r, column j < cols of the destination (caller's contract).
            unsafe { *dst.add(r * ldc + j) = v };
        }
    }
}

/// One instruction set's kernel: the panel's 32 columns as `$nv` vectors of `$lanes`, up to
/// `$rows` rows at a time.
macro_rules! packed_kernel {
    ($module:ident, $features:literal, $vec:ty, $lanes:expr, $nv:expr, [$($rows:literal),+],
     $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident, $add:ident) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use std::arch::x86_64::*;

            use super::{Block, PANEL};

            const NV: usize = $nv;
            const LANES: usize = $lanes;
            const _: () = assert!(NV * LANES == PANEL);

            /// # Safety
            /// The module's features; as `Kernel::run`.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn block(b: &Block<'_>, rows: usize, dst: *mut f32, ldc: usize) {
                // SAFETY: forwarded.
                unsafe {
                    match rows {
                        $($rows => rows_of::<$rows>(b, dst, ldc),)+
                        _ => unreachable!("more rows than the kernel takes"),
                    }
                }
            }

            /// `R` rows x the panel, accumulated in registers over all of `k`.
            ///
            /// # Safety
            /// The module's features; `b.x` holds `R` rows; `dst` as `Kernel::run`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn rows_of<const R: usize>(b: &Block<'_>, dst: *mut f32, ldc: usize) {
                let k = b.k;
                assert!(b.x.len() >= R * k && b.panel.len() >= k * PANEL);
                let mut acc: [[$vec; NV]; R] = [[$zero(); NV]; R];
                let xp = b.x.as_ptr();
                let wp = b.panel.as_ptr();
                for kk in 0..k {
                    let mut w: [$vec; NV] = [$zero(); NV];
                    for (v, wv) in w.iter_mut().enumerate() {
                        // SAFETY: kk < k, within the panel (asserted).
                        *wv = unsafe { $load(wp.add(kk * PANEL + v * LANES)) };
                    }
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        // SAFETY: row r < R, column kk < k (asserted).
                        let xv = $set1(unsafe { *xp.add(r * k + kk) });
                        for (a, &wv) in acc_r.iter_mut().zip(&w) {
                            *a = $fma(xv, wv, *a);
                        }
                    }
                }
                let mut bias: [$vec; NV] = [$zero(); NV];
                let mut padded = [0f32; PANEL];
                if let Some(bs) = b.bias {
                    padded[..b.cols].copy_from_slice(&bs[..b.cols]);
                    for (v, bv) in bias.iter_mut().enumerate() {
                        // SAFETY: within `padded`.
                        *bv = unsafe { $load(padded.as_ptr().add(v * LANES)) };
                    }
                }
                for (r, acc_r) in acc.iter().enumerate() {
                    if b.cols == PANEL {
                        for (v, &a) in acc_r.iter().enumerate() {
                            // SAFETY: row r, columns < PANEL = cols (caller's contract).
                            unsafe { $store(dst.add(r * ldc + v * LANES), $add(a, bias[v])) };
                        }
                    } else {
                        let mut tmp = [0f32; PANEL];
                        for (v, &a) in acc_r.iter().enumerate() {
                            // SAFETY: within `tmp`.
                            unsafe { $store(tmp.as_mut_ptr().add(v * LANES), $add(a, bias[v])) };
                        }
                        for (j, &t) in tmp.iter().enumerate().take(b.cols) {
                            // SAFETY: row r, column j < cols (caller's contract).
                            unsafe { *dst.add(r * ldc + j) = t };
                        }
                    }
                }
            }
        }
    };
}

// AVX-512: 12 rows x 2 vectors = 24 accumulators, 2 panel vectors and a broadcast, of 32
// registers. AVX2: 3 rows x 4 vectors = 12 of 16.
packed_kernel!(
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
    _mm512_fmadd_ps,
    _mm512_add_ps
);
packed_kernel!(
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
    _mm256_fmadd_ps,
    _mm256_add_ps
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::test_values as values;

    fn with_kernel(lin: &PackedLinear, x: &[f32], m: usize, kernel: Kernel) -> Vec<f32> {
        let Weight::Panels(panels) = &lin.weight else {
            panic!("the FMA kernels read panels");
        };
        let mut y = vec![f32::NAN; m * lin.n];
        for p in 0..lin.n.div_ceil(PANEL) {
            let col0 = p * PANEL;
            let cols = PANEL.min(lin.n - col0);
            let mut r0 = 0;
            while r0 < m {
                let rows = kernel.max_rows().min(m - r0);
                let block = Block {
                    x: &x[r0 * lin.k..][..rows * lin.k],
                    k: lin.k,
                    panel: &panels[p * lin.k * PANEL..][..lin.k * PANEL],
                    bias: lin.bias.as_ref().map(|b| &b[col0..col0 + cols]),
                    cols,
                };
                // SAFETY: the destination block lies inside `y`, single-threaded.
                unsafe { kernel.run(&block, rows, y.as_mut_ptr().add(r0 * lin.n + col0), lin.n) };
                r0 += rows;
            }
        }
        y
    }

    #[test]
    fn equals_the_definition_and_every_kernel_gives_the_same_bits() {
        for (m, n, k, bias) in [
            (1, 32, 1, false),
            (5, 40, 7, true),
            (12, 64, 64, true),
            (13, 100, 33, false),
            (250, 96, 512, true),
            (3, 5, 3, true),
        ] {
            let w = values(n * k, 1);
            let b = values(n, 2);
            let x = values(m * k, 3);
            let lin = PackedLinear::with_kernel(&w, n, k, bias.then_some(&b[..]), false);
            let y = lin.forward(&x, m);
            let mut row = vec![0f32; k];
            for j in 0..n {
                lin.weight_row(j, &mut row);
                assert_eq!(&row[..], &w[j * k..][..k]);
            }
            for i in 0..m {
                for j in 0..n {
                    let mut want = if bias { f64::from(b[j]) } else { 0.0 };
                    for kk in 0..k {
                        want += f64::from(x[i * k + kk]) * f64::from(w[j * k + kk]);
                    }
                    let got = f64::from(y[i * n + j]);
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "m {m} n {n} k {k} at ({i}, {j}): {got} vs {want}"
                    );
                }
            }
            if amx::available() {
                // The AMX kernel: the same products to within f32 rounding (its own tests
                // bound it against f64), the same weight back.
                let tiled = PackedLinear::with_kernel(&w, n, k, bias.then_some(&b[..]), true);
                for j in 0..n {
                    tiled.weight_row(j, &mut row);
                    assert_eq!(&row[..], &w[j * k..][..k]);
                }
                for (a, f) in tiled.forward(&x, m).iter().zip(&y) {
                    assert!(
                        (a - f).abs() <= 1e-5 * (1.0 + f.abs()),
                        "AMX {a} vs FMA {f}"
                    );
                }
            }
            let mut serial = vec![f32::NAN; m * n];
            lin.forward_serial_into(&x, m, &mut serial);
            assert!(serial == y, "one thread differs (m {m} n {n} k {k})");
            let portable = with_kernel(&lin, &x, m, Kernel::Portable);
            assert!(portable == y, "portable kernel differs (m {m} n {n} k {k})");
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                let narrow = with_kernel(&lin, &x, m, Kernel::Avx2);
                assert!(narrow == y, "AVX2 kernel differs (m {m} n {n} k {k})");
            }
        }
    }

    #[test]
    fn empty_calls_write_nothing() {
        let lin = PackedLinear::new(&values(64, 1), 8, 8, None);
        assert!(lin.forward(&[], 0).is_empty());
        assert_eq!(lin.in_features(), 8);
        assert_eq!(lin.out_features(), 8);
    }
}
