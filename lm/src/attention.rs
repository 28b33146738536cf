//! Self-attention of one layer: GQA, optional q/k norm, partial RoPE, value scaling, sliding
//! window, logit soft-capping and attention sinks.
//!
//! Grouped-query attention is computed without repeating keys: the query heads that share a KV
//! head are laid out as one longer block of rows (`[kv_heads, group * len, dim]`), so a batched
//! matmul against the cached keys serves the whole group. Scores, masks and the softmax are
//! computed in f32 whatever the weight dtype.

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::config::AttentionConfig;
use crate::kernels::attention::FusedAttention;
use crate::kernels::rope::RopeHeads;
use crate::kv_cache::{KeyMask, LayerCache};
use crate::linear::Linear;
use crate::norm::RmsNorm;
use crate::rope::RopeTables;

#[derive(Debug, Clone)]
pub struct Attention {
    /// q, k and v projections as one matrix (rows: q, then k, then v): one gemm per call.
    qkv_proj: Linear,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    /// Per-head sink logits, f32, shaped `[kv_heads, group, 1, 1]`.
    sinks: Option<Tensor>,
    /// The same, one per query head, for the CPU kernel.
    sink_values: Option<Vec<f32>>,
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
        let linear = |inp, out, bias, name: &str| crate::linear::load(inp, out, bias, vb.pp(name));
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
        let sink_values = match &sinks {
            Some(s) => Some(s.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        let parts = [
            linear(hidden, h * cfg.head_dim, cfg.qkv_bias, "q_proj")?,
            linear(hidden, kv * cfg.head_dim, cfg.qkv_bias, "k_proj")?,
            linear(hidden, kv * cfg.v_head_dim, cfg.qkv_bias, "v_proj")?,
        ];
        Ok(Attention {
            qkv_proj: Linear::concat(&parts)?,
            o_proj: linear(h * cfg.v_head_dim, hidden, cfg.o_bias, "o_proj")?,
            q_norm: norm("q_norm")?,
            k_norm: norm("k_norm")?,
            sinks,
            sink_values,
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
        let qkv = self.qkv_proj.forward(x)?;
        let out = if x.dtype() == DType::F32 && x.device().is_cpu() {
            self.forward_f32_cpu(&qkv, rope, cache)?
        } else {
            self.forward_generic(&qkv, rope, cache)?
        };
        Ok(self.o_proj.forward(&out)?)
    }

    /// The CPU kernels: heads rotated straight out of the projection, fused attention.
    fn forward_f32_cpu(
        &self,
        qkv: &Tensor,
        rope: &RopeTables,
        cache: &mut LayerCache,
    ) -> tessera_core::Result<Tensor> {
        let c = &self.cfg;
        let len = qkv.dim(0)?;
        let (cos, sin) = rope.f32_tables();
        let (qn, kn) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let heads = |src: &Tensor, col, heads, dim, rotary, heads_first, scale| {
            src.apply_op1_no_bwd(&RopeHeads {
                col,
                heads,
                head_dim: dim,
                rotary_dim: rotary,
                cos,
                sin,
                heads_first,
                scale,
            })
        };
        // q/k norms come before the rotation: normalise, then rotate from the normed copy.
        let normed = |norm: &Option<RmsNorm>, col, n| -> candle_core::Result<Option<Tensor>> {
            match norm {
                Some(norm) => {
                    let t = qkv.narrow(1, col, n * c.head_dim)?;
                    let t = norm.forward(&t.reshape((len, n, c.head_dim))?)?;
                    Ok(Some(t.reshape((len, n * c.head_dim))?))
                }
                None => Ok(None),
            }
        };
        let rot = rope.rotary_dim();
        let q = match normed(&self.q_norm, 0, c.num_heads)? {
            Some(t) => heads(&t, 0, c.num_heads, c.head_dim, rot, false, None)?,
            None => heads(qkv, 0, c.num_heads, c.head_dim, rot, false, None)?,
        };
        let k = match normed(&self.k_norm, qn, c.num_kv_heads)? {
            Some(t) => heads(&t, 0, c.num_kv_heads, c.head_dim, rot, true, None)?,
            None => heads(qkv, qn, c.num_kv_heads, c.head_dim, rot, true, None)?,
        };
        let scale = (c.value_scale != 1.0).then_some(c.value_scale as f32);
        let v = heads(qkv, qn + kn, c.num_kv_heads, c.v_head_dim, 0, true, scale)?;
        let cached = cache.append(&k.unsqueeze(0)?, &v.unsqueeze(0)?)?;
        let op = FusedAttention {
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            v_head_dim: c.v_head_dim,
            scale: c.softmax_scale as f32,
            softcap: c.logit_softcap.map(|s| s as f32),
            mask: cached.mask,
            sinks: self.sink_values.as_deref(),
        };
        Ok(q.apply_op3_no_bwd(&cached.k, &cached.v, &op)?)
    }

    /// Any dtype and device, with candle's ops.
    fn forward_generic(
        &self,
        qkv: &Tensor,
        rope: &RopeTables,
        cache: &mut LayerCache,
    ) -> tessera_core::Result<Tensor> {
        let c = &self.cfg;
        let len = qkv.dim(0)?;
        let (qn, kn) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let heads = |col: usize, n: usize, d: usize, norm: &Option<RmsNorm>| {
            let t = qkv.narrow(1, col, n * d)?.reshape((len, n, d))?;
            let t = match norm {
                Some(norm) => norm.forward(&t)?,
                None => t,
            };
            t.transpose(0, 1)?.contiguous()?.unsqueeze(0)
        };
        let q = heads(0, c.num_heads, c.head_dim, &self.q_norm)?;
        let k = heads(qn, c.num_kv_heads, c.head_dim, &self.k_norm)?;
        let mut v = heads(qn + kn, c.num_kv_heads, c.v_head_dim, &None)?;
        if c.value_scale != 1.0 {
            v = v.affine(c.value_scale, 0.0)?;
        }
        let q = rope.apply(&q)?;
        let k = rope.apply(&k)?;
        let cached = cache.append(&k, &v)?;
        let out = self.attend(&q, &cached.k, &cached.v, cached.mask)?;
        // [1, heads, len, v_dim] -> [len, heads * v_dim]
        Ok(out
            .squeeze(0)?
            .transpose(0, 1)?
            .reshape((len, c.num_heads * c.v_head_dim))?)
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
