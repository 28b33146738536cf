//! Multi-token prediction (MTP) layers in MiMo's form.
//!
//! An MTP layer predicts the token after next: at position t it takes the main model's final
//! (normed) hidden state at t and the embedding of token t + 1, normalises each, concatenates
//! them, projects back to the hidden size, runs one decoder block and a final norm, and shares
//! the main model's LM head. Chained on its own output it drafts several tokens ahead.
//!
//! Two checkpoint layouts exist:
//! - MiMo-7B: `model.mtp_layers.{i}.{token_layernorm, hidden_layernorm, input_proj, …,
//!   final_layernorm}`, concatenating [hidden, embedding], with the model's global attention;
//! - MiMo-V2-Flash: `model.mtp.layers.{i}.{enorm, hnorm, eh_proj, …, pre_mlp_layernorm,
//!   final_layernorm}`, concatenating [embedding, hidden], with the sliding-window attention
//!   (and sinks) of the window layers.

use std::path::Path;

use candle_core::Tensor;
use candle_nn::{Module, VarBuilder};
use tessera_core::{Checkpoint, Error, KeyMap, Result};

use crate::block::Block;
use crate::config::{AttentionConfig, DecoderConfig};
use crate::kv_cache::DecoderCache;
use crate::model::Decoder;
use crate::norm::RmsNorm;
use crate::rope::Rope;

/// Which published layout the MTP weights follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtpLayout {
    MiMo7B,
    MiMoV2Flash,
}

impl MtpLayout {
    fn prefix(self) -> &'static str {
        match self {
            MtpLayout::MiMo7B => "model.mtp_layers.",
            MtpLayout::MiMoV2Flash => "model.mtp.layers.",
        }
    }

    /// Renames from the checkpoint's MTP keys to `mtp.{i}.{token_layernorm, …}`.
    fn key_map(self) -> KeyMap {
        let map = KeyMap::new().prefix(self.prefix(), "mtp.");
        match self {
            MtpLayout::MiMo7B => map,
            MtpLayout::MiMoV2Flash => map
                .replace(".enorm.", ".token_layernorm.")
                .replace(".hnorm.", ".hidden_layernorm.")
                .replace(".eh_proj.", ".input_proj.")
                .replace(".pre_mlp_layernorm.", ".post_attention_layernorm."),
        }
    }
}

#[derive(Debug, Clone)]
struct MtpLayer {
    token_norm: RmsNorm,
    hidden_norm: RmsNorm,
    proj: crate::linear::Linear,
    block: Block,
    final_norm: RmsNorm,
}

/// The MTP layers of a checkpoint.
#[derive(Debug, Clone)]
pub struct Mtp {
    layers: Vec<MtpLayer>,
    layout: MtpLayout,
    attention: AttentionConfig,
    rope: Rope,
}

impl Mtp {
    /// The MTP layers stored in the checkpoint directory of `model`, or `None` if it has none.
    pub fn load(dir: impl AsRef<Path>, model: &Decoder) -> Result<Option<Self>> {
        let ckpt = Checkpoint::open(dir)?;
        let keys = ckpt.store(&KeyMap::new())?.keys();
        let Some((layout, count)) = detect(&keys) else {
            return Ok(None);
        };
        let store = ckpt.store(&layout.key_map())?;
        let vb = store.into_var_builder(model.dtype(), model.device());
        Self::from_var_builder(vb.pp("mtp"), model.config(), layout, count).map(Some)
    }

    /// Build `count` layers from weights named `{i}.token_layernorm.weight`, ….
    pub fn from_var_builder(
        vb: VarBuilder,
        cfg: &DecoderConfig,
        layout: MtpLayout,
        count: usize,
    ) -> Result<Self> {
        if count == 0 {
            return Err(Error::invalid("an MTP module needs at least one layer"));
        }
        let attention = match layout {
            MtpLayout::MiMo7B => AttentionConfig {
                window: None,
                ..cfg.layers[0].clone()
            },
            MtpLayout::MiMoV2Flash => cfg
                .layers
                .iter()
                .find(|a| a.window.is_some())
                .unwrap_or(&cfg.layers[0])
                .clone(),
        };
        let (h, eps, off) = (cfg.hidden_size, cfg.rms_norm_eps, cfg.norm_weight_offset);
        let layers = (0..count)
            .map(|i| -> candle_core::Result<MtpLayer> {
                let vb = vb.pp(i.to_string());
                Ok(MtpLayer {
                    token_norm: RmsNorm::load(vb.pp("token_layernorm"), h, eps, off)?,
                    hidden_norm: RmsNorm::load(vb.pp("hidden_layernorm"), h, eps, off)?,
                    proj: crate::linear::load(2 * h, h, false, vb.pp("input_proj"))?,
                    block: Block::load(vb.clone(), cfg, &attention)?,
                    final_norm: RmsNorm::load(vb.pp("final_layernorm"), h, eps, off)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Mtp {
            layers,
            layout,
            rope: Rope::new(&attention.rope),
            attention,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn layout(&self) -> MtpLayout {
        self.layout
    }

    /// An empty cache for one MTP layer, able to roll back `max_rollback` positions.
    pub fn new_cache(&self, max_rollback: usize) -> DecoderCache {
        DecoderCache::new(&[self.attention.window], max_rollback, 0)
    }

    /// Run MTP layer `layer` at the positions following what `cache` holds. `hidden`: the
    /// main model's normed hidden states there (`[n, hidden]`); `next`: the token after each.
    /// Returns the layer's output hidden states (after its final norm), to be fed to
    /// [`Decoder::head`] for logits or back in as `hidden` to draft further ahead.
    pub fn forward(
        &self,
        layer: usize,
        model: &Decoder,
        hidden: &Tensor,
        next: &[u32],
        cache: &mut DecoderCache,
    ) -> Result<Tensor> {
        let l = self
            .layers
            .get(layer)
            .ok_or_else(|| Error::invalid(format!("no MTP layer {layer}")))?;
        let n = hidden.dim(0)?;
        if next.len() != n {
            return Err(Error::invalid(format!(
                "{n} hidden states but {} next tokens",
                next.len()
            )));
        }
        let e = l.token_norm.forward(&model.embed(next)?)?;
        let h = l.hidden_norm.forward(hidden)?;
        let parts = match self.layout {
            MtpLayout::MiMo7B => [h, e],
            MtpLayout::MiMoV2Flash => [e, h],
        };
        let x = l.proj.forward(&Tensor::cat(&parts, 1)?)?;
        let tables = self
            .rope
            .tables(cache.len(), n, model.dtype(), model.device())?;
        let layer_cache = cache
            .layer_mut(0)
            .ok_or_else(|| Error::invalid("an MTP cache has one layer"))?;
        let x = l.block.forward(&x, &tables, layer_cache)?;
        cache.advance(n);
        Ok(l.final_norm.forward(&x)?)
    }
}

/// The layout and number of MTP layers among a checkpoint's keys.
fn detect(keys: &[String]) -> Option<(MtpLayout, usize)> {
    for layout in [MtpLayout::MiMo7B, MtpLayout::MiMoV2Flash] {
        let count = keys
            .iter()
            .filter_map(|k| k.strip_prefix(layout.prefix()))
            .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
            .map(|i| i + 1)
            .max();
        if let Some(count) = count {
            return Some((layout, count));
        }
    }
    None
}
