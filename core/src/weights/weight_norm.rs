//! Folding weight normalisation into a plain weight at load time.
//!
//! Checkpoints trained with `torch.nn.utils.weight_norm` store a magnitude `g` and a direction `v`
//! (`weight_g`/`weight_v`, or `parametrizations.weight.original0/1` for the newer
//! parametrization API). The effective weight is `g * v / ||v||`, the norm taken over every
//! dimension except the one that `g` keeps (dim 0 by default, as in torch).

use candle_core::{DType, Tensor};

/// How a checkpoint spells the two halves of a weight-normed parameter.
pub(crate) const WEIGHT_NORM_SUFFIXES: &[(&str, &str, &str)] = &[
    // (suffix of g, suffix of v, the folded parameter's suffix)
    (".weight_g", ".weight_v", ".weight"),
    (
        ".parametrizations.weight.original0",
        ".parametrizations.weight.original1",
        ".weight",
    ),
];

/// `g * v / ||v||` with the norm over every dim but the one `g` keeps.
pub fn fold_weight_norm(g: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
    let out_dtype = v.dtype();
    // Fold in f32 at least: bf16/f16 checkpoints would lose the norm's precision otherwise.
    let work = if out_dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let (g, v) = (g.to_dtype(work)?, v.to_dtype(work)?);
    let keep = kept_dim(g.dims(), v.dims())?;
    let sq = v.sqr()?;
    let norm = match keep {
        None => sq.sum_all()?.sqrt()?.reshape(vec![1; v.rank()])?,
        Some(d) => {
            let mut acc = sq;
            for axis in (0..v.rank()).rev() {
                if axis != d {
                    acc = acc.sum_keepdim(axis)?;
                }
            }
            acc.sqrt()?
        }
    };
    let g = g.reshape(norm.dims())?;
    v.broadcast_mul(&g.broadcast_div(&norm)?)?
        .to_dtype(out_dtype)
}

/// The dimension `g` keeps, or `None` when `g` is one number (norm over the whole tensor).
fn kept_dim(g: &[usize], v: &[usize]) -> candle_core::Result<Option<usize>> {
    let g_elems: usize = g.iter().product();
    if g_elems == 1 {
        // dim=0 with v.dim(0) == 1 and dim=None give the same fold.
        return Ok(None);
    }
    if g.len() == v.len() {
        let kept: Vec<usize> = (0..g.len()).filter(|&d| g[d] != 1).collect();
        if let [d] = kept[..]
            && g[d] == v[d]
        {
            return Ok(Some(d));
        }
    } else if g.len() == 1 && v.first() == Some(&g[0]) {
        return Ok(Some(0));
    }
    candle_core::bail!(
        "weight-norm magnitude of shape {g:?} does not fit a direction of shape {v:?}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn folds_like_torch_dim0() {
        // v rows [3,4] and [0,5]; g = [10, 2] -> rows scaled to norms 10 and 2.
        let dev = Device::Cpu;
        let v = Tensor::new(&[[[3f32], [4.]], [[0.], [5.]]], &dev).unwrap();
        let g = Tensor::new(&[[[10f32]], [[2.]]], &dev).unwrap();
        let w = fold_weight_norm(&g, &v).unwrap();
        let w: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(w, vec![6., 8., 0., 2.]);
    }

    #[test]
    fn folds_over_the_kept_middle_dim() {
        // g keeps dim 1 (as weight_norm(dim=1) on a transposed conv).
        let dev = Device::Cpu;
        let v = Tensor::new(&[[[3f32], [1.]], [[4.], [0.]]], &dev).unwrap();
        let g = Tensor::new(&[[[1f32], [3.]]], &dev).unwrap();
        let w = fold_weight_norm(&g, &v).unwrap();
        let w: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        let expect = [0.6f32, 3., 0.8, 0.];
        for (a, b) in w.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
    }

    #[test]
    fn scalar_g_normalises_the_whole_tensor() {
        let dev = Device::Cpu;
        let v = Tensor::new(&[[3f32, 4.]], &dev).unwrap();
        let g = Tensor::new(5f32, &dev).unwrap();
        let w: Vec<f32> = fold_weight_norm(&g, &v)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(w, vec![3., 4.]);
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let dev = Device::Cpu;
        let v = Tensor::zeros((4, 2, 3), DType::F32, &dev).unwrap();
        let g = Tensor::zeros((3, 1, 1), DType::F32, &dev).unwrap();
        assert!(fold_weight_norm(&g, &v).is_err());
    }
}
