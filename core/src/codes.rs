//! The discrete result of any tokenizer, and its file format.
//!
//! A [`Codes`] value is a list of *levels*. Level k is a u32 tensor of shape `[n_q_k, T_k]`
//! (codebooks x frames). Single-rate codecs (Mimi, EnCodec, DAC) have one level; SNAC has one per
//! temporal scale. [`CodesMeta`] travels with it so that a file can be decoded without being told
//! which tokenizer made it.
//!
//! On disk a codes file is safetensors: level k is the tensor `codes.{k}` and the string metadata
//! holds the rest (see `docs/codes-format.md`). Reading validates everything, because a codes file
//! is user input: shapes against metadata, codes against codebook sizes, durations against frame
//! rates.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// The value of the `format` metadata key, so that other safetensors files are refused early.
pub const FORMAT_NAME: &str = "tessera.codes";
/// Bumped when the layout changes incompatibly; readers refuse newer versions.
pub const FORMAT_VERSION: u32 = 1;

/// Codes files hold integers only; anything bigger than this is not a codes file.
const MAX_CODES_FILE_BYTES: u64 = 4 << 30;
/// A level with more codebooks than this is not a real tokenizer's output.
const MAX_CODEBOOKS: usize = 4096;
/// Levels per file (SNAC has 3-4; images may have a few more).
const MAX_LEVELS: usize = 64;

/// Keys written by tessera itself; everything else in the metadata is kept in `extra`.
const RESERVED_KEYS: &[&str] = &[
    "format",
    "format_version",
    "tokenizer",
    "tokenizer_version",
    "sample_rate",
    "n_samples",
    "image_width",
    "image_height",
    "n_levels",
    "frame_rates",
    "codebook_sizes",
    "shapes",
];

/// What the codes are: who made them, from what, at which rates.
#[derive(Debug, Clone, PartialEq)]
pub struct CodesMeta {
    /// Registry id (`snac_24khz`, `mimi`, ...) or the directory name of a local checkpoint.
    pub tokenizer: String,
    /// Version or revision of the tokenizer weights, free-form (e.g. a hub commit).
    pub tokenizer_version: String,
    /// Sample rate of the audio the codes describe (audio tokenizers).
    pub sample_rate: Option<u32>,
    /// Length of the original signal in samples, used to trim decoded audio.
    pub n_samples: Option<u64>,
    /// Size of the original image, width x height (image tokenizers).
    pub image_size: Option<(u32, u32)>,
    /// Frames per second of each level (audio) or tokens per row (images); one per level.
    pub frame_rates: Vec<f64>,
    /// Codebook size of each level; every codebook of a level has the same size.
    pub codebook_sizes: Vec<u32>,
    /// Any other string metadata (kept on read, written back unchanged).
    pub extra: BTreeMap<String, String>,
}

/// Discrete codes: one `[n_q, T]` u32 tensor per level, plus metadata.
#[derive(Debug, Clone)]
pub struct Codes {
    levels: Vec<Tensor>,
    meta: CodesMeta,
}

impl Codes {
    /// Build codes from levels and metadata, checking that they agree.
    pub fn new(levels: Vec<Tensor>, meta: CodesMeta) -> Result<Self> {
        let levels = levels
            .into_iter()
            .map(|t| t.to_device(&Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let codes = Codes { levels, meta };
        codes.validate()?;
        Ok(codes)
    }

    pub fn levels(&self) -> &[Tensor] {
        &self.levels
    }

    pub fn level(&self, k: usize) -> Option<&Tensor> {
        self.levels.get(k)
    }

    pub fn meta(&self) -> &CodesMeta {
        &self.meta
    }

    pub fn n_levels(&self) -> usize {
        self.levels.len()
    }

    /// `[n_q, T]` of each level.
    pub fn shapes(&self) -> Vec<[usize; 2]> {
        self.levels
            .iter()
            .map(|t| {
                let d = t.dims();
                [d[0], d[1]]
            })
            .collect()
    }

    /// Duration of the original audio in seconds, when known.
    pub fn duration_s(&self) -> Option<f64> {
        match (self.meta.n_samples, self.meta.sample_rate) {
            (Some(n), Some(sr)) if sr > 0 => Some(n as f64 / sr as f64),
            _ => None,
        }
    }

    fn validate(&self) -> Result<()> {
        let m = &self.meta;
        let n = self.levels.len();
        if n == 0 {
            return Err(Error::invalid("codes have no levels"));
        }
        if n > MAX_LEVELS {
            return Err(Error::invalid(format!(
                "codes have {n} levels, more than the {MAX_LEVELS} any tokenizer uses"
            )));
        }
        if m.tokenizer.trim().is_empty() {
            return Err(Error::invalid("codes metadata has an empty tokenizer id"));
        }
        if m.frame_rates.len() != n {
            return Err(Error::invalid(format!(
                "{n} levels but {} frame rates in the metadata",
                m.frame_rates.len()
            )));
        }
        if m.codebook_sizes.len() != n {
            return Err(Error::invalid(format!(
                "{n} levels but {} codebook sizes in the metadata",
                m.codebook_sizes.len()
            )));
        }
        if let Some(sr) = m.sample_rate
            && (sr == 0 || sr > 1_536_000)
        {
            return Err(Error::invalid(format!("implausible sample rate {sr} Hz")));
        }
        for (k, t) in self.levels.iter().enumerate() {
            if t.dtype() != DType::U32 {
                return Err(Error::invalid(format!(
                    "level {k} has dtype {:?}, codes must be u32",
                    t.dtype()
                )));
            }
            let [n_q, frames] = match t.dims() {
                [a, b] => [*a, *b],
                d => {
                    return Err(Error::invalid(format!(
                        "level {k} has shape {d:?}, expected [n_codebooks, frames]"
                    )));
                }
            };
            if n_q == 0 || n_q > MAX_CODEBOOKS {
                return Err(Error::invalid(format!(
                    "level {k} has {n_q} codebooks (expected 1..={MAX_CODEBOOKS})"
                )));
            }
            let rate = m.frame_rates[k];
            if !rate.is_finite() || rate <= 0.0 {
                return Err(Error::invalid(format!(
                    "level {k} has frame rate {rate}, expected a positive number"
                )));
            }
            let size = m.codebook_sizes[k];
            if size == 0 {
                return Err(Error::invalid(format!("level {k} has codebook size 0")));
            }
            if frames > 0 {
                let max = t.flatten_all()?.max(0)?.to_scalar::<u32>()?;
                if max >= size {
                    return Err(Error::invalid(format!(
                        "level {k} holds code {max}, out of range for codebook size {size}"
                    )));
                }
            }
            if let Some(duration) = self.duration_s() {
                // Codecs pad the input (to a hop multiple, SNAC to its attention window), so the
                // codes may cover more than the audio, but never less, and never wildly more.
                let covered = frames as f64 / rate;
                let slack = 2.0 / rate + (0.1 * duration).max(2.0);
                if covered + 1.0 / rate < duration || covered > duration + slack {
                    return Err(Error::invalid(format!(
                        "level {k} has {frames} frames at {rate} Hz ({covered:.3} s) but the audio \
                         is {duration:.3} s long"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The string metadata written to the safetensors header.
    fn metadata_map(&self) -> HashMap<String, String> {
        let m = &self.meta;
        let mut out: HashMap<String, String> = m
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.insert("format".into(), FORMAT_NAME.into());
        out.insert("format_version".into(), FORMAT_VERSION.to_string());
        out.insert("tokenizer".into(), m.tokenizer.clone());
        out.insert("tokenizer_version".into(), m.tokenizer_version.clone());
        if let Some(sr) = m.sample_rate {
            out.insert("sample_rate".into(), sr.to_string());
        }
        if let Some(n) = m.n_samples {
            out.insert("n_samples".into(), n.to_string());
        }
        if let Some((w, h)) = m.image_size {
            out.insert("image_width".into(), w.to_string());
            out.insert("image_height".into(), h.to_string());
        }
        out.insert("n_levels".into(), self.levels.len().to_string());
        out.insert("frame_rates".into(), json_list(&m.frame_rates));
        out.insert("codebook_sizes".into(), json_list(&m.codebook_sizes));
        out.insert("shapes".into(), json_list(&self.shapes()));
        out
    }

    /// Serialise to the bytes of a codes file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(String, &Tensor)> = self
            .levels
            .iter()
            .enumerate()
            .map(|(k, t)| (format!("codes.{k}"), t))
            .collect();
        safetensors::tensor::serialize(tensors, Some(self.metadata_map()))
            .map_err(|e| Error::invalid(format!("cannot serialise codes: {e}")))
    }

    /// Write a codes file. The file appears whole or not at all (written aside, then renamed).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        crate::fsutil::write_atomic(path, &bytes)
    }

    /// Read and validate a codes file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let size = std::fs::metadata(path)
            .map_err(|e| Error::file(path, crate::fsutil::io_reason(&e)))?
            .len();
        if size == 0 {
            return Err(Error::file(path, "empty file, not a codes file"));
        }
        if size > MAX_CODES_FILE_BYTES {
            return Err(Error::file(
                path,
                format!("{size} bytes is too large for a codes file"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| e.with_path(path))
    }

    /// Parse and validate the bytes of a codes file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
            Error::invalid(format!(
                "not a codes file (corrupt or truncated safetensors: {e})"
            ))
        })?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::invalid(format!("not a codes file ({e})")))?;
        let md = header.metadata().clone().ok_or_else(|| {
            Error::invalid("not a codes file: the safetensors file has no metadata")
        })?;
        match md.get("format").map(String::as_str) {
            Some(FORMAT_NAME) => {}
            Some(other) => {
                return Err(Error::invalid(format!(
                    "not a codes file: format is '{other}', expected '{FORMAT_NAME}'"
                )));
            }
            None => {
                return Err(Error::invalid(
                    "not a codes file: metadata has no 'format' key (is this a weights file?)",
                ));
            }
        }
        let version: u32 = parse_key(&md, "format_version")?;
        if version > FORMAT_VERSION {
            return Err(Error::invalid(format!(
                "codes format version {version} is newer than this tessera reads \
                 ({FORMAT_VERSION}); upgrade tessera"
            )));
        }
        let n_levels: usize = parse_key(&md, "n_levels")?;
        if n_levels == 0 || n_levels > MAX_LEVELS {
            return Err(Error::invalid(format!(
                "metadata says {n_levels} levels (expected 1..={MAX_LEVELS})"
            )));
        }
        let names = st.names();
        if names.len() != n_levels {
            return Err(Error::invalid(format!(
                "metadata says {n_levels} levels but the file holds {} tensors",
                names.len()
            )));
        }
        let shapes: Vec<[usize; 2]> = parse_json_key(&md, "shapes")?;
        if shapes.len() != n_levels {
            return Err(Error::invalid(format!(
                "metadata lists {} shapes for {n_levels} levels",
                shapes.len()
            )));
        }
        let mut levels = Vec::with_capacity(n_levels);
        for (k, want) in shapes.iter().enumerate() {
            let name = format!("codes.{k}");
            let view = st
                .tensor(&name)
                .map_err(|_| Error::invalid(format!("tensor '{name}' is missing")))?;
            if view.dtype() != safetensors::Dtype::U32 {
                return Err(Error::invalid(format!(
                    "tensor '{name}' has dtype {:?}, codes must be U32",
                    view.dtype()
                )));
            }
            if view.shape() != want.as_slice() {
                return Err(Error::invalid(format!(
                    "tensor '{name}' has shape {:?} but the metadata says {:?}",
                    view.shape(),
                    want
                )));
            }
            let data: Vec<u32> = view
                .data()
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            levels.push(Tensor::from_vec(data, (want[0], want[1]), &Device::Cpu)?);
        }
        let image_size = match (md.get("image_width"), md.get("image_height")) {
            (None, None) => None,
            _ => Some((
                parse_key(&md, "image_width")?,
                parse_key(&md, "image_height")?,
            )),
        };
        let meta = CodesMeta {
            tokenizer: md.get("tokenizer").cloned().unwrap_or_default(),
            tokenizer_version: md.get("tokenizer_version").cloned().unwrap_or_default(),
            sample_rate: parse_opt_key(&md, "sample_rate")?,
            n_samples: parse_opt_key(&md, "n_samples")?,
            image_size,
            frame_rates: parse_json_key(&md, "frame_rates")?,
            codebook_sizes: parse_json_key(&md, "codebook_sizes")?,
            extra: md
                .iter()
                .filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        Codes::new(levels, meta)
    }
}

fn json_list<T: serde::Serialize>(v: &[T]) -> String {
    serde_json::to_string(v).expect("plain numbers always serialise")
}

fn parse_key<T: std::str::FromStr>(md: &HashMap<String, String>, key: &str) -> Result<T> {
    let raw = md
        .get(key)
        .ok_or_else(|| Error::invalid(format!("metadata key '{key}' is missing")))?;
    raw.trim()
        .parse()
        .map_err(|_| Error::invalid(format!("metadata key '{key}' has a bad value '{raw}'")))
}

fn parse_opt_key<T: std::str::FromStr>(
    md: &HashMap<String, String>,
    key: &str,
) -> Result<Option<T>> {
    match md.get(key) {
        None => Ok(None),
        Some(_) => parse_key(md, key).map(Some),
    }
}

fn parse_json_key<T: serde::de::DeserializeOwned>(
    md: &HashMap<String, String>,
    key: &str,
) -> Result<T> {
    let raw = md
        .get(key)
        .ok_or_else(|| Error::invalid(format!("metadata key '{key}' is missing")))?;
    serde_json::from_str(raw)
        .map_err(|e| Error::invalid(format!("metadata key '{key}' is not valid: {e}")))
}
