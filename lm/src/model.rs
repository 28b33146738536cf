//! The decoder: embedding, blocks, final norm and LM head, read from a checkpoint directory.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tessera_core::{Checkpoint, Error, Result};

use crate::block::Block;
use crate::config::DecoderConfig;
use crate::kv_cache::DecoderCache;
use crate::norm::RmsNorm;
use crate::rope::{Rope, RopeTables};

/// A decoder-only language model of any supported family.
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: DecoderConfig,
    embed: Tensor,
    /// The embedding matrix itself when the embeddings are tied.
    lm_head: Tensor,
    /// The embedding scale, rounded to the model dtype as the reference rounds it.
    embed_scale: Option<f64>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    /// Distinct RoPE settings, and which one each layer uses.
    ropes: Vec<Rope>,
    rope_of_layer: Vec<usize>,
    dtype: DType,
    device: Device,
}

impl Decoder {
    /// Load a checkpoint directory (`config.json` + weights as its Hugging Face repository
    /// ships them), computing in `dtype` on `device`.
    pub fn load(dir: impl AsRef<Path>, dtype: DType, device: &Device) -> Result<Self> {
        let ckpt = Checkpoint::open(dir)?;
        let cfg = DecoderConfig::from_file(&ckpt.config)?;
        let store = ckpt.store(&cfg.key_map())?;
        Self::from_var_builder(cfg, store.into_var_builder(dtype, device))
    }

    /// Build from weights already opened (names as in transformers: `model.layers.0…`).
    pub fn from_var_builder(cfg: DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let dtype = vb.dtype();
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(Error::invalid(format!(
                "a decoder computes in f32, bf16 or f16, not {dtype:?}"
            )));
        }
        let device = vb.device().clone();
        let m = vb.pp("model");
        let (v, h) = (cfg.vocab_size, cfg.hidden_size);
        let embed = m.get((v, h), "embed_tokens.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            vb.get((v, h), "lm_head.weight")?
        };
        let blocks = cfg
            .layers
            .iter()
            .enumerate()
            .map(|(i, a)| Block::load(m.pp(format!("layers.{i}")), &cfg, a))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let norm = RmsNorm::load(m.pp("norm"), h, cfg.rms_norm_eps, cfg.norm_weight_offset)?;
        let mut rope_cfgs = Vec::new();
        let mut rope_of_layer = Vec::with_capacity(cfg.layers.len());
        for a in &cfg.layers {
            let idx = match rope_cfgs.iter().position(|r| *r == a.rope) {
                Some(i) => i,
                None => {
                    rope_cfgs.push(a.rope);
                    rope_cfgs.len() - 1
                }
            };
            rope_of_layer.push(idx);
        }
        let embed_scale = match cfg.embed_scale {
            Some(s) => Some(
                Tensor::new(&[s as f32], &Device::Cpu)?
                    .to_dtype(dtype)?
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?[0],
            ),
            None => None,
        };
        Ok(Decoder {
            ropes: rope_cfgs.iter().map(Rope::new).collect(),
            rope_of_layer,
            embed,
            lm_head,
            embed_scale,
            blocks,
            norm,
            dtype,
            device,
            cfg,
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache: rings for window layers, growing buffers for global ones.
    pub fn new_cache(&self) -> DecoderCache {
        self.new_cache_with(0, 0)
    }

    /// A cache whose window layers can roll back `max_rollback` positions at a time and whose
    /// global layers first allocate room for `capacity_hint` positions.
    pub fn new_cache_with(&self, max_rollback: usize, capacity_hint: usize) -> DecoderCache {
        let windows: Vec<Option<usize>> = self.cfg.layers.iter().map(|a| a.window).collect();
        // A hint is a request, not a promise to use it: never pre-allocate past the positions
        // the model was built for.
        let hint = capacity_hint.min(self.cfg.max_position_embeddings);
        DecoderCache::new(&windows, max_rollback, hint)
    }

    /// Logits (f32, `[ids.len(), vocab]`) of every position of `ids`, which follow what `cache`
    /// holds; the cache then holds them too. After an error, start from a fresh cache.
    pub fn forward(&self, ids: &[u32], cache: &mut DecoderCache) -> Result<Tensor> {
        let hidden = self.forward_hidden(ids, cache)?;
        self.logits(&hidden)
    }

    /// Logits (f32, `[vocab]`) of the last position of `ids` only: generation's forward.
    pub fn forward_last(&self, ids: &[u32], cache: &mut DecoderCache) -> Result<Tensor> {
        let hidden = self.forward_hidden(ids, cache)?;
        let last = hidden.narrow(0, hidden.dim(0)? - 1, 1)?;
        Ok(self.logits(&last)?.squeeze(0)?)
    }

    /// Hidden states after the last block, before the final norm (`[ids.len(), hidden]`).
    pub fn forward_hidden(&self, ids: &[u32], cache: &mut DecoderCache) -> Result<Tensor> {
        if cache.num_layers() != self.blocks.len() {
            return Err(Error::invalid(format!(
                "the cache has {} layers, the model {}",
                cache.num_layers(),
                self.blocks.len()
            )));
        }
        let start = cache.len();
        let x = self.embed(ids)?;
        let tables = self
            .ropes
            .iter()
            .map(|r| r.tables(start, ids.len(), self.dtype, &self.device))
            .collect::<candle_core::Result<Vec<RopeTables>>>()?;
        let mut x = x;
        for (i, block) in self.blocks.iter().enumerate() {
            let layer = cache.layer_mut(i).expect("checked layer count");
            x = block.forward(&x, &tables[self.rope_of_layer[i]], layer)?;
        }
        cache.advance(ids.len());
        Ok(x)
    }

    /// Token embeddings (scaled where the family scales them), `[ids.len(), hidden]`.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(Error::invalid("no token ids to run"));
        }
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(Error::invalid(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.cfg.vocab_size
            )));
        }
        let ids = Tensor::from_slice(ids, ids.len(), &self.device)?;
        let x = self.embed.index_select(&ids, 0)?;
        Ok(match self.embed_scale {
            Some(s) => x.affine(s, 0.0)?,
            None => x,
        })
    }

    /// Final norm, LM head and soft-capping of hidden states from [`Self::forward_hidden`];
    /// f32 logits.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.head(&self.final_norm(hidden)?)
    }

    /// The final norm (what MTP layers are fed as the main model's hidden state).
    pub fn final_norm(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.norm.forward(hidden)?)
    }

    /// LM head and soft-capping of normed hidden states; f32 logits.
    pub fn head(&self, normed: &Tensor) -> Result<Tensor> {
        let logits = crate::linear::matmul_t(normed, &self.lm_head)?;
        let logits = match self.cfg.final_logit_softcap {
            Some(cap) => ((logits / cap)?.tanh()? * cap)?,
            None => logits,
        };
        Ok(logits.to_dtype(DType::F32)?)
    }
}
