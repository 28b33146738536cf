//! Linear maps applied to every frame before and after a codebook (factorised codes).

use super::{rows, validate};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// `y = W x + b` on each frame, from a `Linear` (`[out, in]`) or a kernel-1 `Conv1d`
/// (`[out, in, 1]`) weight: the two are the same map, and checkpoints use both.
///
/// Weight-normalised convolutions must be folded into a plain weight beforehand.
#[derive(Clone, Debug)]
pub struct Projection {
    /// `W` transposed, `[in, out]`, so that rows of frames multiply it directly.
    weight_t: Tensor,
    /// `[out]`.
    bias: Option<Tensor>,
}

impl Projection {
    /// From a weight `[out, in]` or `[out, in, 1]` and an optional bias `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = match *weight.dims() {
            [out_dim, in_dim] => (out_dim, in_dim),
            [out_dim, in_dim, 1] => (out_dim, in_dim),
            _ => {
                return Err(Error::invalid(format!(
                    "projection weight must be [out, in] or [out, in, 1], got {:?}",
                    weight.dims()
                )));
            }
        };
        if out_dim == 0 || in_dim == 0 {
            return Err(Error::invalid(format!(
                "projection weight has an empty dimension: {:?}",
                weight.dims()
            )));
        }
        if !weight.dtype().is_float() {
            return Err(Error::invalid(format!(
                "projection weight must be floating point, got {:?}",
                weight.dtype()
            )));
        }
        if let Some(bias) = &bias {
            if bias.dims() != [out_dim] {
                return Err(Error::invalid(format!(
                    "projection bias must be [{out_dim}] to match a weight of {:?}, got {:?}",
                    weight.dims(),
                    bias.dims()
                )));
            }
            if !bias.device().same_device(weight.device()) {
                return Err(Error::invalid(
                    "projection bias and weight are on different devices",
                ));
            }
        }
        let weight_t = weight.reshape((out_dim, in_dim))?.t()?.contiguous()?;
        let bias = bias.map(|b| b.to_dtype(weight.dtype())).transpose()?;
        Ok(Self { weight_t, bias })
    }

    /// `{name}.weight` and, when present, `{name}.bias` under `vb`; `None` when there is no
    /// `{name}.weight`.
    pub fn load(vb: &VarBuilder, name: &str) -> Result<Option<Self>> {
        let vb = vb.pp(name);
        if !vb.contains_tensor("weight") {
            return Ok(None);
        }
        let weight = vb.get_unchecked("weight")?;
        let bias = if vb.contains_tensor("bias") {
            Some(vb.get_unchecked("bias")?)
        } else {
            None
        };
        Self::new(weight, bias).map(Some)
    }

    /// The pair `{in_name}`/`{out_name}` under `vb`: both or neither must be present.
    pub fn load_pair(
        vb: &VarBuilder,
        in_name: &str,
        out_name: &str,
    ) -> Result<Option<(Self, Self)>> {
        match (Self::load(vb, in_name)?, Self::load(vb, out_name)?) {
            (Some(in_proj), Some(out_proj)) => Ok(Some((in_proj, out_proj))),
            (None, None) => Ok(None),
            _ => Err(Error::invalid(format!(
                "{}: has only one of {in_name}.weight and {out_name}.weight",
                vb.prefix()
            ))),
        }
    }

    pub fn in_dim(&self) -> usize {
        self.weight_t.dims()[0]
    }

    pub fn out_dim(&self) -> usize {
        self.weight_t.dims()[1]
    }

    /// Applies the map to rows `[n, in]`, giving `[n, out]`.
    pub(crate) fn forward_rows(&self, rows: &Tensor) -> Result<Tensor> {
        let rows = rows.to_dtype(self.weight_t.dtype())?;
        let y = rows.matmul(&self.weight_t)?;
        Ok(match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        })
    }

    /// Applies the map to channels-first latents `[batch, in, frames]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, frames) = validate::latents(x, self.in_dim(), self.device(), "projection")?;
        let y = self.forward_rows(&rows::to_rows(x)?)?;
        rows::from_rows(&y, batch, frames)
    }

    pub(crate) fn device(&self) -> &Device {
        self.weight_t.device()
    }

    pub(crate) fn dtype(&self) -> DType {
        self.weight_t.dtype()
    }
}

/// Checks that `in_proj` maps some dimension to `channels` and `out_proj` maps `channels` back to
/// it, all on `device`.
pub(crate) fn check_pair(
    in_proj: &Projection,
    out_proj: &Projection,
    channels: usize,
    device: &Device,
    who: &str,
) -> Result<()> {
    if in_proj.out_dim() != channels || out_proj.in_dim() != channels {
        return Err(Error::invalid(format!(
            "{who}: projections must map to and from {channels} channels: \
             in_proj is {} -> {}, out_proj is {} -> {}",
            in_proj.in_dim(),
            in_proj.out_dim(),
            out_proj.in_dim(),
            out_proj.out_dim()
        )));
    }
    if in_proj.in_dim() != out_proj.out_dim() {
        return Err(Error::invalid(format!(
            "{who}: in_proj takes {} channels but out_proj returns {}: they must be equal",
            in_proj.in_dim(),
            out_proj.out_dim()
        )));
    }
    if !in_proj.device().same_device(device) || !out_proj.device().same_device(device) {
        return Err(Error::invalid(format!(
            "{who}: projections are on another device than the quantizer"
        )));
    }
    Ok(())
}
