//! EnCodec's `config.json` as transformers' `EncodecConfig` reads it, its derived quantities
//! (frame rate, quantizer count, bandwidth to codebooks, chunking) and its checks.

use serde::Serialize;
use serde_json::Value;
use tessera_core::config::{check_elems, check_finite, check_range};
use tessera_core::{Error, Result};

use crate::hf_config::{field, object, optional, py_floordiv};
use crate::seanet::{ConvNorm, MAX_CHANNELS, PadMode, SeanetConfig, check_geometry};

/// The fields of transformers' `EncodecConfig`; absent keys take its defaults (those of
/// facebook/encodec_24khz). Generic keys (`architectures`, `torch_dtype`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EncodecConfig {
    /// kbps, in the order the config lists them; `encode` accepts exactly these.
    pub target_bandwidths: Vec<f64>,
    pub sampling_rate: u32,
    pub audio_channels: usize,
    /// Scale each chunk to unit RMS before encoding (the scale travels with the codes).
    pub normalize: bool,
    /// Encode in chunks of this many seconds (`None`: the whole signal at once).
    pub chunk_length_s: Option<f64>,
    /// Share of a chunk that overlaps the next one.
    pub overlap: Option<f64>,
    pub hidden_size: usize,
    pub num_filters: usize,
    pub num_residual_layers: usize,
    pub upsampling_ratios: Vec<usize>,
    /// `weight_norm` or `time_group_norm`.
    pub norm_type: String,
    pub kernel_size: usize,
    pub last_kernel_size: usize,
    pub residual_kernel_size: usize,
    pub dilation_growth_rate: usize,
    pub use_causal_conv: bool,
    pub pad_mode: String,
    pub compress: usize,
    pub num_lstm_layers: usize,
    pub trim_right_ratio: f64,
    pub codebook_size: usize,
    /// `None`: `hidden_size`.
    pub codebook_dim: Option<usize>,
    pub use_conv_shortcut: bool,
}

impl Default for EncodecConfig {
    fn default() -> Self {
        Self::encodec_24khz()
    }
}

/// Limits no real EnCodec comes near; they keep a broken config from allocating absurd sizes.
const MAX_KERNEL: usize = 1 << 10;
const MAX_PARAMS: u64 = 1 << 31;
const MAX_QUANTIZERS: usize = 1 << 10;

impl EncodecConfig {
    /// facebook/encodec_24khz: mono, causal, 75 Hz, 1.5-24 kbps (2-32 codebooks of 1024).
    pub fn encodec_24khz() -> Self {
        EncodecConfig {
            target_bandwidths: vec![1.5, 3.0, 6.0, 12.0, 24.0],
            sampling_rate: 24_000,
            audio_channels: 1,
            normalize: false,
            chunk_length_s: None,
            overlap: None,
            hidden_size: 128,
            num_filters: 32,
            num_residual_layers: 1,
            upsampling_ratios: vec![8, 5, 4, 2],
            norm_type: "weight_norm".into(),
            kernel_size: 7,
            last_kernel_size: 7,
            residual_kernel_size: 3,
            dilation_growth_rate: 2,
            use_causal_conv: true,
            pad_mode: "reflect".into(),
            compress: 2,
            num_lstm_layers: 2,
            trim_right_ratio: 1.0,
            codebook_size: 1024,
            codebook_dim: None,
            use_conv_shortcut: true,
        }
    }

    /// facebook/encodec_48khz: stereo, non-causal, group norm, normalised 1 s chunks with 1%
    /// overlap, 3-24 kbps.
    pub fn encodec_48khz() -> Self {
        EncodecConfig {
            target_bandwidths: vec![3.0, 6.0, 12.0, 24.0],
            sampling_rate: 48_000,
            audio_channels: 2,
            normalize: true,
            chunk_length_s: Some(1.0),
            overlap: Some(0.01),
            norm_type: "time_group_norm".into(),
            use_causal_conv: false,
            ..Self::encodec_24khz()
        }
    }

    /// Read a parsed `config.json`; values are checked by [`Self::validate`].
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj = object(value, "encodec")?;
        let d = Self::encodec_24khz();
        Ok(EncodecConfig {
            target_bandwidths: field(obj, "target_bandwidths", d.target_bandwidths)?,
            sampling_rate: field(obj, "sampling_rate", d.sampling_rate)?,
            audio_channels: field(obj, "audio_channels", d.audio_channels)?,
            normalize: field(obj, "normalize", d.normalize)?,
            chunk_length_s: optional(obj, "chunk_length_s")?,
            overlap: optional(obj, "overlap")?,
            hidden_size: field(obj, "hidden_size", d.hidden_size)?,
            num_filters: field(obj, "num_filters", d.num_filters)?,
            num_residual_layers: field(obj, "num_residual_layers", d.num_residual_layers)?,
            upsampling_ratios: field(obj, "upsampling_ratios", d.upsampling_ratios)?,
            norm_type: field(obj, "norm_type", d.norm_type)?,
            kernel_size: field(obj, "kernel_size", d.kernel_size)?,
            last_kernel_size: field(obj, "last_kernel_size", d.last_kernel_size)?,
            residual_kernel_size: field(obj, "residual_kernel_size", d.residual_kernel_size)?,
            dilation_growth_rate: field(obj, "dilation_growth_rate", d.dilation_growth_rate)?,
            use_causal_conv: field(obj, "use_causal_conv", d.use_causal_conv)?,
            pad_mode: field(obj, "pad_mode", d.pad_mode)?,
            compress: field(obj, "compress", d.compress)?,
            num_lstm_layers: field(obj, "num_lstm_layers", d.num_lstm_layers)?,
            trim_right_ratio: field(obj, "trim_right_ratio", d.trim_right_ratio)?,
            codebook_size: field(obj, "codebook_size", d.codebook_size)?,
            codebook_dim: optional(obj, "codebook_dim")?,
            use_conv_shortcut: field(obj, "use_conv_shortcut", d.use_conv_shortcut)?,
        })
    }

    /// Samples per frame (the product of the ratios).
    pub fn hop_length(&self) -> usize {
        self.upsampling_ratios.iter().product()
    }

    /// Frames per second as the reference counts them: `ceil(sampling_rate / hop_length)`.
    pub fn frame_rate(&self) -> usize {
        (self.sampling_rate as usize).div_ceil(self.hop_length())
    }

    /// `ceil(log2(codebook_size))`.
    pub fn codebook_nbits(&self) -> u32 {
        self.codebook_size.next_power_of_two().trailing_zeros()
    }

    /// Codebooks in the checkpoint: what the last listed bandwidth needs,
    /// `1000 * target_bandwidths[-1] // (frame_rate * codebook_nbits)`.
    pub fn num_quantizers(&self) -> usize {
        let Some(&last) = self.target_bandwidths.last() else {
            return 0;
        };
        let per_q = (self.frame_rate() as u64 * self.codebook_nbits() as u64) as f64;
        let n = py_floordiv(1000.0 * last, per_q);
        if n.is_finite() && n > 0.0 {
            n.min(u32::MAX as f64) as usize
        } else {
            0
        }
    }

    /// Codebooks used at `kbps`, which must be one of `target_bandwidths` (as the reference
    /// requires): `max(1, floor(1000 kbps / (log2(codebook_size) * frame_rate)))`, at most
    /// [`Self::num_quantizers`].
    pub fn n_q_for_bandwidth(&self, kbps: f64) -> Result<usize> {
        if !self.target_bandwidths.contains(&kbps) {
            return Err(Error::invalid(format!(
                "this EnCodec model has no bandwidth of {kbps} kbps; choose one of {:?}",
                self.target_bandwidths
            )));
        }
        let per_q = (self.codebook_size as f64).log2() * self.frame_rate() as f64;
        let n = (kbps * 1000.0 / per_q).floor().max(1.0);
        Ok((n as usize).min(self.num_quantizers()))
    }

    /// The bitrate of `n_q` codebooks, in kbps.
    pub fn bandwidth_for_n_q(&self, n_q: usize) -> f64 {
        n_q as f64 * (self.codebook_size as f64).log2() * self.frame_rate() as f64 / 1000.0
    }

    /// Codebooks the reference uses when no bandwidth is given: those of the first listed one.
    pub fn default_n_q(&self) -> usize {
        self.target_bandwidths
            .first()
            .and_then(|&bw| self.n_q_for_bandwidth(bw).ok())
            .unwrap_or(1)
    }

    /// Samples per chunk, `int(chunk_length_s * sampling_rate)`, when the model chunks.
    pub fn chunk_length(&self) -> Option<usize> {
        self.chunk_length_s
            .map(|s| (s * self.sampling_rate as f64) as usize)
    }

    /// Samples between chunk starts, `max(1, int((1 - overlap) * chunk_length))`, when the
    /// model chunks (the reference chunks only when both `chunk_length_s` and `overlap` are set;
    /// with `overlap` unset it refuses signals longer than one chunk).
    pub fn chunk_stride(&self) -> Option<usize> {
        match (self.chunk_length(), self.overlap) {
            (Some(len), Some(overlap)) => Some((((1.0 - overlap) * len as f64) as usize).max(1)),
            _ => None,
        }
    }

    pub fn codebook_dim(&self) -> usize {
        self.codebook_dim.unwrap_or(self.hidden_size)
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
            lstm_layers: self.num_lstm_layers,
            trim_right_ratio: self.trim_right_ratio,
            conv_shortcut: self.use_conv_shortcut,
            norm: match self.norm_type.as_str() {
                "weight_norm" => ConvNorm::None,
                "time_group_norm" => ConvNorm::TimeGroupNorm,
                other => {
                    return Err(Error::config(format!(
                        "norm_type = '{other}' (expected weight_norm or time_group_norm)"
                    )));
                }
            },
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
        check_range("num_lstm_layers", self.num_lstm_layers, 1, 16)?;
        check_finite("trim_right_ratio", self.trim_right_ratio, 0.0, 1.0)?;
        check_range("codebook_size", self.codebook_size, 2, 1 << 20)?;
        if !self.codebook_size.is_power_of_two() {
            return Err(Error::config(format!(
                "codebook_size = {} must be a power of 2 (as EncodecModel requires)",
                self.codebook_size
            )));
        }
        if self.codebook_dim() != self.hidden_size {
            return Err(Error::config(format!(
                "codebook_dim = {} but the encoder emits hidden_size = {} channels; EnCodec's \
                 quantizer has no projection, so they must be equal",
                self.codebook_dim(),
                self.hidden_size
            )));
        }
        let inner = check_geometry(
            &self.upsampling_ratios,
            self.num_filters,
            self.compress,
            self.dilation_growth_rate,
            self.num_residual_layers,
        )?;
        match self.norm_type.as_str() {
            "weight_norm" | "time_group_norm" => {}
            other => {
                return Err(Error::config(format!(
                    "norm_type = '{other}' (expected weight_norm or time_group_norm)"
                )));
            }
        }
        PadMode::parse(&self.pad_mode)?;
        if !self.use_causal_conv && self.trim_right_ratio != 1.0 {
            return Err(Error::config(
                "trim_right_ratio != 1.0 only makes sense for causal convolutions \
                 (EncodecModel refuses it)",
            ));
        }
        if self.target_bandwidths.is_empty() || self.target_bandwidths.len() > 64 {
            return Err(Error::config(format!(
                "target_bandwidths has {} entries (expected 1..=64)",
                self.target_bandwidths.len()
            )));
        }
        for (i, &bw) in self.target_bandwidths.iter().enumerate() {
            check_finite(&format!("target_bandwidths[{i}]"), bw, 1e-3, 1e4)?;
        }
        let n_q = self.num_quantizers();
        if n_q == 0 || n_q > MAX_QUANTIZERS {
            return Err(Error::config(format!(
                "target_bandwidths[-1] = {} kbps gives {n_q} codebooks at {} frames/s of {} bits \
                 (expected 1..={MAX_QUANTIZERS})",
                self.target_bandwidths[self.target_bandwidths.len() - 1],
                self.frame_rate(),
                self.codebook_nbits()
            )));
        }
        if let Some(s) = self.chunk_length_s {
            check_finite("chunk_length_s", s, 1e-3, 3600.0)?;
            let len = self.chunk_length().unwrap_or(0);
            if len == 0 {
                return Err(Error::config(format!(
                    "chunk_length_s = {s} is less than one sample"
                )));
            }
        }
        if let Some(o) = self.overlap {
            check_finite("overlap", o, 0.0, 0.99)?;
        }
        self.check_param_count(inner, n_q)
    }

    fn check_param_count(&self, inner: usize, n_q: usize) -> Result<()> {
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
        add(
            "outer convs",
            &[
                4,
                inner.max(self.hidden_size),
                inner.max(self.hidden_size),
                k,
            ],
        )?;
        add("lstm", &[4 * self.num_lstm_layers, 4 * inner, inner])?;
        add("codebooks", &[n_q, self.codebook_size, self.codebook_dim()])?;
        if total > MAX_PARAMS {
            return Err(Error::config(format!(
                "this config describes about {total} parameters, more than any EnCodec \
                 ({MAX_PARAMS})"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_configs_derive_like_the_reference() {
        let c = EncodecConfig::encodec_24khz();
        c.validate().unwrap();
        assert_eq!(c.hop_length(), 320);
        assert_eq!(c.frame_rate(), 75);
        assert_eq!(c.num_quantizers(), 32);
        let n: Vec<usize> = c
            .target_bandwidths
            .iter()
            .map(|&bw| c.n_q_for_bandwidth(bw).unwrap())
            .collect();
        assert_eq!(n, [2, 4, 8, 16, 32]);
        assert_eq!(c.default_n_q(), 2);
        assert!(c.n_q_for_bandwidth(2.0).is_err());
        assert_eq!(c.chunk_length(), None);
        let c = EncodecConfig::encodec_48khz();
        c.validate().unwrap();
        assert_eq!(c.frame_rate(), 150);
        assert_eq!(c.num_quantizers(), 16);
        assert_eq!(c.chunk_length(), Some(48_000));
        assert_eq!(c.chunk_stride(), Some(47_520));
        assert_eq!(c.n_q_for_bandwidth(3.0).unwrap(), 2);
    }

    #[test]
    fn hub_config_parses() {
        // facebook/encodec_24khz's config.json (generic keys included, use_conv_shortcut absent).
        let text = r#"{"_name_or_path": "ArthurZ/encodec_24khz", "architectures": ["EncodecModel"],
            "audio_channels": 1, "chunk_length_s": null, "codebook_dim": 128, "codebook_size": 1024,
            "compress": 2, "dilation_growth_rate": 2, "hidden_size": 128, "kernel_size": 7,
            "last_kernel_size": 7, "model_type": "encodec", "norm_type": "weight_norm",
            "normalize": false, "num_filters": 32, "num_lstm_layers": 2, "num_residual_layers": 1,
            "overlap": null, "pad_mode": "reflect", "residual_kernel_size": 3,
            "sampling_rate": 24000, "target_bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0],
            "torch_dtype": "float32", "transformers_version": "4.31.0.dev0",
            "trim_right_ratio": 1.0, "upsampling_ratios": [8, 5, 4, 2], "use_causal_conv": true}"#;
        let c = EncodecConfig::from_json(&serde_json::from_str(text).unwrap()).unwrap();
        let mut want = EncodecConfig::encodec_24khz();
        want.codebook_dim = Some(128);
        assert_eq!(c, want);
        let e = EncodecConfig::from_json(&serde_json::json!({"model_type": "mimi"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("model_type"), "{e}");
        let e = EncodecConfig::from_json(&serde_json::json!({"hidden_size": -1}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden_size = -1"), "{e}");
    }

    #[test]
    fn absurd_values_are_refused() {
        let bad = |f: &dyn Fn(&mut EncodecConfig), needle: &str| {
            let mut c = EncodecConfig::encodec_24khz();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(&|c| c.sampling_rate = 0, "sampling_rate");
        bad(&|c| c.audio_channels = 3, "audio_channels");
        bad(&|c| c.codebook_size = 1000, "power of 2");
        bad(&|c| c.codebook_dim = Some(64), "codebook_dim");
        bad(&|c| c.upsampling_ratios = vec![], "upsampling_ratios");
        bad(&|c| c.upsampling_ratios[2] = 0, "upsampling_ratios[2]");
        bad(&|c| c.num_filters = 1 << 20, "num_filters");
        bad(&|c| c.norm_type = "batch_norm".into(), "norm_type");
        bad(&|c| c.pad_mode = "circular".into(), "pad_mode");
        bad(&|c| c.target_bandwidths = vec![0.1], "codebooks");
        bad(
            &|c| c.target_bandwidths = vec![f64::NAN],
            "target_bandwidths[0]",
        );
        bad(&|c| c.chunk_length_s = Some(-1.0), "chunk_length_s");
        bad(&|c| c.overlap = Some(1.0), "overlap");
        bad(
            &|c| {
                c.use_causal_conv = false;
                c.trim_right_ratio = 0.5;
            },
            "trim_right_ratio",
        );
        bad(&|c| c.compress = 64, "compress");
        bad(&|c| c.num_lstm_layers = 100, "num_lstm_layers");
        bad(&|c| c.hidden_size = 16000, "more than");
    }
}
