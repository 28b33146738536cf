//! Self-attention of one layer: GQA, optional q/k norm, partial RoPE, value scaling, sliding
//! window, logit soft-capping and attention sinks.
//!
//! Grouped-query attention is computed without repeating keys: the query heads that share a KV
//! head are laid out as one longer block of rows (`[kv_heads, group * len, dim]`), so a batched
//! matmul against the cached keys serves the whole group. Scores, masks and the softmax are
//! computed in f32 whatever the weight dtype.

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

use crate::config::AttentionConfig;
use crate::kv_cache::{KeyMask, LayerCache};
use crate::norm::RmsNorm;
use crate::rope::RopeTables;

#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    /// Per-head sink logits, f32, shaped `[kv_heads, group, 1, 1]`.
    sinks: Option<Tensor>,
    cfg: AttentionConfig,
}

impl Attention {
    pub fn load(
        vb: VarBuilder,
        cfg: &AttentionConfig,
        hidden: usize,
        eps: f64,
        norm_offset: f64,
    ) -> candle_core::Result<Self> {
        let (h, kv) = (cfg.num_heads, cfg.num_kv_heads);
        let linear = |inp, out, bias, name: &str| {
            if bias {
                candle_nn::linear(inp, out, vb.pp(name))
            } else {
                candle_nn::linear_no_bias(inp, out, vb.pp(name))
            }
        };
        let norm = |name: &str| -> candle_core::Result<Option<RmsNorm>> {
            if cfg.qk_norm {
                RmsNorm::load(vb.pp(name), cfg.head_dim, eps, norm_offset).map(Some)
            } else {
                Ok(None)
            }
        };
        let sinks = if cfg.sinks {
            // The Hub's name, and the one transformers uses in memory.
            let name = if vb.contains_tensor("attention_sink_bias") {
                "attention_sink_bias"
            } else {
                "sinks"
            };
            let s = vb.get_with_hints_dtype(h, name, Default::default(), DType::F32)?;
            Some(s.reshape((kv, h / kv, 1, 1))?)
        } else {
            None
        };
        Ok(Attention {
            q_proj: linear(hidden, h * cfg.head_dim, cfg.qkv_bias, "q_proj")?,
            k_proj: linear(hidden, kv * cfg.head_dim, cfg.qkv_bias, "k_proj")?,
            v_proj: linear(hidden, kv * cfg.v_head_dim, cfg.qkv_bias, "v_proj")?,
            o_proj: linear(h * cfg.v_head_dim, hidden, cfg.o_bias, "o_proj")?,
            q_norm: norm("q_norm")?,
            k_norm: norm("k_norm")?,
            sinks,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &AttentionConfig {
        &self.cfg
    }

    /// `x`: `[len, hidden]` at the positions that `rope` was built for, following what `cache`
    /// holds. Returns `[len, hidden]`.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        cache: &mut LayerCache,
    ) -> tessera_core::Result<Tensor> {
        let c = &self.cfg;
        let len = x.dim(0)?;
        let heads = |t: Tensor, n: usize, d: usize, norm: &Option<RmsNorm>| {
            let t = t.reshape((len, n, d))?;
            let t = match norm {
                Some(norm) => norm.forward(&t)?,
                None => t,
            };
            t.transpose(0, 1)?.contiguous()?.unsqueeze(0)
        };
        let q = heads(
            self.q_proj.forward(x)?,
            c.num_heads,
            c.head_dim,
            &self.q_norm,
        )?;
        let k = heads(
            self.k_proj.forward(x)?,
            c.num_kv_heads,
            c.head_dim,
            &self.k_norm,
        )?;
        let mut v = heads(self.v_proj.forward(x)?, c.num_kv_heads, c.v_head_dim, &None)?;
        if c.value_scale != 1.0 {
            v = v.affine(c.value_scale, 0.0)?;
        }
        let q = rope.apply(&q)?;
        let k = rope.apply(&k)?;
        let cached = cache.append(&k, &v)?;
        let out = self.attend(&q, &cached.k, &cached.v, cached.mask)?;
        // [1, heads, len, v_dim] -> [len, heads * v_dim]
        let out = out
            .squeeze(0)?
            .transpose(0, 1)?
            .reshape((len, c.num_heads * c.v_head_dim))?;
        Ok(self.o_proj.forward(&out)?)
    }

    /// Attention of `q` (`[1, heads, len, d]`) over `k`, `v` (`[1, kv_heads, keys, d]`).
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: KeyMask,
    ) -> candle_core::Result<Tensor> {
        let c = &self.cfg;
        let (_, heads, len, _) = q.dims4()?;
        let kv = c.num_kv_heads;
        let group = heads / kv;
        let keys = k.dim(2)?;
        let q = q.reshape((kv, group * len, c.head_dim))?;
        let k = k.squeeze(0)?;
        let v = v.squeeze(0)?;
        let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
        let mut scores = (scores * c.softmax_scale)?;
        if let Some(cap) = c.logit_softcap {
            scores = ((scores / cap)?.tanh()? * cap)?;
        }
        let mut scores = scores.reshape((kv, group, len, keys))?;
        if let Some(m) = additive_mask(mask, len, keys, q.device())? {
            scores = scores.broadcast_add(&m)?;
        }
        let probs = match &self.sinks {
            None => candle_nn::ops::softmax_last_dim(&scores)?,
            Some(sinks) => softmax_with_sinks(&scores, sinks)?,
        };
        let probs = probs
            .to_dtype(v.dtype())?
            .reshape((kv, group * len, keys))?;
        probs.matmul(&v)?.reshape((1, heads, len, c.v_head_dim))
    }
}

/// Softmax over the last dim with one extra logit per head in the denominator (the sink),
/// which takes probability mass without contributing a value.
fn softmax_with_sinks(scores: &Tensor, sinks: &Tensor) -> candle_core::Result<Tensor> {
    let row_max = scores.max_keepdim(D::Minus1)?;
    let m = row_max.broadcast_maximum(sinks)?;
    let e = scores.broadcast_sub(&m)?.exp()?;
    let sink = sinks.broadcast_sub(&m)?.exp()?;
    let denom = (e.sum_keepdim(D::Minus1)? + sink)?;
    e.broadcast_div(&denom)
}

/// `[len, keys]` of 0 and -inf for a causal (windowed) mask; `None` when every key is visible.
fn additive_mask(
    mask: KeyMask,
    len: usize,
    keys: usize,
    device: &Device,
) -> candle_core::Result<Option<Tensor>> {
    let KeyMask::Causal {
        first_key,
        first_query,
        window,
    } = mask
    else {
        return Ok(None);
    };
    let mut m = vec![0f32; len * keys];
    for i in 0..len {
        let q = first_query + i;
        for j in 0..keys {
            let kp = first_key + j;
            let visible = kp <= q && window.is_none_or(|w| q - kp < w);
            if !visible {
                m[i * keys + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(m, (len, keys), device).map(Some)
}
