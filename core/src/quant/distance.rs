//! Nearest-codebook-entry search, one matmul per call.
//!
//! The variants of [`Distance`] pick the same entry in exact arithmetic (Cosine on normalised
//! vectors); they differ in floating-point detail, which decides near-ties. Each reproduces one
//! family of reference implementations formula for formula, so that codes match theirs.

use crate::nn::PackedLinear;
use crate::{Error, Result};
use candle_core::{D, DType, Tensor};

/// How a vector quantizer decides which codebook entry is nearest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Distance {
    /// Squared Euclidean distance computed as `(|x|² - 2 x·c) + |c|²` (EnCodec; also the
    /// Euclidean codebook of vector-quantize-pytorch).
    #[default]
    Euclidean,
    /// Euclidean distance as `torch.cdist` computes it for more than 25 vectors (Moshi and Mimi,
    /// in both moshi and transformers): one matmul of `[-2x, |x|², 1]` with `[c, 1, |c|²]`,
    /// clamped at zero and square-rooted. The root can merge squared distances that differ in the
    /// last bit into one value, a tie that the first index wins.
    Cdist,
    /// Cosine similarity: input and codebook are l2-normalised (`v / max(|v|, 1e-12)`), then
    /// compared with the Euclidean form above (DAC and SNAC, after ViT-VQGAN).
    Cosine,
}

/// A codebook prepared for [`Distance`] search: everything that depends only on the codebook is
/// computed once, here.
#[derive(Clone, Debug)]
pub(crate) struct NearestSearch {
    distance: Distance,
    prepared: Prepared,
    /// Euclidean search of an f32 codebook on the CPU, in plain buffers.
    cpu: Option<CpuEuclidean>,
}

/// The codebook packed for [`PackedLinear`] (its rows are the entries) and the entries' squared
/// norms.
#[derive(Clone, Debug)]
struct CpuEuclidean {
    keys: PackedLinear,
    key_norms: Vec<f32>,
}

#[derive(Clone, Debug)]
enum Prepared {
    /// Codebook (normalised for Cosine) transposed, `[dim, K]`, and its squared norms `[1, K]`.
    Squared { keys_t: Tensor, key_norms: Tensor },
    /// `[c, 1, |c|²]` transposed, `[dim + 2, K]`.
    Augmented { keys_t: Tensor },
}

impl NearestSearch {
    /// `codebook` is `[K, dim]`, K >= 1.
    pub(crate) fn new(codebook: &Tensor, distance: Distance) -> Result<Self> {
        let (size, _) = codebook.dims2()?;
        if size == 0 {
            return Err(Error::invalid("codebook has no entries"));
        }
        // Half-precision codebooks are searched in f32: near-ties in bf16 would be arbitrary, and
        // the references compute distances in f32 too.
        let codebook = codebook.to_dtype(search_dtype(codebook.dtype()))?;
        let prepared = match distance {
            Distance::Euclidean => squared(&codebook)?,
            Distance::Cosine => squared(&l2_normalize_rows(&codebook)?)?,
            Distance::Cdist => {
                let ones = Tensor::ones((size, 1), codebook.dtype(), codebook.device())?;
                let norms = codebook.sqr()?.sum_keepdim(1)?;
                let keys = Tensor::cat(&[&codebook, &ones, &norms], 1)?;
                Prepared::Augmented {
                    keys_t: keys.t()?.contiguous()?,
                }
            }
        };
        let cpu = match &prepared {
            Prepared::Squared { key_norms, .. }
                if distance == Distance::Euclidean
                    && codebook.device().is_cpu()
                    && codebook.dtype() == DType::F32 =>
            {
                let (size, dim) = codebook.dims2()?;
                let entries = codebook.flatten_all()?.to_vec1::<f32>()?;
                Some(CpuEuclidean {
                    keys: PackedLinear::new(&entries, size, dim, None),
                    key_norms: key_norms.flatten_all()?.to_vec1::<f32>()?,
                })
            }
            _ => None,
        };
        Ok(Self {
            distance,
            prepared,
            cpu,
        })
    }

    /// Entry `code` of the codebook into `out` (`[dim]`), from the CPU search's copy; false when
    /// there is none or `code` is out of range.
    pub(crate) fn entry_cpu(&self, code: usize, out: &mut [f32]) -> bool {
        match &self.cpu {
            Some(cpu) if code < cpu.keys.out_features() => {
                cpu.keys.weight_row(code, out);
                true
            }
            _ => false,
        }
    }

    /// Whether [`Self::nearest_cpu`] can search.
    pub(crate) fn has_cpu(&self) -> bool {
        self.cpu.is_some()
    }

    /// [`Self::nearest`] of `rows` (`[n, dim]`, row-major) in plain buffers, for a Euclidean
    /// codebook of f32 on the CPU (`None` otherwise): the same formula, `(|x|² - 2 x·c) + |c|²`,
    /// with the products by the packed kernel and `|x|²` over eight lanes. Also writes entry
    /// `code` of each row into `entries` (`[n, dim]`) when given.
    pub(crate) fn nearest_cpu(
        &self,
        rows: &[f32],
        entries: Option<&mut [f32]>,
    ) -> Option<Vec<u32>> {
        let cpu = self.cpu.as_ref()?;
        let dim = cpu.keys.in_features();
        let n = rows.len() / dim;
        let doubled: Vec<f32> = rows.iter().map(|&v| 2.0 * v).collect();
        let row_norms: Vec<f32> = rows.chunks_exact(dim).map(sum_of_squares).collect();
        let kn = &cpu.key_norms;
        let codes = cpu::argmin_row_blocks(
            n,
            kn.len(),
            |r0, m, dots| {
                cpu.keys
                    .forward_serial_into(&doubled[r0 * dim..][..m * dim], m, dots);
            },
            |i, dots, out| {
                let r = row_norms[i];
                for ((o, &x), &c) in out.iter_mut().zip(dots).zip(kn) {
                    *o = (r - x) + c;
                }
            },
        );
        if let Some(entries) = entries {
            for (dst, &code) in entries.chunks_exact_mut(dim).zip(&codes) {
                cpu.keys.weight_row(code as usize, dst);
            }
        }
        Some(codes)
    }

    pub(crate) fn distance(&self) -> Distance {
        self.distance
    }

    /// Index of the nearest entry for each row of `rows` (`[n, dim]`, n >= 1): `[n]`, `u32`.
    pub(crate) fn nearest(&self, rows: &Tensor) -> Result<Tensor> {
        let distances = match &self.prepared {
            Prepared::Squared { keys_t, key_norms } => {
                let rows = rows.to_dtype(keys_t.dtype())?;
                let rows = match self.distance {
                    Distance::Cosine => l2_normalize_rows(&rows)?,
                    _ => rows,
                };
                let row_norms = rows.sqr()?.sum_keepdim(1)?;
                // `(2 * x) @ c` as the references write it; doubling the [n, dim] rows is cheaper
                // than doubling the [n, K] products, and exact either way. The additions then run
                // in their order: (|x|² - 2xc) + |c|².
                let dots = rows.affine(2.0, 0.0)?.matmul(keys_t)?;
                if let Some(codes) = cpu::nearest_squared(&dots, &row_norms, key_norms)? {
                    return Ok(codes);
                }
                row_norms.broadcast_sub(&dots)?.broadcast_add(key_norms)?
            }
            Prepared::Augmented { keys_t } => {
                let rows = rows.to_dtype(keys_t.dtype())?;
                let n = rows.dim(0)?;
                let norms = rows.sqr()?.sum_keepdim(1)?;
                let ones = Tensor::ones((n, 1), rows.dtype(), rows.device())?;
                let augmented = Tensor::cat(&[&rows.affine(-2.0, 0.0)?, &norms, &ones], 1)?;
                let squared = augmented.matmul(keys_t)?;
                if let Some(codes) = cpu::nearest_cdist(&squared)? {
                    return Ok(codes);
                }
                squared.maximum(0.0)?.sqrt()?
            }
        };
        // candle's argmin keeps the first of equal values, like torch's argmin and max.
        Ok(distances.argmin(D::Minus1)?)
    }
}

/// The distance formulas and the argmin in one pass over the `[n, K]` products, on the CPU:
/// candle's broadcast ops and argmin made three more passes over them, each into a fresh
/// tensor (half of an EnCodec quantizer encode). Each element is computed with the same f32
/// operations in the same order as the tensor path, so the codes are the same bits.
mod cpu {
    use candle_core::{DType, Tensor};
    use rayon::prelude::*;

    use crate::Result;
    use crate::nn::with_data;

    /// Rows per parallel job.
    const ROWS_PER_JOB: usize = 16;

    fn on_cpu(t: &Tensor) -> bool {
        t.device().is_cpu() && t.dtype() == DType::F32
    }

    /// Lanes of the argmin: independent running minima that the compiler keeps in vectors.
    const LANES: usize = 16;

    /// The first index of the smallest value (torch's argmin keeps the first of equal values;
    /// 0 when every value is NaN). Each lane keeps the first minimum of its columns, and the
    /// lanes' minima are merged preferring the lower index, which is the slice's first minimum.
    fn argmin_first(d: &[f32]) -> u32 {
        let mut best = [f32::INFINITY; LANES];
        let mut best_j = [u32::MAX; LANES];
        let chunks = d.chunks_exact(LANES);
        let tail = chunks.remainder();
        for (c, chunk) in chunks.enumerate() {
            let base = (c * LANES) as u32;
            for l in 0..LANES {
                let better = chunk[l] < best[l];
                best[l] = if better { chunk[l] } else { best[l] };
                best_j[l] = if better { base + l as u32 } else { best_j[l] };
            }
        }
        let (mut b, mut bj) = (f32::INFINITY, u32::MAX);
        for l in 0..LANES {
            if best[l] < b || (best[l] == b && best_j[l] < bj) {
                b = best[l];
                bj = best_j[l];
            }
        }
        let full = (d.len() - tail.len()) as u32;
        for (j, &x) in tail.iter().enumerate() {
            if x < b {
                b = x;
                bj = full + j as u32;
            }
        }
        if bj == u32::MAX { 0 } else { bj }
    }

    /// `out[i] = argmin_first` of the distances that `fill(r0 + i, row i of values, dist)`
    /// writes, for one block of rows (`values` `[out.len(), k]`); `dist` is working space.
    fn search_block(
        r0: usize,
        values: &[f32],
        k: usize,
        out: &mut [u32],
        dist: &mut Vec<f32>,
        fill: &impl Fn(usize, &[f32], &mut [f32]),
    ) {
        dist.resize(k, 0.0);
        for (i, code) in out.iter_mut().enumerate() {
            fill(r0 + i, &values[i * k..][..k], dist);
            *code = argmin_first(dist);
        }
    }

    /// Per row of `values` (`[n, k]`), `argmin_first` of the distances that `fill` writes for
    /// it (`fill(row, values, out)`), in parallel over blocks of rows.
    pub(super) fn argmin_rows(
        values: &[f32],
        k: usize,
        fill: impl Fn(usize, &[f32], &mut [f32]) + Sync,
    ) -> Vec<u32> {
        let n = values.len() / k;
        let mut codes = vec![0u32; n];
        let job = |dist: &mut Vec<f32>, (block, out): (usize, &mut [u32])| {
            let r0 = block * ROWS_PER_JOB;
            search_block(r0, &values[r0 * k..], k, out, dist, &fill);
        };
        if n * k >= 1 << 16 {
            codes
                .par_chunks_mut(ROWS_PER_JOB)
                .enumerate()
                .for_each_init(Vec::new, job);
        } else {
            let mut dist = Vec::new();
            codes
                .chunks_mut(ROWS_PER_JOB)
                .enumerate()
                .for_each(|b| job(&mut dist, b));
        }
        codes
    }

    /// Rows per block of [`argmin_row_blocks`]: their products against a codebook of 1024-2048
    /// entries (192-384 KB) stay in L2 between the product and the search.
    const ROWS_PER_BLOCK: usize = 48;

    /// [`argmin_rows`] with the values made block by block: `values(r0, m, out)` writes rows
    /// `r0..r0 + m` (`[m, k]`) into `out`, and each block is searched while it is in cache,
    /// blocks shared between rayon's threads. Before, the products of all rows were one
    /// parallel pass into a buffer of 3 MB (EnCodec, 10 s) and the search a second one.
    pub(super) fn argmin_row_blocks(
        n: usize,
        k: usize,
        values: impl Fn(usize, usize, &mut [f32]) + Sync,
        fill: impl Fn(usize, &[f32], &mut [f32]) + Sync,
    ) -> Vec<u32> {
        let mut codes = vec![0u32; n];
        // Each thread's block of values and distances, reused from block to block.
        let job = |(rows, dist): &mut (Vec<f32>, Vec<f32>), (block, out): (usize, &mut [u32])| {
            let (r0, m) = (block * ROWS_PER_BLOCK, out.len());
            rows.resize(m * k, 0.0);
            values(r0, m, &mut rows[..m * k]);
            search_block(r0, rows, k, out, dist, &fill);
        };
        let init = || (Vec::new(), Vec::new());
        if n > ROWS_PER_BLOCK {
            codes
                .par_chunks_mut(ROWS_PER_BLOCK)
                .enumerate()
                .for_each_init(init, job);
        } else {
            let mut scratch = init();
            codes
                .chunks_mut(ROWS_PER_BLOCK)
                .enumerate()
                .for_each(|b| job(&mut scratch, b));
        }
        codes
    }

    fn codes_tensor(codes: Vec<u32>) -> Result<Option<Tensor>> {
        let n = codes.len();
        Ok(Some(Tensor::from_vec(codes, n, &candle_core::Device::Cpu)?))
    }

    /// argmin over j of `(row_norms[i] - dots[i, j]) + key_norms[j]`.
    pub(super) fn nearest_squared(
        dots: &Tensor,
        row_norms: &Tensor,
        key_norms: &Tensor,
    ) -> Result<Option<Tensor>> {
        if ![dots, row_norms, key_norms].into_iter().all(on_cpu) {
            return Ok(None);
        }
        // The norms are small ([n] and [K]); the [n, K] products are read in place.
        let rn = row_norms.flatten_all()?.to_vec1::<f32>()?;
        let kn = key_norms.flatten_all()?.to_vec1::<f32>()?;
        let k = kn.len();
        if k == 0 || dots.elem_count() != rn.len() * k {
            return Ok(None);
        }
        let codes = with_data(&dots.contiguous()?, |d| {
            argmin_rows(d, k, |i, dots, out| {
                let r = rn[i];
                for ((o, &x), &c) in out.iter_mut().zip(dots).zip(&kn) {
                    *o = (r - x) + c;
                }
            })
        })?;
        codes_tensor(codes)
    }

    /// argmin over j of `sqrt(max(squared[i, j], 0))`.
    pub(super) fn nearest_cdist(squared: &Tensor) -> Result<Option<Tensor>> {
        let k = squared.dim(1)?;
        if !on_cpu(squared) || k == 0 {
            return Ok(None);
        }
        let codes = with_data(&squared.contiguous()?, |v| {
            argmin_rows(v, k, |_, sq, out| {
                for (o, &x) in out.iter_mut().zip(sq) {
                    *o = x.max(0.0).sqrt();
                }
            })
        })?;
        codes_tensor(codes)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn argmin_keeps_the_first_minimum() {
            for len in [1, 5, 16, 17, 40, 1024, 1030] {
                let v: Vec<f32> = (0..len).map(|i| ((i * 7) % 13) as f32).collect();
                let want = v
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::INFINITY),
                        |(bj, b), (j, &x)| {
                            if x < b { (j, x) } else { (bj, b) }
                        },
                    )
                    .0;
                assert_eq!(argmin_first(&v) as usize, want, "len {len}");
            }
            // Equal minima in different lanes and in the tail: the lowest index wins.
            let mut v = vec![5f32; 37];
            v[33] = 1.0;
            v[20] = 1.0;
            v[3] = 1.0;
            assert_eq!(argmin_first(&v), 3);
            v[3] = 2.0;
            assert_eq!(argmin_first(&v), 20);
            assert_eq!(argmin_first(&[f32::NAN; 20]), 0);
            assert_eq!(argmin_first(&[f32::NAN, 3.0, f32::NAN]), 1);
        }

        #[test]
        fn blocks_find_what_one_pass_finds() {
            // 131 rows: two whole blocks and a partial one; 37 entries, with repeated values.
            let (n, k) = (131, 37);
            let values: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7919) % 101) as f32 * 0.5)
                .collect();
            let fill = |i: usize, row: &[f32], out: &mut [f32]| {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = v - i as f32;
                }
            };
            let want = argmin_rows(&values, k, fill);
            let got = argmin_row_blocks(
                n,
                k,
                |r0, m, out| out.copy_from_slice(&values[r0 * k..][..m * k]),
                fill,
            );
            assert_eq!(got, want);
        }
    }
}

/// `sum x²` over eight lanes (vectorised; the order differs from a sequential sum by rounding).
fn sum_of_squares(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|v| v * v).sum::<f32>()
}

fn squared(keys: &Tensor) -> Result<Prepared> {
    Ok(Prepared::Squared {
        keys_t: keys.t()?.contiguous()?,
        key_norms: keys.sqr()?.sum_keepdim(1)?.t()?.contiguous()?,
    })
}

/// `torch.nn.functional.normalize(v, dim=1)`: each row divided by `max(|row|, 1e-12)`.
pub(crate) fn l2_normalize_rows(rows: &Tensor) -> Result<Tensor> {
    let norms = rows.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
    Ok(rows.broadcast_div(&norms)?)
}

fn search_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}
