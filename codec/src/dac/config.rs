//! DAC's `config.json` in the layout of transformers' `DacConfig` (the descript/dac_* repos), and
//! its checks.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tessera_core::config::{check_elems, check_range};
use tessera_core::{Error, Result};

/// The fields of transformers' `DacConfig` that shape the model.
///
/// `hop_length` in a `config.json` is not read: transformers computes it for the default ratios
/// and a converted checkpoint may keep a stale value, while the model only ever uses the ratios.
/// The loss weights and `quantizer_dropout` only matter for training.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DacConfig {
    pub encoder_hidden_size: usize,
    pub downsampling_ratios: Vec<usize>,
    pub decoder_hidden_size: usize,
    pub n_codebooks: usize,
    pub codebook_size: usize,
    pub codebook_dim: usize,
    pub sampling_rate: u32,
    /// Channels of the latent between encoder, quantizer and decoder.
    pub hidden_size: usize,
    /// The decoder's strides, in decoder order.
    pub upsampling_ratios: Vec<usize>,
}

impl Default for DacConfig {
    /// `DacConfig()`: what a `config.json` without keys means to transformers.
    fn default() -> Self {
        Self::derived(64, vec![2, 4, 8, 8], 1536, 9, 1024, 8, 16000)
    }
}

/// `model_type` of a transformers DAC `config.json`.
const MODEL_TYPE: &str = "dac";

/// `obj[key]` as a `T`, or `default` when absent or null; errors name the key.
fn field<T: DeserializeOwned>(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: T,
) -> Result<T> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| Error::config(format!("{key} = {v}: {e}"))),
    }
}

/// Limits that no real DAC comes near; they keep a broken config from allocating absurd sizes.
const MAX_CHANNELS: usize = 1 << 14;
const MAX_RATE: usize = 64;
const MAX_STAGES: usize = 8;
const MAX_CODEBOOKS: usize = 1024;
const MAX_PARAMS: u64 = 1 << 31;

impl DacConfig {
    /// A config with `hidden_size` and `upsampling_ratios` derived as `DacConfig` derives them.
    fn derived(
        encoder_hidden_size: usize,
        downsampling_ratios: Vec<usize>,
        decoder_hidden_size: usize,
        n_codebooks: usize,
        codebook_size: usize,
        codebook_dim: usize,
        sampling_rate: u32,
    ) -> Self {
        let upsampling_ratios = downsampling_ratios.iter().rev().copied().collect();
        let hidden_size = encoder_hidden_size
            .checked_shl(downsampling_ratios.len() as u32)
            .unwrap_or(usize::MAX);
        DacConfig {
            encoder_hidden_size,
            downsampling_ratios,
            decoder_hidden_size,
            n_codebooks,
            codebook_size,
            codebook_dim,
            sampling_rate,
            hidden_size,
            upsampling_ratios,
        }
    }

    /// descript/dac_16khz: 12 codebooks at 50 Hz (6 kbps).
    pub fn dac_16khz() -> Self {
        Self::derived(64, vec![2, 4, 5, 8], 1536, 12, 1024, 8, 16000)
    }

    /// descript/dac_24khz: 32 codebooks at 75 Hz (24 kbps).
    pub fn dac_24khz() -> Self {
        Self::derived(64, vec![2, 4, 5, 8], 1536, 32, 1024, 8, 24000)
    }

    /// descript/dac_44khz: 9 codebooks at 86.1 Hz (7.75 kbps).
    pub fn dac_44khz() -> Self {
        Self::derived(64, vec![2, 4, 8, 8], 1536, 9, 1024, 8, 44100)
    }

    /// Read a parsed `config.json` as `DacConfig.from_pretrained` does: missing keys take the
    /// class defaults; `hidden_size` and `upsampling_ratios`, when present, override the values
    /// derived from the encoder (transformers honours them too). Keys that describe training or
    /// the file (`architectures`, loss weights, versions) are accepted and ignored. Values are
    /// checked separately by [`Self::validate`].
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj = value.as_object().ok_or_else(|| {
            Error::config("a DAC config is a JSON object (transformers' DacConfig)")
        })?;
        if let Some(t) = obj.get("model_type")
            && t.as_str() != Some(MODEL_TYPE)
        {
            return Err(Error::config(format!(
                "model_type = {t}, expected \"{MODEL_TYPE}\": this is not a DAC checkpoint"
            )));
        }
        let d = DacConfig::default();
        let mut c = Self::derived(
            field(obj, "encoder_hidden_size", d.encoder_hidden_size)?,
            field(obj, "downsampling_ratios", d.downsampling_ratios)?,
            field(obj, "decoder_hidden_size", d.decoder_hidden_size)?,
            field(obj, "n_codebooks", d.n_codebooks)?,
            field(obj, "codebook_size", d.codebook_size)?,
            field(obj, "codebook_dim", d.codebook_dim)?,
            field(obj, "sampling_rate", d.sampling_rate)?,
        );
        c.hidden_size = field(obj, "hidden_size", c.hidden_size)?;
        c.upsampling_ratios = field(obj, "upsampling_ratios", c.upsampling_ratios)?;
        // Parsed only so that a wrong type is reported; inference does not use them.
        let _: f64 = field(obj, "quantizer_dropout", 0.0)?;
        Ok(c)
    }

    /// Samples per frame (the product of the downsampling ratios).
    pub fn hop_length(&self) -> usize {
        self.downsampling_ratios.iter().product()
    }

    /// Frames per second.
    pub fn frame_rate(&self) -> f64 {
        self.sampling_rate as f64 / self.hop_length() as f64
    }

    /// Length of `n` samples after padding on the right to a multiple of the hop, as transformers'
    /// `DacFeatureExtractor` (`pad_to_multiple_of=hop_length`) and the descript package's
    /// `DAC.preprocess` pad before encoding.
    pub fn padded_len(&self, n: usize) -> usize {
        n.div_ceil(self.hop_length()) * self.hop_length()
    }

    /// Channels that the encoder's blocks end with: `encoder_hidden_size * 2^stages`.
    pub fn encoder_channels(&self) -> usize {
        self.encoder_hidden_size << self.downsampling_ratios.len()
    }

    /// Output channels of decoder block `i` (transformers' integer division).
    pub fn decoder_channels(&self, block: usize) -> usize {
        self.decoder_hidden_size >> (block + 1)
    }

    /// Samples that the decoder returns for `frames` frames: `frames * hop` minus one sample for
    /// every odd stride, which the transposed convs (kernel `2s`, padding `ceil(s / 2)`, no
    /// output padding) lose, carried through the later strides.
    pub fn decoded_len(&self, frames: usize) -> usize {
        let mut n = frames;
        for &s in &self.upsampling_ratios {
            n = (n * s + s).saturating_sub(2 * s.div_ceil(2));
        }
        n
    }

    /// Check every value before anything is allocated; errors name the field.
    pub fn validate(&self) -> Result<()> {
        check_range("sampling_rate", self.sampling_rate, 1000, 384_000)?;
        check_range(
            "encoder_hidden_size",
            self.encoder_hidden_size,
            1,
            MAX_CHANNELS,
        )?;
        check_range(
            "decoder_hidden_size",
            self.decoder_hidden_size,
            1,
            MAX_CHANNELS,
        )?;
        check_range("hidden_size", self.hidden_size, 1, MAX_CHANNELS)?;
        check_range("n_codebooks", self.n_codebooks, 1, MAX_CODEBOOKS)?;
        check_range("codebook_size", self.codebook_size, 1, 1 << 20)?;
        if !self.codebook_size.is_power_of_two() {
            return Err(Error::config(format!(
                "codebook_size = {} must be a power of 2 (DacModel refuses others)",
                self.codebook_size
            )));
        }
        check_range("codebook_dim", self.codebook_dim, 1, 1024)?;
        check_list("downsampling_ratios", &self.downsampling_ratios)?;
        check_list("upsampling_ratios", &self.upsampling_ratios)?;
        self.encoder_hidden_size
            .checked_shl(self.downsampling_ratios.len() as u32)
            .filter(|&c| c <= MAX_CHANNELS)
            .ok_or_else(|| {
                Error::config(format!(
                    "encoder_hidden_size {} doubled over {} stages exceeds {MAX_CHANNELS} channels",
                    self.encoder_hidden_size,
                    self.downsampling_ratios.len()
                ))
            })?;
        let last = self.upsampling_ratios.len() - 1;
        if self.decoder_channels(last) == 0 {
            return Err(Error::config(format!(
                "decoder_hidden_size = {} halved over {} stages leaves no channels",
                self.decoder_hidden_size,
                self.upsampling_ratios.len()
            )));
        }
        // At most 64^8 each, so the products fit.
        let hop = check_range(
            "hop length (product of downsampling_ratios)",
            self.hop_length(),
            1,
            1 << 16,
        )?;
        let up: usize = self.upsampling_ratios.iter().product();
        if hop != up {
            return Err(Error::config(format!(
                "downsampling_ratios multiply to {hop} but upsampling_ratios to {up}; decoded \
                 audio would not have the input's sample rate"
            )));
        }
        self.check_param_count()
    }

    /// Rough upper bound on the parameter count, so that a config of valid-looking numbers
    /// cannot ask for terabytes.
    fn check_param_count(&self) -> Result<()> {
        let mut total: u64 = 0;
        let mut add = |what: &str, dims: &[usize]| -> Result<()> {
            total = total.saturating_add(check_elems(what, dims, MAX_PARAMS)?);
            Ok(())
        };
        let mut d = self.encoder_hidden_size;
        for &r in &self.downsampling_ratios {
            add("encoder residual convs", &[3 * 8, d, d])?;
            add("encoder stride conv", &[2 * d, d, 2 * r])?;
            d *= 2;
        }
        add("encoder output conv", &[self.hidden_size, d, 3])?;
        add(
            "codebooks",
            &[self.n_codebooks, self.codebook_size, self.codebook_dim],
        )?;
        add(
            "quantizer projections",
            &[self.n_codebooks, 2 * self.hidden_size, self.codebook_dim],
        )?;
        add(
            "decoder input conv",
            &[self.decoder_hidden_size, self.hidden_size, 7],
        )?;
        let mut c = self.decoder_hidden_size;
        for &r in &self.upsampling_ratios {
            add("decoder upsampling conv", &[c, c / 2, 2 * r])?;
            add("decoder residual convs", &[3 * 8, c / 2, c / 2])?;
            c /= 2;
        }
        if total > MAX_PARAMS {
            return Err(Error::config(format!(
                "this config describes about {total} parameters, more than any DAC ({MAX_PARAMS})"
            )));
        }
        Ok(())
    }
}

fn check_list(field: &str, v: &[usize]) -> Result<()> {
    if v.is_empty() || v.len() > MAX_STAGES {
        return Err(Error::config(format!(
            "{field} has {} entries (expected 1..={MAX_STAGES})",
            v.len()
        )));
    }
    for (i, &x) in v.iter().enumerate() {
        check_range(&format!("{field}[{i}]"), x, 1, MAX_RATE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DacConfig> {
        DacConfig::from_json(&serde_json::from_str(s).unwrap())
    }

    #[test]
    fn real_configs_are_valid() {
        let c16 = DacConfig::dac_16khz();
        let c24 = DacConfig::dac_24khz();
        let c44 = DacConfig::dac_44khz();
        for c in [&c16, &c24, &c44] {
            c.validate().unwrap();
            assert_eq!(c.hidden_size, 1024);
        }
        assert_eq!(c16.hop_length(), 320);
        assert_eq!(c16.frame_rate(), 50.0);
        assert_eq!(c24.frame_rate(), 75.0);
        assert_eq!(c44.hop_length(), 512);
        assert_eq!(c16.upsampling_ratios, vec![8, 5, 4, 2]);
        assert_eq!(c16.padded_len(16000), 16000);
        assert_eq!(c16.padded_len(16001), 16320);
        // The stride 5 loses one sample, carried through x4 and x2.
        assert_eq!(c16.decoded_len(50), 16000 - 8);
        assert_eq!(c44.decoded_len(10), 5120);
    }

    #[test]
    fn json_like_transformers() {
        let c = parse("{}").unwrap();
        assert_eq!(c, DacConfig::default());
        assert_eq!(c.hop_length(), 512);
        // A config.json as the descript/dac_16khz conversion writes it, stale hop_length included.
        let c = parse(
            r#"{"architectures": ["DacModel"], "codebook_dim": 8, "codebook_loss_weight": 1.0,
                "codebook_size": 1024, "commitment_loss_weight": 0.25, "decoder_hidden_size": 1536,
                "downsampling_ratios": [2, 4, 5, 8], "encoder_hidden_size": 64,
                "hidden_size": 1024, "hop_length": 512, "model_type": "dac", "n_codebooks": 12,
                "quantizer_dropout": 0.5, "sampling_rate": 16000, "torch_dtype": "float32",
                "transformers_version": "4.45.0.dev0", "upsampling_ratios": [8, 5, 4, 2]}"#,
        )
        .unwrap();
        assert_eq!(c, DacConfig::dac_16khz());
        let c = parse(r#"{"downsampling_ratios": [2, 3], "hidden_size": 10}"#).unwrap();
        assert_eq!(c.upsampling_ratios, vec![3, 2]);
        assert_eq!(c.hidden_size, 10);
        let e = parse(r#"{"model_type": "snac"}"#).unwrap_err().to_string();
        assert!(e.contains("not a DAC"), "{e}");
        let e = parse(r#"{"n_codebooks": -3}"#).unwrap_err().to_string();
        assert!(e.contains("n_codebooks = -3"), "{e}");
        let e = parse(r#"{"quantizer_dropout": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("quantizer_dropout"), "{e}");
        assert!(parse("[1, 2]").is_err());
        let real = DacConfig::dac_44khz();
        assert_eq!(parse(&serde_json::to_string(&real).unwrap()).unwrap(), real);
    }

    #[test]
    fn absurd_values_are_refused() {
        let bad = |f: &dyn Fn(&mut DacConfig), needle: &str| {
            let mut c = DacConfig::dac_16khz();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(&|c| c.sampling_rate = 0, "sampling_rate");
        bad(&|c| c.downsampling_ratios = vec![], "downsampling_ratios");
        bad(&|c| c.downsampling_ratios[1] = 0, "downsampling_ratios[1]");
        bad(&|c| c.encoder_hidden_size = 1 << 40, "encoder_hidden_size");
        bad(&|c| c.encoder_hidden_size = 4096, "doubled");
        bad(&|c| c.codebook_size = usize::MAX, "codebook_size");
        bad(&|c| c.codebook_size = 1000, "power of 2");
        bad(&|c| c.n_codebooks = 0, "n_codebooks");
        bad(&|c| c.upsampling_ratios = vec![8, 8, 4, 2], "multiply");
        bad(&|c| c.decoder_hidden_size = 8, "no channels");
        bad(&|c| c.hidden_size = 0, "hidden_size");
        bad(&|c| c.downsampling_ratios = vec![64; 8], "hop length");
        bad(
            &|c| {
                c.n_codebooks = 1024;
                c.codebook_size = 1 << 20;
                c.codebook_dim = 1024;
            },
            "elements",
        );
    }
}
