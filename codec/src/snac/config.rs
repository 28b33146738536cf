//! SNAC's `config.json`, as `SNAC.from_config` / `SNAC(**config)` read it, and its checks.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tessera_core::config::{check_elems, check_range};
use tessera_core::{Error, Result};

/// The keyword arguments of `snac.SNAC` (version 1.2.1), as `config.json` holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnacConfig {
    pub sampling_rate: u32,
    pub encoder_dim: usize,
    pub encoder_rates: Vec<usize>,
    /// `None`: `encoder_dim * 2^len(encoder_rates)`, the only value the architecture accepts.
    pub latent_dim: Option<usize>,
    pub decoder_dim: usize,
    pub decoder_rates: Vec<usize>,
    /// Local attention window (in latent frames); `null` in the config turns attention off.
    pub attn_window_size: Option<usize>,
    pub codebook_size: usize,
    pub codebook_dim: usize,
    /// Temporal stride of each level, coarse first.
    pub vq_strides: Vec<usize>,
    /// Whether the decoder has `NoiseBlock`s (and their weights).
    pub noise: bool,
    pub depthwise: bool,
}

impl Default for SnacConfig {
    /// `SNAC()`'s defaults, which describe the 44.1 kHz model of the first release.
    fn default() -> Self {
        SnacConfig {
            sampling_rate: 44100,
            encoder_dim: 64,
            encoder_rates: vec![3, 3, 7, 7],
            latent_dim: None,
            decoder_dim: 1536,
            decoder_rates: vec![7, 7, 3, 3],
            attn_window_size: Some(32),
            codebook_size: 4096,
            codebook_dim: 8,
            vq_strides: vec![8, 4, 2, 1],
            noise: true,
            depthwise: true,
        }
    }
}

const KEYS: &[&str] = &[
    "sampling_rate",
    "encoder_dim",
    "encoder_rates",
    "latent_dim",
    "decoder_dim",
    "decoder_rates",
    "attn_window_size",
    "codebook_size",
    "codebook_dim",
    "vq_strides",
    "noise",
    "depthwise",
];

/// `obj[key]` as a `T`, or `default` when absent; errors name the key.
fn field<T: DeserializeOwned>(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    default: T,
) -> Result<T> {
    match obj.get(key) {
        None => Ok(default),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| Error::config(format!("{key} = {v}: {e}"))),
    }
}

/// Head size of SNAC's local attention (`LocalMHA(dim_head=64)`); the rotary embedding assumes it.
pub const ATTN_HEAD_DIM: usize = 64;

/// Limits that no real SNAC comes near; they keep a broken config from allocating absurd sizes.
const MAX_CHANNELS: usize = 1 << 14;
const MAX_RATE: usize = 64;
const MAX_STAGES: usize = 8;
const MAX_LEVELS: usize = 16;
const MAX_PARAMS: u64 = 1 << 31;

impl SnacConfig {
    /// Read a parsed `config.json` as `SNAC(**config)` does: missing keys take the package's
    /// defaults, unknown keys are refused. Values are checked separately by [`Self::validate`].
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::config("a SNAC config is a JSON object of SNAC's arguments"))?;
        if let Some(unknown) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::config(format!(
                "unknown key '{unknown}' (SNAC takes {})",
                KEYS.join(", ")
            )));
        }
        let d = SnacConfig::default();
        Ok(SnacConfig {
            sampling_rate: field(obj, "sampling_rate", d.sampling_rate)?,
            encoder_dim: field(obj, "encoder_dim", d.encoder_dim)?,
            encoder_rates: field(obj, "encoder_rates", d.encoder_rates)?,
            latent_dim: field(obj, "latent_dim", d.latent_dim)?,
            decoder_dim: field(obj, "decoder_dim", d.decoder_dim)?,
            decoder_rates: field(obj, "decoder_rates", d.decoder_rates)?,
            attn_window_size: field(obj, "attn_window_size", d.attn_window_size)?,
            codebook_size: field(obj, "codebook_size", d.codebook_size)?,
            codebook_dim: field(obj, "codebook_dim", d.codebook_dim)?,
            vq_strides: field(obj, "vq_strides", d.vq_strides)?,
            noise: field(obj, "noise", d.noise)?,
            depthwise: field(obj, "depthwise", d.depthwise)?,
        })
    }

    /// hubertsiuzdak/snac_24khz (speech, 0.98 kbps, levels at 12, 23 and 47 Hz).
    pub fn snac_24khz() -> Self {
        SnacConfig {
            sampling_rate: 24000,
            encoder_dim: 48,
            encoder_rates: vec![2, 4, 8, 8],
            latent_dim: None,
            decoder_dim: 1024,
            decoder_rates: vec![8, 8, 4, 2],
            attn_window_size: None,
            codebook_size: 4096,
            codebook_dim: 8,
            vq_strides: vec![4, 2, 1],
            noise: true,
            depthwise: true,
        }
    }

    /// hubertsiuzdak/snac_32khz (music, 1.9 kbps, levels at 10, 21, 42 and 83 Hz).
    pub fn snac_32khz() -> Self {
        SnacConfig {
            sampling_rate: 32000,
            encoder_dim: 64,
            encoder_rates: vec![2, 3, 8, 8],
            latent_dim: None,
            decoder_dim: 1536,
            decoder_rates: vec![8, 8, 3, 2],
            attn_window_size: Some(32),
            codebook_size: 4096,
            codebook_dim: 8,
            vq_strides: vec![8, 4, 2, 1],
            noise: true,
            depthwise: true,
        }
    }

    /// hubertsiuzdak/snac_44khz (music, 2.6 kbps, levels at 14, 29, 57 and 115 Hz).
    pub fn snac_44khz() -> Self {
        SnacConfig {
            sampling_rate: 44100,
            ..Self::snac_32khz()
        }
    }

    /// Samples per latent frame (the product of the encoder rates).
    pub fn hop_length(&self) -> usize {
        self.encoder_rates.iter().product()
    }

    /// Channels of the latent (what the encoder emits and the decoder takes).
    pub fn latent_channels(&self) -> usize {
        self.latent_dim
            .unwrap_or(self.encoder_dim << self.encoder_rates.len())
    }

    /// Input lengths are padded (on the right, with zeros) to a multiple of this, as
    /// `SNAC.preprocess` does: `hop_length * lcm(vq_strides[0], attn_window_size or 1)`.
    pub fn pad_multiple(&self) -> usize {
        self.hop_length() * self.latent_multiple()
    }

    /// Latent frames come in multiples of this: `lcm(vq_strides[0], attn_window_size or 1)`.
    pub fn latent_multiple(&self) -> usize {
        lcm(self.vq_strides[0], self.attn_window_size.unwrap_or(1))
    }

    /// Length of `n` samples after the reference's padding.
    pub fn padded_len(&self, n: usize) -> usize {
        n.div_ceil(self.pad_multiple()) * self.pad_multiple()
    }

    /// Frames per second of level `k`.
    pub fn frame_rate(&self, level: usize) -> f64 {
        self.sampling_rate as f64 / (self.hop_length() * self.vq_strides[level]) as f64
    }

    /// Check every value before anything is allocated; errors name the field.
    pub fn validate(&self) -> Result<()> {
        check_range("sampling_rate", self.sampling_rate, 1000, 384_000)?;
        check_range("encoder_dim", self.encoder_dim, 1, MAX_CHANNELS)?;
        check_range("decoder_dim", self.decoder_dim, 1, MAX_CHANNELS)?;
        check_range("codebook_size", self.codebook_size, 1, 1 << 20)?;
        check_range("codebook_dim", self.codebook_dim, 1, 1024)?;
        check_list("encoder_rates", &self.encoder_rates, MAX_STAGES, MAX_RATE)?;
        check_list("decoder_rates", &self.decoder_rates, MAX_STAGES, MAX_RATE)?;
        check_list("vq_strides", &self.vq_strides, MAX_LEVELS, MAX_RATE)?;

        let enc_out = self
            .encoder_dim
            .checked_shl(self.encoder_rates.len() as u32)
            .filter(|&c| c <= MAX_CHANNELS)
            .ok_or_else(|| {
                Error::config(format!(
                    "encoder_dim {} doubled over {} encoder stages exceeds {MAX_CHANNELS} channels",
                    self.encoder_dim,
                    self.encoder_rates.len()
                ))
            })?;
        if let Some(latent) = self.latent_dim
            && latent != enc_out
        {
            return Err(Error::config(format!(
                "latent_dim = {latent} but the encoder emits encoder_dim * 2^{} = {enc_out} \
                 channels; SNAC's quantizer and decoder need them equal",
                self.encoder_rates.len()
            )));
        }
        let halvings = 1usize << self.decoder_rates.len();
        if !self.decoder_dim.is_multiple_of(halvings) {
            return Err(Error::config(format!(
                "decoder_dim = {} must be divisible by 2^{} (it halves at each decoder stage)",
                self.decoder_dim,
                self.decoder_rates.len()
            )));
        }
        // At most 64^8 each, so the products fit; bound them before they are multiplied further.
        let hop = check_range(
            "hop length (product of encoder_rates)",
            self.hop_length(),
            1,
            1 << 16,
        )?;
        let up: usize = self.decoder_rates.iter().product();
        if hop != up {
            return Err(Error::config(format!(
                "encoder_rates multiply to {hop} but decoder_rates to {up}; decoded audio would \
                 not have the input's sample rate"
            )));
        }
        if let Some(w) = self.attn_window_size {
            check_range("attn_window_size", w, 1, 4096)?;
            for (what, dim) in [
                ("encoder output", enc_out),
                ("decoder_dim", self.decoder_dim),
            ] {
                if dim % ATTN_HEAD_DIM != 0 {
                    return Err(Error::config(format!(
                        "attention needs channels in multiples of {ATTN_HEAD_DIM} (the head size), \
                         but the {what} has {dim}"
                    )));
                }
            }
        }
        let multiple = self.latent_multiple();
        if let Some(&s) = self
            .vq_strides
            .iter()
            .find(|&&s| !multiple.is_multiple_of(s))
        {
            return Err(Error::config(format!(
                "vq stride {s} does not divide the latent frame multiple {multiple} \
                 (lcm of vq_strides[0] and attn_window_size); the reference fails on such configs"
            )));
        }
        check_range("padding multiple", self.pad_multiple(), 1, 1 << 24)?;
        self.check_param_count(enc_out)
    }

    /// Rough upper bound on the parameter count (dense convs counted as dense), so that a
    /// config of valid-looking numbers cannot ask for terabytes.
    fn check_param_count(&self, enc_out: usize) -> Result<()> {
        let mut total: u64 = 0;
        let mut add = |what: &str, dims: &[usize]| -> Result<()> {
            total = total.saturating_add(check_elems(what, dims, MAX_PARAMS)?);
            Ok(())
        };
        let mut d = self.encoder_dim;
        for &r in &self.encoder_rates {
            add("encoder residual convs", &[3 * 7, d, d])?;
            add("encoder stride conv", &[2 * d, d, 2 * r])?;
            d *= 2;
        }
        add("latent projection", &[self.decoder_dim, enc_out, 7])?;
        add(
            "codebooks",
            &[self.vq_strides.len(), self.codebook_size, self.codebook_dim],
        )?;
        let mut c = self.decoder_dim;
        for &r in &self.decoder_rates {
            add("decoder upsampling conv", &[c, c / 2, 2 * r])?;
            add("decoder residual convs", &[3 * 7, c / 2, c / 2])?;
            c /= 2;
        }
        if self.attn_window_size.is_some() {
            add(
                "attention",
                &[
                    4,
                    enc_out.max(self.decoder_dim),
                    enc_out.max(self.decoder_dim),
                ],
            )?;
        }
        if total > MAX_PARAMS {
            return Err(Error::config(format!(
                "this config describes about {total} parameters, more than any SNAC ({MAX_PARAMS})"
            )));
        }
        Ok(())
    }
}

fn check_list(field: &str, v: &[usize], max_len: usize, max_value: usize) -> Result<()> {
    if v.is_empty() || v.len() > max_len {
        return Err(Error::config(format!(
            "{field} has {} entries (expected 1..={max_len})",
            v.len()
        )));
    }
    for (i, &x) in v.iter().enumerate() {
        check_range(&format!("{field}[{i}]"), x, 1, max_value)?;
    }
    Ok(())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_configs_are_valid_and_pad_like_the_reference() {
        for cfg in [
            SnacConfig::snac_24khz(),
            SnacConfig::snac_32khz(),
            SnacConfig::snac_44khz(),
        ] {
            cfg.validate().unwrap();
        }
        let c24 = SnacConfig::snac_24khz();
        assert_eq!(c24.hop_length(), 512);
        assert_eq!(c24.pad_multiple(), 2048);
        assert_eq!(c24.latent_channels(), 768);
        let c32 = SnacConfig::snac_32khz();
        // README: 32000 samples give [12, 24, 48, 96] codes.
        let frames = c32.padded_len(32000) / c32.hop_length();
        let per_level: Vec<usize> = c32.vq_strides.iter().map(|s| frames / s).collect();
        assert_eq!(per_level, vec![12, 24, 48, 96]);
    }

    #[test]
    fn json_defaults_and_null_window() {
        let parse = |s: &str| SnacConfig::from_json(&serde_json::from_str(s).unwrap());
        let c = parse("{}").unwrap();
        assert_eq!(c, SnacConfig::default());
        assert_eq!(c.attn_window_size, Some(32));
        let c = parse(r#"{"attn_window_size": null, "sampling_rate": 24000}"#).unwrap();
        assert_eq!(c.attn_window_size, None);
        assert_eq!(c.sampling_rate, 24000);
        let e = parse(r#"{"model_type": "snac"}"#).unwrap_err().to_string();
        assert!(e.contains("model_type"), "{e}");
        let e = parse(r#"{"codebook_size": -3}"#).unwrap_err().to_string();
        assert!(e.contains("codebook_size = -3"), "{e}");
        assert!(parse("[1, 2]").is_err());
        // Serialising gives back what parses.
        let real = SnacConfig::snac_44khz();
        assert_eq!(parse(&serde_json::to_string(&real).unwrap()).unwrap(), real);
    }

    #[test]
    fn absurd_values_are_refused() {
        let bad = |f: &dyn Fn(&mut SnacConfig), needle: &str| {
            let mut c = SnacConfig::snac_24khz();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(&|c| c.sampling_rate = 0, "sampling_rate");
        bad(&|c| c.encoder_rates = vec![], "encoder_rates");
        bad(&|c| c.encoder_rates[1] = 0, "encoder_rates[1]");
        bad(&|c| c.encoder_dim = 1 << 40, "encoder_dim");
        bad(&|c| c.codebook_size = usize::MAX, "codebook_size");
        bad(&|c| c.decoder_rates = vec![8, 8, 4, 4], "multiply");
        bad(&|c| c.latent_dim = Some(100), "latent_dim");
        bad(&|c| c.decoder_dim = 1000, "divisible");
        bad(&|c| c.vq_strides = vec![4, 3, 1], "vq stride 3");
        bad(&|c| c.attn_window_size = Some(0), "attn_window_size");
        bad(
            &|c| {
                c.attn_window_size = Some(32);
                c.decoder_dim = 1040;
            },
            "multiples of 64",
        );
        bad(&|c| c.encoder_rates = vec![64; 8], "hop length");
    }
}
