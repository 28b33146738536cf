//! One decoder layer: pre-norm attention and MLP with residuals; Gemma adds norms after each.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::attention::Attention;
use crate::config::{AttentionConfig, DecoderConfig};
use crate::kernels::add::add;
use crate::kv_cache::LayerCache;
use crate::mlp::Mlp;
use crate::norm::RmsNorm;
use crate::rope::RopeTables;

/// Gemma's norms on the branch outputs.
#[derive(Debug, Clone)]
struct SandwichNorms {
    pre_feedforward: RmsNorm,
    post_feedforward: RmsNorm,
}

#[derive(Debug, Clone)]
pub struct Block {
    input_norm: RmsNorm,
    attention: Attention,
    /// Llama/Qwen/MiMo: the norm before the MLP. Gemma: the norm of the attention output.
    post_attention_norm: RmsNorm,
    sandwich: Option<SandwichNorms>,
    mlp: Mlp,
}

impl Block {
    pub fn load(
        vb: VarBuilder,
        cfg: &DecoderConfig,
        attn: &AttentionConfig,
    ) -> candle_core::Result<Self> {
        let (h, eps, off) = (cfg.hidden_size, cfg.rms_norm_eps, cfg.norm_weight_offset);
        let norm = |name: &str| RmsNorm::load(vb.pp(name), h, eps, off);
        let sandwich = if cfg.sandwich_norms {
            Some(SandwichNorms {
                pre_feedforward: norm("pre_feedforward_layernorm")?,
                post_feedforward: norm("post_feedforward_layernorm")?,
            })
        } else {
            None
        };
        Ok(Block {
            input_norm: norm("input_layernorm")?,
            attention: Attention::load(vb.pp("self_attn"), attn, h, eps, off)?,
            post_attention_norm: norm("post_attention_layernorm")?,
            sandwich,
            mlp: Mlp::load(vb.pp("mlp"), cfg)?,
        })
    }

    pub fn attention(&self) -> &Attention {
        &self.attention
    }

    /// `x`: `[len, hidden]`.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        cache: &mut LayerCache,
    ) -> tessera_core::Result<Tensor> {
        let a = self
            .attention
            .forward(&self.input_norm.forward(x)?, rope, cache)?;
        Ok(match &self.sandwich {
            None => {
                let h = add(x, &a)?;
                let m = self.mlp.forward(&self.post_attention_norm.forward(&h)?)?;
                add(&h, &m)?
            }
            Some(s) => {
                let h = add(x, &self.post_attention_norm.forward(&a)?)?;
                let m = self.mlp.forward(&s.pre_feedforward.forward(&h)?)?;
                add(&h, &s.post_feedforward.forward(&m)?)?
            }
        })
    }
}
