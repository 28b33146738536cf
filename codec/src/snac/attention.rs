//! SNAC's `LocalMHA`: pre-norm multi-head self-attention inside non-overlapping windows of
//! `window` latent frames, with rotary position embeddings restarted in every window, added back
//! to its input. Used by the 32 kHz and 44.1 kHz models after the encoder's last block and
//! before the decoder's first upsampling.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::{LayerNorm, LayerNormConfig, Linear, VarBuilder};

use super::config::ATTN_HEAD_DIM;

#[derive(Debug, Clone)]
pub(crate) struct LocalAttention {
    norm: LayerNorm,
    to_qkv: Linear,
    to_out: Linear,
    heads: usize,
    window: usize,
    /// `cos` and `sin` of the rotary angles, `[window, head_dim]`.
    cos: Tensor,
    sin: Tensor,
}

impl LocalAttention {
    pub fn load(vb: VarBuilder, dim: usize, window: usize) -> candle_core::Result<Self> {
        let norm = candle_nn::layer_norm(
            dim,
            LayerNormConfig {
                eps: 1e-5,
                ..Default::default()
            },
            vb.pp("norm"),
        )?;
        let to_qkv = candle_nn::linear_no_bias(dim, 3 * dim, vb.pp("to_qkv"))?;
        let to_out = candle_nn::linear_no_bias(dim, dim, vb.pp("to_out"))?;
        // The checkpoint stores the rotary frequencies as a buffer; use them as torch does
        // (`load_state_dict` overwrites the computed ones).
        let inv_freq = vb
            .get(ATTN_HEAD_DIM / 2, "rel_pos.inv_freq")?
            .to_dtype(DType::F32)?;
        let t = Tensor::arange(0u32, window as u32, inv_freq.device())?.to_dtype(DType::F32)?;
        let freqs = t.unsqueeze(1)?.broadcast_mul(&inv_freq.unsqueeze(0)?)?;
        let freqs = Tensor::cat(&[&freqs, &freqs], 1)?;
        let dtype = vb.dtype();
        Ok(LocalAttention {
            norm,
            to_qkv,
            to_out,
            heads: dim / ATTN_HEAD_DIM,
            window,
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    /// `[B, C, T]` -> `[B, C, T]`; `T` must be a multiple of the window.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, t) = x.dims3()?;
        if t % self.window != 0 {
            candle_core::bail!(
                "local attention needs a multiple of {} frames, got {t}",
                self.window
            );
        }
        let (w, n, h, d) = (t / self.window, self.window, self.heads, ATTN_HEAD_DIM);
        let xt = self.norm.forward(&x.transpose(1, 2)?.contiguous()?)?;
        let qkv = self.to_qkv.forward(&xt)?;
        // "b (w n) (h d) -> (b h w) n d"
        let split = |i: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(2, i * c, c)?
                .reshape((b, w, n, h, d))?
                .permute((0, 3, 1, 2, 4))?
                .contiguous()?
                .reshape((b * h * w, n, d))
        };
        let q = self.rotate(&split(0)?)?;
        let k = self.rotate(&split(1)?)?;
        let v = split(2)?;
        let scale = 1.0 / (d as f64).sqrt();
        let scores = (q.matmul(&k.transpose(1, 2)?.contiguous()?)? * scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?;
        // "(b h w) n d -> b (w n) (h d)"
        let out = out
            .reshape((b, h, w, n, d))?
            .permute((0, 2, 3, 1, 4))?
            .contiguous()?
            .reshape((b, t, c))?;
        let out = self.to_out.forward(&out)?;
        out.transpose(1, 2)? + x
    }

    /// Rotary embedding with `rotate_half` over the two halves of each head.
    fn rotate(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let half = ATTN_HEAD_DIM / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(&self.cos)? + rotated.broadcast_mul(&self.sin)?
    }
}
