//! SNAC's multi-scale residual vector quantizer.
//!
//! Level k average-pools the residual by `vq_strides[k]`, projects it to `codebook_dim` with a
//! 1x1 conv, picks the nearest codebook entry after L2-normalising both sides (factorised codes,
//! as in ViT-VQGAN / DAC), projects the raw entry back with another 1x1 conv and repeats each
//! frame `stride` times. Coarse levels therefore describe longer spans of time.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use tessera_core::nn::{Conv1d, Conv1dConfig};

use super::config::SnacConfig;

#[derive(Debug, Clone)]
struct VectorQuantize {
    in_proj: Conv1d,
    out_proj: Conv1d,
    /// `[codebook_size, codebook_dim]`, as stored: decoding looks up raw entries.
    codebook: Tensor,
    /// The entries L2-normalised and transposed, `[codebook_dim, codebook_size]`.
    codebook_normed_t: Tensor,
    /// Squared norms of the normalised entries, `[1, codebook_size]`.
    codebook_sq: Tensor,
    stride: usize,
}

/// `F.normalize(x, dim=1)`: rows divided by `max(||row||, 1e-12)`.
fn l2_normalize_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}

impl VectorQuantize {
    fn load(vb: VarBuilder, cfg: &SnacConfig, stride: usize) -> candle_core::Result<Self> {
        let latent = cfg.latent_channels();
        let pw = Conv1dConfig::default();
        let codebook = vb.get((cfg.codebook_size, cfg.codebook_dim), "codebook.weight")?;
        let normed = l2_normalize_rows(&codebook)?;
        Ok(VectorQuantize {
            in_proj: Conv1d::load(vb.pp("in_proj"), latent, cfg.codebook_dim, 1, pw, true)?,
            out_proj: Conv1d::load(vb.pp("out_proj"), cfg.codebook_dim, latent, 1, pw, true)?,
            codebook_sq: normed.sqr()?.sum_keepdim(1)?.t()?.contiguous()?,
            codebook_normed_t: normed.t()?.contiguous()?,
            codebook,
            stride,
        })
    }

    /// Quantise `residual` `[B, C, T]`: returns its reconstruction `[B, C, T]` and codes `[B, T/s]`.
    fn encode(&self, residual: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (b, c, t) = residual.dims3()?;
        let s = self.stride;
        let z = if s > 1 {
            // avg_pool1d(kernel = stride = s); T is a multiple of s by construction. Divide
            // (rather than multiply by 1/s, which `Tensor / f64` does) as torch does.
            let divisor = Tensor::new(s as f32, residual.device())?.to_dtype(residual.dtype())?;
            residual
                .reshape((b, c, t / s, s))?
                .sum(3)?
                .broadcast_div(&divisor)?
        } else {
            residual.clone()
        };
        let z_e = self.in_proj.forward(&z)?;
        let (_, d, frames) = z_e.dims3()?;
        let enc = z_e.transpose(1, 2)?.reshape((b * frames, d))?;
        let enc = l2_normalize_rows(&enc)?;
        // Squared distances in the reference's order: |e|^2 - 2 e.c + |c|^2.
        let dist = enc
            .sqr()?
            .sum_keepdim(1)?
            .broadcast_sub(&(enc.matmul(&self.codebook_normed_t)? * 2.0)?)?
            .broadcast_add(&self.codebook_sq)?;
        let indices = dist.argmin(1)?; // first minimum, as torch's max on -dist
        let z_q = self.lookup(&indices.reshape((b, frames))?)?;
        // The straight-through expression `z_e + (z_q - z_e)` is not exactly z_q in floats;
        // keep it so that the residual of the next level matches the reference.
        let z_q = (&z_e + (z_q - &z_e)?)?;
        let out = self.repeat(&self.out_proj.forward(&z_q)?)?;
        Ok((out, indices.reshape((b, frames))?))
    }

    /// Codebook entries of `codes` `[B, T]` as `[B, D, T]`.
    fn lookup(&self, codes: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = codes.dims2()?;
        self.codebook
            .index_select(&codes.flatten_all()?, 0)?
            .reshape((b, t, ()))?
            .transpose(1, 2)
    }

    /// `repeat_interleave(stride, dim=-1)`.
    fn repeat(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.stride == 1 {
            return Ok(x.clone());
        }
        let (b, c, t) = x.dims3()?;
        x.unsqueeze(3)?
            .broadcast_as((b, c, t, self.stride))?
            .reshape((b, c, t * self.stride))
    }

    fn decode(&self, codes: &Tensor) -> candle_core::Result<Tensor> {
        self.repeat(&self.out_proj.forward(&self.lookup(codes)?)?)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ResidualVq {
    levels: Vec<VectorQuantize>,
}

impl ResidualVq {
    pub fn load(vb: VarBuilder, cfg: &SnacConfig) -> candle_core::Result<Self> {
        let vb = vb.pp("quantizers");
        let levels = cfg
            .vq_strides
            .iter()
            .enumerate()
            .map(|(i, &s)| VectorQuantize::load(vb.pp(i), cfg, s))
            .collect::<candle_core::Result<_>>()?;
        Ok(ResidualVq { levels })
    }

    /// Latent `[B, C, T]` -> codes per level `[B, T / stride_k]` (u32), coarse first.
    pub fn encode(&self, z: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let mut residual = z.clone();
        let mut codes = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            let (z_q, idx) = level.encode(&residual)?;
            residual = (residual - z_q)?;
            codes.push(idx.to_dtype(DType::U32)?);
        }
        Ok(codes)
    }

    /// Codes per level `[B, T_k]` -> the latent `[B, C, T]`; lengths checked by the caller.
    pub fn decode(&self, codes: &[Tensor]) -> candle_core::Result<Tensor> {
        let mut z: Option<Tensor> = None;
        for (level, c) in self.levels.iter().zip(codes) {
            let part = level.decode(c)?;
            z = Some(match z {
                None => part,
                Some(acc) => (acc + part)?,
            });
        }
        z.ok_or_else(|| candle_core::Error::Msg("no quantizer levels".into()))
    }
}
