//! Nearest-codebook-entry search, one matmul per call.
//!
//! The variants of [`Distance`] pick the same entry in exact arithmetic (Cosine on normalised
//! vectors); they differ in floating-point detail, which decides near-ties. Each reproduces one
//! family of reference implementations formula for formula, so that codes match theirs.

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
        Ok(Self { distance, prepared })
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
                row_norms.broadcast_sub(&dots)?.broadcast_add(key_norms)?
            }
            Prepared::Augmented { keys_t } => {
                let rows = rows.to_dtype(keys_t.dtype())?;
                let n = rows.dim(0)?;
                let norms = rows.sqr()?.sum_keepdim(1)?;
                let ones = Tensor::ones((n, 1), rows.dtype(), rows.device())?;
                let augmented = Tensor::cat(&[&rows.affine(-2.0, 0.0)?, &norms, &ones], 1)?;
                augmented.matmul(keys_t)?.maximum(0.0)?.sqrt()?
            }
        };
        // candle's argmin keeps the first of equal values, like torch's argmin and max.
        Ok(distances.argmin(D::Minus1)?)
    }
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
