//! From the `config.json` of each family to a [`DecoderConfig`].
//!
//! Each family is read the way transformers 5 reads it, including the older field names that the
//! configs on the Hugging Face Hub still use (`rope_theta` + `rope_scaling` instead of
//! `rope_parameters`, Gemma's `sliding_window_pattern`, MiMo's `hybrid_layer_pattern` and `swa_*`
//! fields), so that a checkpoint means the same here as there.

use serde_json::Value;
use tessera_core::{Error, Result};

use super::json::Fields;
use super::{Activation, AttentionConfig, DecoderConfig, Family, RopeConfig, RopeScaling};

pub(super) fn parse(value: &Value) -> Result<DecoderConfig> {
    let top = Fields::new(value, "")?;
    let model_type = top.str("model_type")?.unwrap_or("");
    match model_type {
        "llama" => llama_like(&top, Family::Llama),
        // MiMo-7B: a Qwen2 body (its MTP layers are read by the MTP module).
        "qwen2" | "mimo" => llama_like(&top, Family::Qwen2),
        "qwen3" => llama_like(&top, Family::Qwen3),
        "gemma3_text" => gemma3(&top, &top, false),
        "gemma3" => {
            let text = top
                .object("text_config")?
                .ok_or_else(|| Error::config("model_type gemma3 without a text_config object"))?;
            gemma3(&text, &top, true)
        }
        "mimo_v2_flash" => mimo_v2_flash(&top),
        "" => Err(Error::config(
            "model_type is missing; cannot tell which architecture this checkpoint is",
        )),
        other => Err(Error::config(format!(
            "model_type '{other}' is not supported (supported: llama, qwen2, mimo, qwen3, \
             gemma3_text, gemma3, mimo_v2_flash)"
        ))),
    }
}

/// Fields every family shares.
struct Common {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_layers: usize,
    num_heads: usize,
    num_kv_heads: usize,
    max_position_embeddings: usize,
    bos_token_id: Option<u32>,
    eos_token_ids: Vec<u32>,
}

/// transformers' defaults of a config class, for fields a Hub config leaves out.
struct Defaults {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_layers: usize,
    num_heads: usize,
    /// `None`: as many as query heads.
    num_kv_heads: Option<usize>,
    max_positions: usize,
}

fn common(f: &Fields, outer: &Fields, d: &Defaults) -> Result<Common> {
    let num_heads = f.usize("num_attention_heads")?.unwrap_or(d.num_heads);
    if num_heads == 0 {
        return Err(Error::config(
            "num_attention_heads = 0: a decoder needs heads",
        ));
    }
    let num_kv_heads = f
        .usize("num_key_value_heads")?
        .unwrap_or(d.num_kv_heads.unwrap_or(num_heads));
    if num_kv_heads == 0 {
        return Err(Error::config(
            "num_key_value_heads = 0: a decoder needs heads",
        ));
    }
    let bos = match f.ids("bos_token_id")? {
        ids if !ids.is_empty() => ids,
        _ => outer.ids("bos_token_id")?,
    };
    let eos = match f.ids("eos_token_id")? {
        ids if !ids.is_empty() => ids,
        _ => outer.ids("eos_token_id")?,
    };
    Ok(Common {
        vocab_size: f.usize("vocab_size")?.unwrap_or(d.vocab_size),
        hidden_size: f.usize("hidden_size")?.unwrap_or(d.hidden_size),
        intermediate_size: f.usize("intermediate_size")?.unwrap_or(d.intermediate_size),
        num_layers: f.usize("num_hidden_layers")?.unwrap_or(d.num_layers),
        num_heads,
        num_kv_heads,
        max_position_embeddings: f
            .usize("max_position_embeddings")?
            .unwrap_or(d.max_positions),
        bos_token_id: bos.first().copied(),
        eos_token_ids: eos,
    })
}

/// `head_dim` from the config, or hidden_size / num_heads as transformers derives it.
fn head_dim(f: &Fields, c: &Common, default: Option<usize>) -> Result<usize> {
    if let Some(d) = f.usize("head_dim")? {
        return Ok(d);
    }
    if let Some(d) = default {
        return Ok(d);
    }
    if !c.hidden_size.is_multiple_of(c.num_heads) {
        return Err(Error::config(format!(
            "hidden_size {} is not divisible by num_attention_heads {} (and no head_dim is given)",
            c.hidden_size, c.num_heads
        )));
    }
    Ok(c.hidden_size / c.num_heads)
}

fn activation(f: &Fields, key: &str, default: &str) -> Result<Activation> {
    match f.str(key)?.unwrap_or(default) {
        "silu" | "swish" => Ok(Activation::Silu),
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Activation::GeluTanh),
        "gelu" => Ok(Activation::GeluErf),
        other => Err(Error::config(format!(
            "{key} = '{other}' is not supported (silu, gelu, gelu_pytorch_tanh)"
        ))),
    }
}

/// RoPE of one kind of layer, before the head dimension is known.
#[derive(Debug, Clone, Copy)]
struct RopeParams {
    theta: f64,
    partial_rotary_factor: f64,
    scaling: RopeScaling,
}

impl RopeParams {
    fn for_head(&self, head_dim: usize) -> RopeConfig {
        // int(head_dim * partial_rotary_factor), as transformers computes it.
        let rotary_dim = (head_dim as f64 * self.partial_rotary_factor) as usize;
        RopeConfig {
            theta: self.theta,
            rotary_dim,
            scaling: self.scaling,
        }
    }
}

/// One RoPE dict (`rope_parameters`, a per-layer-type entry of it, or legacy `rope_scaling`).
fn rope_dict(
    d: &Fields,
    default_theta: f64,
    default_partial: f64,
    max_positions: usize,
) -> Result<RopeParams> {
    let kind = match d.str("rope_type")? {
        Some(t) => t,
        None => d.str("type")?.unwrap_or("default"),
    };
    let partial = d.f64("partial_rotary_factor")?.unwrap_or(default_partial);
    let theta = d.f64("rope_theta")?.unwrap_or(default_theta);
    let factor = || {
        d.f64("factor")?
            .ok_or_else(|| Error::config(format!("rope type '{kind}' needs a factor")))
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: factor()? },
        "llama3" => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: d.f64("low_freq_factor")?.unwrap_or(1.0),
            high_freq_factor: d.f64("high_freq_factor")?.unwrap_or(4.0),
            original_max_position_embeddings: d
                .f64("original_max_position_embeddings")?
                .unwrap_or(max_positions as f64),
        },
        other => {
            return Err(Error::config(format!(
                "rope type '{other}' is not supported (default, linear, llama3)"
            )));
        }
    };
    check_partial(partial)?;
    Ok(RopeParams {
        theta,
        partial_rotary_factor: partial,
        scaling,
    })
}

fn check_partial(p: f64) -> Result<()> {
    if !(p.is_finite() && p > 0.0 && p <= 1.0) {
        return Err(Error::config(format!(
            "partial_rotary_factor = {p} is out of range (0, 1]"
        )));
    }
    Ok(())
}

/// RoPE shared by all layers: `rope_parameters`, or legacy `rope_theta` + `rope_scaling`.
fn flat_rope(f: &Fields, default_theta: f64, max_positions: usize) -> Result<RopeParams> {
    let theta = f.f64("rope_theta")?.unwrap_or(default_theta);
    let partial = f.f64("partial_rotary_factor")?.unwrap_or(1.0);
    let dict = match f.object("rope_parameters")? {
        Some(d) => Some(d),
        None => f.object("rope_scaling")?,
    };
    match dict {
        Some(d) => rope_dict(&d, theta, partial, max_positions),
        None => {
            check_partial(partial)?;
            Ok(RopeParams {
                theta,
                partial_rotary_factor: partial,
                scaling: RopeScaling::None,
            })
        }
    }
}

/// `layer_types` as window flags (`true` = sliding window), if the config lists them.
fn layer_types(f: &Fields, num_layers: usize) -> Result<Option<Vec<bool>>> {
    let Some(types) = f.strings("layer_types")? else {
        return Ok(None);
    };
    if types.len() != num_layers {
        return Err(Error::config(format!(
            "layer_types lists {} layers, num_hidden_layers is {num_layers}",
            types.len()
        )));
    }
    types
        .iter()
        .map(|t| match *t {
            "full_attention" => Ok(false),
            "sliding_attention" => Ok(true),
            other => Err(Error::config(format!(
                "layer type '{other}' is not supported (full_attention, sliding_attention)"
            ))),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn window_size(f: &Fields, key: &str) -> Result<usize> {
    f.usize(key)?.ok_or_else(|| {
        Error::config(format!(
            "{key} is missing but some layers use sliding-window attention"
        ))
    })
}

fn tie(f: &Fields, outer: &Fields, default: bool) -> Result<bool> {
    Ok(match f.bool("tie_word_embeddings")? {
        Some(t) => t,
        None => outer.bool("tie_word_embeddings")?.unwrap_or(default),
    })
}

/// Llama, Qwen2 and Qwen3: one attention shape for all layers, optional sliding windows.
fn llama_like(f: &Fields, family: Family) -> Result<DecoderConfig> {
    let (defaults, default_head_dim) = match family {
        Family::Llama => (
            Defaults {
                vocab_size: 32000,
                hidden_size: 4096,
                intermediate_size: 11008,
                num_layers: 32,
                num_heads: 32,
                num_kv_heads: None,
                max_positions: 2048,
            },
            None,
        ),
        Family::Qwen3 => (
            Defaults {
                vocab_size: 151_936,
                hidden_size: 4096,
                intermediate_size: 22016,
                num_layers: 32,
                num_heads: 32,
                num_kv_heads: Some(32),
                max_positions: 32768,
            },
            Some(128),
        ),
        _ => (
            Defaults {
                vocab_size: 151_936,
                hidden_size: 4096,
                intermediate_size: 22016,
                num_layers: 32,
                num_heads: 32,
                num_kv_heads: Some(32),
                max_positions: 32768,
            },
            None,
        ),
    };
    let c = common(f, f, &defaults)?;
    let head_dim = head_dim(f, &c, default_head_dim)?;
    let rope = flat_rope(f, 10_000.0, c.max_position_embeddings)?;
    let attention_bias = f.bool("attention_bias")?.unwrap_or(false);
    let (qkv_bias, o_bias) = match family {
        Family::Qwen2 => (true, false),
        _ => (attention_bias, attention_bias),
    };
    let windows = match family {
        Family::Llama => vec![None; c.num_layers],
        _ => qwen_windows(f, c.num_layers)?,
    };
    let layers = windows
        .into_iter()
        .map(|window| AttentionConfig {
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim,
            v_head_dim: head_dim,
            window,
            rope: rope.for_head(head_dim),
            qkv_bias,
            o_bias,
            qk_norm: family == Family::Qwen3,
            sinks: false,
            softmax_scale: (head_dim as f64).powf(-0.5),
            value_scale: 1.0,
            logit_softcap: None,
        })
        .collect();
    Ok(DecoderConfig {
        family,
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        intermediate_size: c.intermediate_size,
        rms_norm_eps: f.f64("rms_norm_eps")?.unwrap_or(1e-6),
        norm_weight_offset: 0.0,
        activation: activation(f, "hidden_act", "silu")?,
        mlp_bias: family == Family::Llama && f.bool("mlp_bias")?.unwrap_or(false),
        tie_word_embeddings: tie(f, f, false)?,
        embed_scale: None,
        sandwich_norms: false,
        final_logit_softcap: None,
        layers,
        max_position_embeddings: c.max_position_embeddings,
        bos_token_id: c.bos_token_id,
        eos_token_ids: c.eos_token_ids,
        key_prefixes: Vec::new(),
        dropped_prefixes: Vec::new(),
    })
}

/// Qwen2/Qwen3: windows only with `use_sliding_window`, on the layers from `max_window_layers`
/// on unless `layer_types` says which.
fn qwen_windows(f: &Fields, num_layers: usize) -> Result<Vec<Option<usize>>> {
    if !f.bool("use_sliding_window")?.unwrap_or(false) {
        return Ok(vec![None; num_layers]);
    }
    let window = window_size(f, "sliding_window")?;
    let flags = match layer_types(f, num_layers)? {
        Some(flags) => flags,
        None => {
            let first = f.usize("max_window_layers")?.unwrap_or(28);
            (0..num_layers).map(|i| i >= first).collect()
        }
    };
    Ok(flags.into_iter().map(|w| w.then_some(window)).collect())
}

/// Gemma 3 text (alone, or the `text_config` of the multimodal checkpoints).
fn gemma3(f: &Fields, outer: &Fields, wrapped: bool) -> Result<DecoderConfig> {
    if f.bool("use_bidirectional_attention")?.unwrap_or(false) {
        return Err(Error::config(
            "use_bidirectional_attention = true (an embedding model) is not a causal decoder",
        ));
    }
    let defaults = Defaults {
        vocab_size: 262_208,
        hidden_size: 2304,
        intermediate_size: 9216,
        num_layers: 26,
        num_heads: 8,
        num_kv_heads: Some(4),
        max_positions: 131_072,
    };
    let c = common(f, outer, &defaults)?;
    let head_dim = head_dim(f, &c, Some(256))?;
    let flags = match layer_types(f, c.num_layers)? {
        Some(flags) => flags,
        None => {
            let pattern = f.usize("sliding_window_pattern")?.unwrap_or(6);
            if pattern == 0 {
                return Err(Error::config("sliding_window_pattern = 0"));
            }
            (0..c.num_layers).map(|i| (i + 1) % pattern != 0).collect()
        }
    };
    let window = if flags.iter().any(|&w| w) {
        Some(f.usize("sliding_window")?.unwrap_or(4096))
    } else {
        None
    };
    let (global_rope, local_rope) = gemma3_ropes(f, c.max_position_embeddings)?;
    let bias = f.bool("attention_bias")?.unwrap_or(false);
    let query_scalar = f.f64("query_pre_attn_scalar")?.unwrap_or(256.0);
    if !(query_scalar.is_finite() && query_scalar > 0.0) {
        return Err(Error::config(format!(
            "query_pre_attn_scalar = {query_scalar} must be a positive number"
        )));
    }
    let layers = flags
        .into_iter()
        .map(|sliding| AttentionConfig {
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim,
            v_head_dim: head_dim,
            window: if sliding { window } else { None },
            rope: if sliding { local_rope } else { global_rope }.for_head(head_dim),
            qkv_bias: bias,
            o_bias: bias,
            qk_norm: true,
            sinks: false,
            softmax_scale: query_scalar.powf(-0.5),
            value_scale: 1.0,
            // Gemma 2 capped attention logits; transformers' Gemma 3 attention reads
            // attn_logit_softcapping but never applies it (and the released configs set it
            // null), so neither do we.
            logit_softcap: None,
        })
        .collect();
    let (key_prefixes, dropped_prefixes) = if wrapped {
        (
            vec![
                ("language_model.model.".into(), "model.".into()),
                ("model.language_model.".into(), "model.".into()),
                ("language_model.lm_head.".into(), "lm_head.".into()),
            ],
            vec![
                "vision_tower.".into(),
                "multi_modal_projector.".into(),
                "model.vision_tower.".into(),
                "model.multi_modal_projector.".into(),
            ],
        )
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(DecoderConfig {
        family: Family::Gemma3,
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        intermediate_size: c.intermediate_size,
        rms_norm_eps: f.f64("rms_norm_eps")?.unwrap_or(1e-6),
        norm_weight_offset: 1.0,
        activation: activation(f, "hidden_activation", "gelu_pytorch_tanh")?,
        mlp_bias: false,
        tie_word_embeddings: tie(f, outer, true)?,
        embed_scale: Some((c.hidden_size as f64).sqrt()),
        sandwich_norms: true,
        final_logit_softcap: f.f64("final_logit_softcapping")?,
        layers,
        max_position_embeddings: c.max_position_embeddings,
        bos_token_id: c.bos_token_id,
        eos_token_ids: c.eos_token_ids,
        key_prefixes,
        dropped_prefixes,
    })
}

/// Gemma 3's (global, local) RoPE: nested `rope_parameters`, or the Hub's `rope_theta` +
/// `rope_scaling` (global layers) and `rope_local_base_freq` (local layers).
fn gemma3_ropes(f: &Fields, max_positions: usize) -> Result<(RopeParams, RopeParams)> {
    let global_theta = f.f64("rope_theta")?.unwrap_or(1_000_000.0);
    let local_theta = f.f64("rope_local_base_freq")?.unwrap_or(10_000.0);
    if let Some(nested) = nested_rope(f)? {
        let global = match nested.object("full_attention")? {
            Some(d) => rope_dict(&d, global_theta, 1.0, max_positions)?,
            None => plain_rope(global_theta),
        };
        let local = match nested.object("sliding_attention")? {
            Some(d) => rope_dict(&d, local_theta, 1.0, max_positions)?,
            None => plain_rope(local_theta),
        };
        return Ok((global, local));
    }
    let global = match f.object("rope_scaling")? {
        Some(d) => rope_dict(&d, global_theta, 1.0, max_positions)?,
        None => plain_rope(global_theta),
    };
    Ok((global, plain_rope(local_theta)))
}

fn plain_rope(theta: f64) -> RopeParams {
    RopeParams {
        theta,
        partial_rotary_factor: 1.0,
        scaling: RopeScaling::None,
    }
}

/// `rope_parameters` when it is keyed by layer type.
fn nested_rope<'a>(f: &Fields<'a>) -> Result<Option<Fields<'a>>> {
    Ok(f.object("rope_parameters")?
        .filter(|d| d.has("full_attention") || d.has("sliding_attention")))
}

/// MiMo-V2-Flash's attention scheme with dense MLPs.
///
/// Two forms exist: the Hub's (`hybrid_layer_pattern` with 1 = window layer, `swa_*` head
/// shapes, `sliding_window_size`, `swa_rope_theta`, `add_*_attention_sink_bias`) and the one
/// transformers 5 saves (`layer_types`, nested `rope_parameters`, `sliding_window`, window layers
/// with twice the KV heads). Where the Hub form gives `sliding_window_size`, the window is that
/// many previous tokens plus the query, as transformers reads it.
fn mimo_v2_flash(f: &Fields) -> Result<DecoderConfig> {
    let defaults = Defaults {
        vocab_size: 152_576,
        hidden_size: 4096,
        intermediate_size: 16384,
        num_layers: 48,
        num_heads: 64,
        num_kv_heads: Some(4),
        max_positions: 131_072,
    };
    let c = common(f, f, &defaults)?;
    reject_moe(f, c.num_layers)?;
    let flags = match layer_types(f, c.num_layers)? {
        Some(flags) => flags,
        None => match f.ints("hybrid_layer_pattern")? {
            Some(p) => {
                if p.len() != c.num_layers {
                    return Err(Error::config(format!(
                        "hybrid_layer_pattern lists {} layers, num_hidden_layers is {}",
                        p.len(),
                        c.num_layers
                    )));
                }
                p.iter().map(|&x| x == 1).collect()
            }
            None => (0..c.num_layers)
                .map(|i| !(i == 0 || (i + 1) % 6 == 0))
                .collect(),
        },
    };
    let window = match f.usize("sliding_window_size")? {
        Some(w) => w
            .checked_add(1)
            .ok_or_else(|| Error::config("sliding_window_size overflows"))?,
        None => f.usize("sliding_window")?.unwrap_or(129),
    };
    let head_dim = head_dim(f, &c, Some(192))?;
    let v_head_dim = f.usize("v_head_dim")?.unwrap_or(128);
    let hub_form = f.has("swa_num_attention_heads") || f.has("swa_head_dim");
    let (swa_heads, swa_kv_heads, swa_head_dim, swa_v_head_dim) = if hub_form {
        let heads = f.usize("swa_num_attention_heads")?.unwrap_or(c.num_heads);
        let swa_head_dim = f.usize("swa_head_dim")?.unwrap_or(head_dim);
        (
            heads,
            f.usize("swa_num_key_value_heads")?
                .unwrap_or(c.num_kv_heads),
            swa_head_dim,
            f.usize("swa_v_head_dim")?.unwrap_or(v_head_dim),
        )
    } else {
        let kv = c
            .num_kv_heads
            .checked_mul(2)
            .ok_or_else(|| Error::config("num_key_value_heads overflows"))?;
        (c.num_heads, kv, head_dim, v_head_dim)
    };
    let (full_rope, swa_rope) = mimo_ropes(f, c.max_position_embeddings)?;
    let bias = f.bool("attention_bias")?.unwrap_or(false);
    let value_scale = match f.raw("attention_value_scale") {
        // Present but null: no scaling; absent: transformers' default.
        None if f.is_null("attention_value_scale") => 1.0,
        None => 0.707,
        Some(_) => f.f64("attention_value_scale")?.unwrap_or(1.0),
    };
    let swa_sinks = f.bool("add_swa_attention_sink_bias")?.unwrap_or(true);
    let full_sinks = f.bool("add_full_attention_sink_bias")?.unwrap_or(false);
    let layers = flags
        .into_iter()
        .map(|swa| {
            let (heads, kv, hd, vd, rope, sinks) = if swa {
                (
                    swa_heads,
                    swa_kv_heads,
                    swa_head_dim,
                    swa_v_head_dim,
                    swa_rope,
                    swa_sinks,
                )
            } else {
                (
                    c.num_heads,
                    c.num_kv_heads,
                    head_dim,
                    v_head_dim,
                    full_rope,
                    full_sinks,
                )
            };
            AttentionConfig {
                num_heads: heads,
                num_kv_heads: kv,
                head_dim: hd,
                v_head_dim: vd,
                window: swa.then_some(window),
                rope: rope.for_head(hd),
                qkv_bias: bias,
                o_bias: false,
                qk_norm: false,
                sinks,
                softmax_scale: (hd as f64).powf(-0.5),
                value_scale,
                logit_softcap: None,
            }
        })
        .collect();
    let eps = match f.f64("rms_norm_eps")? {
        Some(e) => e,
        None => f.f64("layernorm_epsilon")?.unwrap_or(1e-5),
    };
    Ok(DecoderConfig {
        family: Family::MiMoV2Flash,
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        intermediate_size: c.intermediate_size,
        rms_norm_eps: eps,
        norm_weight_offset: 0.0,
        activation: activation(f, "hidden_act", "silu")?,
        mlp_bias: false,
        tie_word_embeddings: tie(f, f, false)?,
        embed_scale: None,
        sandwich_norms: false,
        final_logit_softcap: None,
        layers,
        max_position_embeddings: c.max_position_embeddings,
        bos_token_id: c.bos_token_id,
        eos_token_ids: c.eos_token_ids,
        key_prefixes: Vec::new(),
        // The multi-token-prediction layers are read separately.
        dropped_prefixes: vec!["model.mtp.".into()],
    })
}

/// MiMo-V2-Flash (full, window) RoPE.
fn mimo_ropes(f: &Fields, max_positions: usize) -> Result<(RopeParams, RopeParams)> {
    let partial = f.f64("partial_rotary_factor")?.unwrap_or(0.334);
    let full_theta = f.f64("rope_theta")?.unwrap_or(5_000_000.0);
    let swa_theta = f.f64("swa_rope_theta")?.unwrap_or(10_000.0);
    if let Some(nested) = nested_rope(f)? {
        let full = match nested.object("full_attention")? {
            Some(d) => rope_dict(&d, full_theta, partial, max_positions)?,
            None => RopeParams {
                partial_rotary_factor: partial,
                ..plain_rope(full_theta)
            },
        };
        let swa = match nested.object("sliding_attention")? {
            Some(d) => rope_dict(&d, swa_theta, partial, max_positions)?,
            None => RopeParams {
                partial_rotary_factor: partial,
                ..plain_rope(swa_theta)
            },
        };
        return Ok((full, swa));
    }
    check_partial(partial)?;
    let full = match f.object("rope_scaling")? {
        Some(d) => rope_dict(&d, full_theta, partial, max_positions)?,
        None => RopeParams {
            partial_rotary_factor: partial,
            ..plain_rope(full_theta)
        },
    };
    let swa = RopeParams {
        partial_rotary_factor: partial,
        ..plain_rope(swa_theta)
    };
    Ok((full, swa))
}

/// Dense layers only for now: a config that routes any layer to experts is refused.
fn reject_moe(f: &Fields, num_layers: usize) -> Result<()> {
    let sparse_layer = if let Some(types) = f.strings("mlp_layer_types")? {
        types.iter().position(|t| *t != "dense")
    } else if let Some(freq) = f.ints("moe_layer_freq")? {
        freq.iter().position(|&x| x != 0)
    } else if num_layers > 1 {
        // transformers' default: the first layer dense, the rest mixture-of-experts.
        Some(1)
    } else {
        None
    };
    match sparse_layer {
        Some(i) => Err(Error::config(format!(
            "layer {i} is a mixture-of-experts layer; only dense MLP layers are supported so far"
        ))),
        None => Ok(()),
    }
}
