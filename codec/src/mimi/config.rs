//! Mimi's `config.json` as transformers' `MimiConfig` reads it (kyutai/mimi ships it in that
//! layout), its derived rates, and its checks.

use serde::Serialize;
use serde_json::Value;
use tessera_core::config::{check_elems, check_finite, check_range};
use tessera_core::{Error, Result};

use super::transformer::{Activation, TransformerSpec};
use crate::hf_config::{Object, field, object, optional};
use crate::seanet::{ConvNorm, MAX_CHANNELS, PadMode, SeanetConfig, check_geometry};

/// The fields of transformers' `MimiConfig`; absent keys take its defaults (those of
/// kyutai/mimi). Generic keys (`architectures`, `torch_dtype`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MimiConfig {
    pub sampling_rate: u32,
    /// Code frames per second as the config states it (`frame_rate`, or `_frame_rate` as
    /// newer transformers save it); `None`: `sampling_rate / (2 * hop)`.
    pub frame_rate: Option<f64>,
    pub audio_channels: usize,
    pub hidden_size: usize,
    pub num_filters: usize,
    pub num_residual_layers: usize,
    pub upsampling_ratios: Vec<usize>,
    pub kernel_size: usize,
    pub last_kernel_size: usize,
    pub residual_kernel_size: usize,
    pub dilation_growth_rate: usize,
    pub use_causal_conv: bool,
    pub pad_mode: String,
    pub compress: usize,
    pub trim_right_ratio: f64,
    pub codebook_size: usize,
    pub codebook_dim: usize,
    pub num_quantizers: usize,
    pub use_conv_shortcut: bool,
    pub vector_quantization_hidden_dimension: usize,
    pub num_semantic_quantizers: usize,
    pub upsample_groups: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub hidden_act: String,
    pub norm_eps: f64,
    pub rope_theta: f64,
    /// Frames a transformer query sees, itself included.
    pub sliding_window: usize,
    pub attention_bias: bool,
}

impl Default for MimiConfig {
    fn default() -> Self {
        Self::mimi()
    }
}

/// Limits no real Mimi comes near; they keep a broken config from allocating absurd sizes.
const MAX_KERNEL: usize = 1 << 10;
const MAX_PARAMS: u64 = 1 << 31;

/// Codebooks that Moshi and most Mimi users keep (of the 32 the checkpoint has).
pub const MIMI_DEFAULT_N_Q: usize = 8;

impl MimiConfig {
    /// kyutai/mimi: 24 kHz mono, 12.5 codes per second, 32 codebooks of 2048 (1 semantic).
    pub fn mimi() -> Self {
        MimiConfig {
            sampling_rate: 24_000,
            frame_rate: Some(12.5),
            audio_channels: 1,
            hidden_size: 512,
            num_filters: 64,
            num_residual_layers: 1,
            upsampling_ratios: vec![8, 6, 5, 4],
            kernel_size: 7,
            last_kernel_size: 3,
            residual_kernel_size: 3,
            dilation_growth_rate: 2,
            use_causal_conv: true,
            pad_mode: "constant".into(),
            compress: 2,
            trim_right_ratio: 1.0,
            codebook_size: 2048,
            codebook_dim: 256,
            num_quantizers: 32,
            use_conv_shortcut: false,
            vector_quantization_hidden_dimension: 256,
            num_semantic_quantizers: 1,
            upsample_groups: 512,
            num_hidden_layers: 8,
            intermediate_size: 2048,
            num_attention_heads: 8,
            num_key_value_heads: 8,
            head_dim: 64,
            hidden_act: "gelu".into(),
            norm_eps: 1e-5,
            rope_theta: 10_000.0,
            sliding_window: 250,
            attention_bias: false,
        }
    }

    /// Read a parsed `config.json` as `MimiConfig(**config)` does; values are checked by
    /// [`Self::validate`].
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj = object(value, "mimi")?;
        let d = Self::mimi();
        let hidden_size: usize = field(obj, "hidden_size", d.hidden_size)?;
        let heads: usize = field(obj, "num_attention_heads", d.num_attention_heads)?;
        // `upsampling_ratios or [8, 6, 5, 4]`, `head_dim or hidden_size // num_attention_heads`,
        // and `codebook_dim` 256 when absent but `hidden_size` when null, as `MimiConfig` has it.
        let ratios: Option<Vec<usize>> = optional(obj, "upsampling_ratios")?;
        let head_dim: Option<usize> = optional(obj, "head_dim")?;
        let frame_rate = match optional::<f64>(obj, "frame_rate")? {
            Some(r) => Some(r),
            None => optional(obj, "_frame_rate")?,
        };
        Ok(MimiConfig {
            sampling_rate: field(obj, "sampling_rate", d.sampling_rate)?,
            frame_rate,
            audio_channels: field(obj, "audio_channels", d.audio_channels)?,
            hidden_size,
            num_filters: field(obj, "num_filters", d.num_filters)?,
            num_residual_layers: field(obj, "num_residual_layers", d.num_residual_layers)?,
            upsampling_ratios: ratios
                .filter(|r| !r.is_empty())
                .unwrap_or(d.upsampling_ratios),
            kernel_size: field(obj, "kernel_size", d.kernel_size)?,
            last_kernel_size: field(obj, "last_kernel_size", d.last_kernel_size)?,
            residual_kernel_size: field(obj, "residual_kernel_size", d.residual_kernel_size)?,
            dilation_growth_rate: field(obj, "dilation_growth_rate", d.dilation_growth_rate)?,
            use_causal_conv: field(obj, "use_causal_conv", d.use_causal_conv)?,
            pad_mode: field(obj, "pad_mode", d.pad_mode)?,
            compress: field(obj, "compress", d.compress)?,
            trim_right_ratio: field(obj, "trim_right_ratio", d.trim_right_ratio)?,
            codebook_size: field(obj, "codebook_size", d.codebook_size)?,
            codebook_dim: match obj.get("codebook_dim") {
                None => d.codebook_dim,
                Some(_) => optional(obj, "codebook_dim")?.unwrap_or(hidden_size),
            },
            num_quantizers: field(obj, "num_quantizers", d.num_quantizers)?,
            use_conv_shortcut: field(obj, "use_conv_shortcut", d.use_conv_shortcut)?,
            vector_quantization_hidden_dimension: field(
                obj,
                "vector_quantization_hidden_dimension",
                d.vector_quantization_hidden_dimension,
            )?,
            num_semantic_quantizers: field(
                obj,
                "num_semantic_quantizers",
                d.num_semantic_quantizers,
            )?,
            upsample_groups: field(obj, "upsample_groups", d.upsample_groups)?,
            num_hidden_layers: field(obj, "num_hidden_layers", d.num_hidden_layers)?,
            intermediate_size: field(obj, "intermediate_size", d.intermediate_size)?,
            num_attention_heads: heads,
            num_key_value_heads: field(obj, "num_key_value_heads", d.num_key_value_heads)?,
            head_dim: head_dim
                .filter(|&h| h > 0)
                .unwrap_or(hidden_size / heads.max(1)),
            hidden_act: field(obj, "hidden_act", d.hidden_act)?,
            norm_eps: field(obj, "norm_eps", d.norm_eps)?,
            rope_theta: rope_theta(obj, d.rope_theta)?,
            sliding_window: field(obj, "sliding_window", d.sliding_window)?,
            attention_bias: field(obj, "attention_bias", d.attention_bias)?,
        })
    }

    /// Samples per SEANet frame (the product of the ratios).
    pub fn hop_length(&self) -> usize {
        self.upsampling_ratios.iter().product()
    }

    /// SEANet frames per second as transformers counts them: `ceil(sampling_rate / hop)`.
    pub fn encodec_frame_rate(&self) -> usize {
        (self.sampling_rate as usize).div_ceil(self.hop_length())
    }

    /// The code frame rate the config states (see [`Self::frame_rate`]'s field).
    fn stated_frame_rate(&self) -> f64 {
        self.frame_rate
            .unwrap_or(self.sampling_rate as f64 / (2 * self.hop_length()) as f64)
    }

    /// Whether learned down/upsampling convs sit between the SEANet and the quantizer (when the
    /// stated frame rate differs from the SEANet's).
    pub fn has_resampling(&self) -> bool {
        self.stated_frame_rate() != self.encodec_frame_rate() as f64
    }

    /// SEANet frames per code frame: `int(encodec_frame_rate / frame_rate)`.
    pub fn latent_stride(&self) -> usize {
        let r = self.encodec_frame_rate() as f64 / self.stated_frame_rate();
        if r.is_finite() && r >= 0.0 {
            r.min(u32::MAX as f64) as usize
        } else {
            0
        }
    }

    /// Samples per code frame (1920 for kyutai/mimi): chunks of streams are best multiples of it.
    pub fn frame_size(&self) -> usize {
        self.hop_length() * self.latent_stride()
    }

    /// Code frames per second, as the model actually produces them.
    pub fn code_frame_rate(&self) -> f64 {
        self.sampling_rate as f64 / self.frame_size() as f64
    }

    /// The codebooks kept when none is asked for: 8, as Moshi uses, or all if fewer.
    pub fn default_n_q(&self) -> usize {
        MIMI_DEFAULT_N_Q.min(self.num_quantizers)
    }

    pub(crate) fn seanet(&self) -> Result<SeanetConfig> {
        Ok(SeanetConfig {
            channels: self.audio_channels,
            dimension: self.hidden_size,
            n_filters: self.num_filters,
            n_residual_layers: self.num_residual_layers,
            ratios: self.upsampling_ratios.clone(),
            kernel_size: self.kernel_size,
            last_kernel_size: self.last_kernel_size,
            residual_kernel_size: self.residual_kernel_size,
            dilation_base: self.dilation_growth_rate,
            causal: self.use_causal_conv,
            pad_mode: PadMode::parse(&self.pad_mode)?,
            compress: self.compress,
            lstm_layers: 0,
            trim_right_ratio: self.trim_right_ratio,
            conv_shortcut: self.use_conv_shortcut,
            norm: ConvNorm::None,
        })
    }

    pub(crate) fn transformer(&self) -> Result<TransformerSpec> {
        Ok(TransformerSpec {
            layers: self.num_hidden_layers,
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            rope_theta: self.rope_theta,
            window: Some(self.sliding_window),
            norm_eps: self.norm_eps,
            bias: self.attention_bias,
            activation: Activation::parse(&self.hidden_act).ok_or_else(|| {
                Error::config(format!(
                    "hidden_act = '{}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, \
                     relu, silu)",
                    self.hidden_act
                ))
            })?,
        })
    }

    /// Check every value before anything is allocated; errors name the field.
    pub fn validate(&self) -> Result<()> {
        check_range("sampling_rate", self.sampling_rate, 1000, 384_000)?;
        check_range("audio_channels", self.audio_channels, 1, 2)?;
        check_range("hidden_size", self.hidden_size, 1, MAX_CHANNELS)?;
        check_range("num_filters", self.num_filters, 1, MAX_CHANNELS)?;
        check_range("num_residual_layers", self.num_residual_layers, 0, 16)?;
        check_range("kernel_size", self.kernel_size, 1, MAX_KERNEL)?;
        check_range("last_kernel_size", self.last_kernel_size, 1, MAX_KERNEL)?;
        check_range(
            "residual_kernel_size",
            self.residual_kernel_size,
            1,
            MAX_KERNEL,
        )?;
        check_range("dilation_growth_rate", self.dilation_growth_rate, 1, 64)?;
        check_range("compress", self.compress, 1, MAX_CHANNELS)?;
        check_finite("trim_right_ratio", self.trim_right_ratio, 0.0, 1.0)?;
        if !self.use_causal_conv && self.trim_right_ratio != 1.0 {
            return Err(Error::config(
                "trim_right_ratio != 1.0 only makes sense for causal convolutions \
                 (MimiModel refuses it)",
            ));
        }
        PadMode::parse(&self.pad_mode)?;
        let inner = check_geometry(
            &self.upsampling_ratios,
            self.num_filters,
            self.compress,
            self.dilation_growth_rate,
            self.num_residual_layers,
        )?;
        if let Some(r) = self.frame_rate {
            check_finite("frame_rate", r, 1e-3, 1e5)?;
        }
        if !self.has_resampling() {
            return Err(Error::config(format!(
                "frame_rate = {} is the SEANet's own rate: transformers' MimiModel cannot run a \
                 model without its down/upsampling convs",
                self.stated_frame_rate()
            )));
        }
        check_range(
            "latent stride (encodec_frame_rate / frame_rate)",
            self.latent_stride(),
            1,
            64,
        )?;
        check_range("upsample_groups", self.upsample_groups, 1, self.hidden_size)?;
        if !self.hidden_size.is_multiple_of(self.upsample_groups) {
            return Err(Error::config(format!(
                "upsample_groups = {} does not divide hidden_size = {}",
                self.upsample_groups, self.hidden_size
            )));
        }
        // Quantizer.
        check_range("codebook_size", self.codebook_size, 2, 1 << 20)?;
        if !self.codebook_size.is_power_of_two() {
            return Err(Error::config(format!(
                "codebook_size = {} must be a power of 2 (as MimiConfig requires)",
                self.codebook_size
            )));
        }
        check_range("num_quantizers", self.num_quantizers, 2, 1024)?;
        check_range(
            "num_semantic_quantizers",
            self.num_semantic_quantizers,
            1,
            self.num_quantizers - 1,
        )?;
        check_range(
            "vector_quantization_hidden_dimension",
            self.vector_quantization_hidden_dimension,
            1,
            MAX_CHANNELS,
        )?;
        if self.codebook_dim != self.vector_quantization_hidden_dimension {
            return Err(Error::config(format!(
                "codebook_dim = {} but the codebooks are searched in \
                 vector_quantization_hidden_dimension = {} dimensions; they must be equal",
                self.codebook_dim, self.vector_quantization_hidden_dimension
            )));
        }
        // Transformers.
        check_range("num_hidden_layers", self.num_hidden_layers, 0, 128)?;
        check_range("intermediate_size", self.intermediate_size, 1, 1 << 16)?;
        check_range("num_attention_heads", self.num_attention_heads, 1, 256)?;
        check_range(
            "num_key_value_heads",
            self.num_key_value_heads,
            1,
            self.num_attention_heads,
        )?;
        check_range("head_dim", self.head_dim, 2, 1024)?;
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::config(format!(
                "head_dim = {} must be even for rotary embeddings",
                self.head_dim
            )));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(format!(
                "hidden_size = {} must be divisible by num_attention_heads = {} (MimiAttention \
                 requires it)",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(Error::config(format!(
                "num_attention_heads = {} is not a multiple of num_key_value_heads = {}",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        check_finite("norm_eps", self.norm_eps, 0.0, 1.0)?;
        check_finite("rope_theta", self.rope_theta, 1.0, 1e12)?;
        check_range("sliding_window", self.sliding_window, 1, 1 << 20)?;
        self.transformer()?;
        self.check_param_count(inner)
    }

    fn check_param_count(&self, inner: usize) -> Result<()> {
        let mut total: u64 = 0;
        let mut add = |what: &str, dims: &[usize]| -> Result<()> {
            total = total.saturating_add(check_elems(what, dims, MAX_PARAMS)?);
            Ok(())
        };
        let k = self.kernel_size.max(self.last_kernel_size);
        let mut d = self.num_filters;
        for &r in &self.upsampling_ratios {
            let res = self.num_residual_layers * 2;
            add(
                "residual convs",
                &[res, d, d, self.residual_kernel_size + 1],
            )?;
            add("resampling convs", &[2, 2 * d, d, 2 * r])?;
            d *= 2;
        }
        let wide = inner.max(self.hidden_size);
        add("outer convs", &[4, wide, wide, k])?;
        add(
            "down/upsampling",
            &[
                2,
                self.hidden_size,
                self.hidden_size,
                2 * self.latent_stride(),
            ],
        )?;
        let attn = self.num_attention_heads.max(self.num_key_value_heads) * self.head_dim;
        add(
            "attention",
            &[2 * 4 * self.num_hidden_layers, self.hidden_size, attn],
        )?;
        add(
            "mlp",
            &[
                2 * 2 * self.num_hidden_layers,
                self.hidden_size,
                self.intermediate_size,
            ],
        )?;
        add(
            "codebooks",
            &[self.num_quantizers, self.codebook_size, self.codebook_dim],
        )?;
        if total > MAX_PARAMS {
            return Err(Error::config(format!(
                "this config describes about {total} parameters, more than any Mimi ({MAX_PARAMS})"
            )));
        }
        Ok(())
    }
}

/// `rope_theta`, or `rope_parameters.rope_theta` as newer transformers write it (default RoPE
/// only).
fn rope_theta(obj: &Object, default: f64) -> Result<f64> {
    if let Some(params) = obj.get("rope_parameters").filter(|v| !v.is_null()) {
        let params = params
            .as_object()
            .ok_or_else(|| Error::config(format!("rope_parameters = {params}: not an object")))?;
        let kind: String = field(params, "rope_type", "default".to_string())?;
        if kind != "default" {
            return Err(Error::config(format!(
                "rope_parameters.rope_type = '{kind}' is not supported (only default RoPE)"
            )));
        }
        if params.contains_key("rope_theta") {
            return field(params, "rope_theta", default)
                .map_err(|e| Error::config(format!("rope_parameters.{e}")));
        }
    }
    field(obj, "rope_theta", default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_config_derives_like_the_reference() {
        let c = MimiConfig::mimi();
        c.validate().unwrap();
        assert_eq!(c.hop_length(), 960);
        assert_eq!(c.encodec_frame_rate(), 25);
        assert!(c.has_resampling());
        assert_eq!(c.latent_stride(), 2);
        assert_eq!(c.frame_size(), 1920);
        assert_eq!(c.code_frame_rate(), 12.5);
        assert_eq!(c.default_n_q(), 8);
    }

    #[test]
    fn hub_and_saved_configs_parse() {
        // kyutai/mimi's config.json.
        let hub = r#"{"architectures": ["MimiModel"], "attention_dropout": 0.0,
            "audio_channels": 1, "codebook_dim": 256, "codebook_size": 2048, "compress": 2,
            "dilation_growth_rate": 2, "frame_rate": 12.5, "head_dim": 64, "hidden_act": "gelu",
            "hidden_size": 512, "initializer_range": 0.02, "intermediate_size": 2048,
            "kernel_size": 7, "last_kernel_size": 3, "layer_scale_initial_scale": 0.01,
            "max_position_embeddings": 8000, "model_type": "mimi", "norm_eps": 1e-05,
            "normalize": false, "num_attention_heads": 8, "num_filters": 64,
            "num_hidden_layers": 8, "num_key_value_heads": 8, "num_residual_layers": 1,
            "num_semantic_quantizers": 1, "pad_mode": "constant", "residual_kernel_size": 3,
            "rope_theta": 10000.0, "sampling_rate": 24000, "sliding_window": 250,
            "torch_dtype": "float32", "transformers_version": "4.45.0.dev0",
            "trim_right_ratio": 1.0, "upsample_groups": 512, "upsampling_ratios": [8, 6, 5, 4],
            "use_cache": false, "use_causal_conv": true, "use_conv_shortcut": false,
            "vector_quantization_hidden_dimension": 256}"#;
        let c = MimiConfig::from_json(&serde_json::from_str(hub).unwrap()).unwrap();
        assert_eq!(c, MimiConfig::mimi());
        // As transformers 5 saves it: `_frame_rate`, `rope_parameters`, nulls.
        let saved = serde_json::json!({"_frame_rate": 25, "rope_parameters":
            {"rope_theta": 500.0, "rope_type": "default"}, "head_dim": null,
            "upsampling_ratios": null, "codebook_dim": null,
            "vector_quantization_hidden_dimension": 512});
        let c = MimiConfig::from_json(&saved).unwrap();
        assert_eq!(c.frame_rate, Some(25.0));
        assert!(!c.has_resampling());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("frame_rate = 25"), "{e}");
        assert_eq!(c.rope_theta, 500.0);
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.codebook_dim, 512);
        assert_eq!(c.upsampling_ratios, [8, 6, 5, 4]);
        // Without a stated frame rate: sampling_rate / (2 * hop).
        let c = MimiConfig::from_json(&serde_json::json!({"sampling_rate": 24000})).unwrap();
        assert_eq!(c.frame_rate, None);
        assert_eq!(c.latent_stride(), 2);
        let e = MimiConfig::from_json(&serde_json::json!({"rope_parameters":
            {"rope_type": "yarn"}}))
        .unwrap_err()
        .to_string();
        assert!(e.contains("yarn"), "{e}");
        let e = MimiConfig::from_json(&serde_json::json!({"model_type": "encodec"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("model_type"), "{e}");
    }

    #[test]
    fn absurd_values_are_refused() {
        let bad = |f: &dyn Fn(&mut MimiConfig), needle: &str| {
            let mut c = MimiConfig::mimi();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(&|c| c.sampling_rate = 0, "sampling_rate");
        bad(
            &|c| c.num_semantic_quantizers = 32,
            "num_semantic_quantizers",
        );
        bad(
            &|c| c.num_semantic_quantizers = 0,
            "num_semantic_quantizers",
        );
        bad(&|c| c.codebook_size = 2000, "power of 2");
        bad(&|c| c.codebook_dim = 128, "codebook_dim");
        bad(&|c| c.upsample_groups = 7, "upsample_groups");
        bad(
            &|c| {
                c.num_attention_heads = 3;
                c.num_key_value_heads = 3;
            },
            "divisible by num_attention_heads",
        );
        bad(&|c| c.num_key_value_heads = 3, "num_key_value_heads");
        bad(&|c| c.head_dim = 63, "head_dim");
        bad(&|c| c.hidden_act = "tanh".into(), "hidden_act");
        bad(&|c| c.sliding_window = 0, "sliding_window");
        bad(&|c| c.frame_rate = Some(f64::NAN), "frame_rate");
        bad(&|c| c.frame_rate = Some(0.1), "latent stride");
        bad(&|c| c.rope_theta = f64::INFINITY, "rope_theta");
        bad(&|c| c.upsampling_ratios = vec![64; 8], "hop length");
        bad(
            &|c| {
                c.num_hidden_layers = 128;
                c.intermediate_size = 65536;
            },
            "more than",
        );
        bad(&|c| c.pad_mode = "wrap".into(), "pad_mode");
    }
}
