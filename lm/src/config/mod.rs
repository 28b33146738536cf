//! One decoder configuration for every supported checkpoint family.
//!
//! A checkpoint's `config.json` (Llama 3.x, Qwen2/2.5, Qwen3, Gemma 3 text, MiMo-V2-Flash, in the
//! form its Hugging Face repository ships or the form transformers 5 saves) is resolved into a
//! [`DecoderConfig`]: global fields plus one [`AttentionConfig`] per layer, so that the model code
//! never asks which family it runs. Every value is checked before anything is allocated.

mod json;
mod parse;

use tessera_core::config::{check_elems, check_finite, check_range};
use tessera_core::{Error, KeyMap, Result};

/// The checkpoint family a config came from (only for key names and messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    MiMoV2Flash,
}

/// The gate activation of the gated MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU.
    Silu,
    /// GeGLU with the tanh approximation (`gelu_pytorch_tanh`, `gelu_new`).
    GeluTanh,
    /// GeGLU with the exact erf form (`gelu`).
    GeluErf,
}

/// How RoPE frequencies are rescaled for long context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (Gemma 3 global layers).
    Linear {
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent rescaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Rotary embedding of one kind of layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    /// Leading dimensions of each head that rotate (`partial_rotary_factor` x head_dim); the
    /// rest pass through.
    pub rotary_dim: usize,
    pub scaling: RopeScaling,
}

/// The attention of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionConfig {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    /// Dimension of query and key heads.
    pub head_dim: usize,
    /// Dimension of value heads (MiMo-V2-Flash uses fewer than `head_dim`).
    pub v_head_dim: usize,
    /// `Some(w)`: each query sees itself and the `w - 1` positions before it (transformers'
    /// `sliding_window` semantics). `None`: global causal attention.
    pub window: Option<usize>,
    pub rope: RopeConfig,
    pub qkv_bias: bool,
    pub o_bias: bool,
    /// RMSNorm over each query and key head before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// A learnt logit per head that joins the softmax denominator (MiMo-V2-Flash window layers).
    pub sinks: bool,
    pub softmax_scale: f64,
    /// Values are multiplied by this after projection (MiMo-V2-Flash `attention_value_scale`).
    pub value_scale: f64,
    /// `tanh(s / c) * c` on the attention scores.
    pub logit_softcap: Option<f64>,
}

impl AttentionConfig {
    pub fn is_window(&self) -> bool {
        self.window.is_some()
    }

    /// Elements cached per token: keys and values of every KV head.
    pub fn kv_elems_per_token(&self) -> u64 {
        (self.num_kv_heads * (self.head_dim + self.v_head_dim)) as u64
    }
}

/// A fully resolved decoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub rms_norm_eps: f64,
    /// Gemma scales by `1 + w` instead of `w`: stored weights are offsets from one.
    pub norm_weight_offset: f64,
    pub activation: Activation,
    pub mlp_bias: bool,
    pub tie_word_embeddings: bool,
    /// Gemma multiplies embeddings by sqrt(hidden_size).
    pub embed_scale: Option<f64>,
    /// Gemma's extra norms: after attention, and before and after the MLP.
    pub sandwich_norms: bool,
    pub final_logit_softcap: Option<f64>,
    pub layers: Vec<AttentionConfig>,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// Renames from the checkpoint's keys to `model.…`/`lm_head.…` (multimodal wrappers).
    pub(crate) key_prefixes: Vec<(String, String)>,
    pub(crate) dropped_prefixes: Vec<String>,
}

/// Upper bounds that no real checkpoint reaches; a config beyond them is broken or hostile.
pub(crate) mod limits {
    pub const VOCAB: usize = 1 << 22;
    pub const HIDDEN: usize = 1 << 16;
    pub const INTERMEDIATE: usize = 1 << 20;
    pub const LAYERS: usize = 1024;
    pub const HEADS: usize = 1024;
    pub const HEAD_DIM: usize = 2048;
    pub const WINDOW: usize = 1 << 24;
    pub const POSITIONS: usize = 1 << 26;
    /// Elements in any one weight matrix.
    pub const TENSOR_ELEMS: u64 = 1 << 34;
}

impl DecoderConfig {
    /// Resolve a parsed `config.json`.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let cfg = parse::parse(value)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read and resolve a `config.json` file; errors name the file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let value = tessera_core::weights::read_json(path)?;
        Self::from_json(&value).map_err(|e| e.with_path(path))
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Renames from checkpoint keys to the names the model asks for.
    pub fn key_map(&self) -> KeyMap {
        let mut map = KeyMap::new();
        for prefix in &self.dropped_prefixes {
            map = map.drop(prefix.clone());
        }
        for (from, to) in &self.key_prefixes {
            map = map.prefix(from.clone(), to.clone());
        }
        map
    }

    /// Bytes the KV cache holds after `context` tokens with `bytes_per_elem`-byte entries:
    /// global layers keep every token, window layers at most their window.
    pub fn kv_cache_bytes(&self, context: usize, bytes_per_elem: usize) -> u64 {
        self.layers
            .iter()
            .map(|a| {
                let tokens = a.window.map_or(context, |w| w.min(context)) as u64;
                tokens * a.kv_elems_per_token() * bytes_per_elem as u64
            })
            .sum()
    }

    /// The same model with every layer global: what the KV cache would cost without windows.
    pub fn all_global(&self) -> Self {
        let mut cfg = self.clone();
        for a in &mut cfg.layers {
            a.window = None;
        }
        cfg
    }

    fn validate(&self) -> Result<()> {
        check_range("vocab_size", self.vocab_size, 1, limits::VOCAB)?;
        check_range("hidden_size", self.hidden_size, 1, limits::HIDDEN)?;
        check_range(
            "intermediate_size",
            self.intermediate_size,
            1,
            limits::INTERMEDIATE,
        )?;
        check_range("num_hidden_layers", self.layers.len(), 1, limits::LAYERS)?;
        check_finite("rms_norm_eps", self.rms_norm_eps, 0.0, 1.0)?;
        check_range(
            "max_position_embeddings",
            self.max_position_embeddings,
            1,
            limits::POSITIONS,
        )?;
        if let Some(s) = self.embed_scale {
            check_finite("embedding scale", s, 1e-6, 1e6)?;
        }
        if let Some(c) = self.final_logit_softcap {
            check_finite("final_logit_softcapping", c, 1e-3, 1e6)?;
        }
        for &id in self.eos_token_ids.iter().chain(self.bos_token_id.iter()) {
            if id as usize >= self.vocab_size {
                return Err(Error::config(format!(
                    "special token id {id} is outside the vocabulary of {}",
                    self.vocab_size
                )));
            }
        }
        let elems = limits::TENSOR_ELEMS;
        check_elems("the embedding", &[self.vocab_size, self.hidden_size], elems)?;
        check_elems(
            "the MLP projections",
            &[self.intermediate_size, self.hidden_size],
            elems,
        )?;
        for (i, a) in self.layers.iter().enumerate() {
            validate_attention(i, a, self.hidden_size)?;
        }
        Ok(())
    }
}

fn validate_attention(layer: usize, a: &AttentionConfig, hidden: usize) -> Result<()> {
    let field = |name: &str| format!("layer {layer}: {name}");
    check_range(&field("number of heads"), a.num_heads, 1, limits::HEADS)?;
    check_range(
        &field("number of key/value heads"),
        a.num_kv_heads,
        1,
        a.num_heads,
    )?;
    if !a.num_heads.is_multiple_of(a.num_kv_heads) {
        return Err(Error::config(format!(
            "layer {layer}: {} heads cannot share {} key/value heads evenly",
            a.num_heads, a.num_kv_heads
        )));
    }
    check_range(&field("head_dim"), a.head_dim, 1, limits::HEAD_DIM)?;
    check_range(&field("v_head_dim"), a.v_head_dim, 1, limits::HEAD_DIM)?;
    if let Some(w) = a.window {
        check_range(&field("sliding window"), w, 1, limits::WINDOW)?;
    }
    check_finite(&field("rope_theta"), a.rope.theta, 1e-3, 1e15)?;
    if !a.rope.rotary_dim.is_multiple_of(2) || a.rope.rotary_dim > a.head_dim {
        return Err(Error::config(format!(
            "layer {layer}: {} rotary dimensions do not fit a head of {} (must be even and no more)",
            a.rope.rotary_dim, a.head_dim
        )));
    }
    match a.rope.scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => {
            check_finite(&field("rope factor"), factor, 1e-3, 1e6)?;
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            check_finite(&field("rope factor"), factor, 1e-3, 1e6)?;
            check_finite(&field("low_freq_factor"), low_freq_factor, 1e-6, 1e6)?;
            check_finite(&field("high_freq_factor"), high_freq_factor, 1e-6, 1e6)?;
            check_finite(
                &field("original_max_position_embeddings"),
                original_max_position_embeddings,
                1.0,
                1e12,
            )?;
            if high_freq_factor <= low_freq_factor {
                return Err(Error::config(format!(
                    "layer {layer}: llama3 rope needs high_freq_factor > low_freq_factor \
                     ({high_freq_factor} <= {low_freq_factor})"
                )));
            }
        }
    }
    check_finite(&field("softmax scale"), a.softmax_scale, 1e-9, 1e9)?;
    check_finite(&field("attention_value_scale"), a.value_scale, -1e6, 1e6)?;
    if let Some(c) = a.logit_softcap {
        check_finite(&field("attn_logit_softcapping"), c, 1e-3, 1e6)?;
    }
    let elems = limits::TENSOR_ELEMS;
    check_elems(
        &field("the query projection"),
        &[a.num_heads, a.head_dim, hidden],
        elems,
    )?;
    check_elems(
        &field("the output projection"),
        &[a.num_heads, a.v_head_dim, hidden],
        elems,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
