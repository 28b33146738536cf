//! Short ids for the public codec checkpoints, and loading a codec from an id or a directory.
//!
//! An id names a Hugging Face repository and the family that reads it. A local directory in that
//! repository's layout works everywhere an id does; its family is detected from `config.json`.
//! What `tessera codecs` prints (rates, levels, bitrates) is derived from each family's real
//! default config, so it cannot drift from what loading the checkpoint gives.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::Value;
use tessera_core::{Checkpoint, Error, Result, hub};

use crate::codec::{AudioCodec, LevelSpec};
use crate::dac::{Dac, DacConfig};
use crate::encodec::{Encodec, EncodecConfig};
use crate::mimi::{Mimi, MimiConfig};
use crate::snac::{Snac, SnacConfig};

/// A codec family: one implementation, several checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Snac,
    Dac,
    Encodec,
    Mimi,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Snac => "snac",
            Family::Dac => "dac",
            Family::Encodec => "encodec",
            Family::Mimi => "mimi",
        }
    }

    /// The family whose `config.json` this is, if any.
    pub fn detect(config: &Value) -> Option<Family> {
        let has = |k: &str| config.get(k).is_some();
        // transformers configs name their model; SNAC's are bare keyword arguments.
        match config.get("model_type").and_then(Value::as_str) {
            Some("encodec") => return Some(Family::Encodec),
            Some("mimi") => return Some(Family::Mimi),
            _ => {}
        }
        if has("encoder_rates") && has("vq_strides") {
            return Some(Family::Snac);
        }
        // transformers' DacConfig; without model_type, its DAC-only keys.
        let model_type = config.get("model_type").and_then(Value::as_str);
        if model_type == Some("dac")
            || (model_type.is_none()
                && has("downsampling_ratios")
                && has("n_codebooks")
                && has("decoder_hidden_size"))
        {
            return Some(Family::Dac);
        }
        None
    }

    fn load(self, ckpt: &Checkpoint, id: &str, device: &Device) -> Result<Box<dyn AudioCodec>> {
        match self {
            Family::Snac => Ok(Box::new(Snac::from_checkpoint(ckpt, id, device)?)),
            Family::Dac => Ok(Box::new(Dac::from_checkpoint(ckpt, id, device)?)),
            Family::Encodec => Ok(Box::new(Encodec::from_checkpoint(ckpt, id, device)?)),
            Family::Mimi => Ok(Box::new(Mimi::from_checkpoint(ckpt, id, device)?)),
        }
    }
}

/// One public checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CodecEntry {
    pub id: &'static str,
    pub family: Family,
    /// The Hugging Face repository whose layout is read.
    pub repo: &'static str,
    pub description: &'static str,
}

/// Rates and code layout of a checkpoint, from its default config (no weights needed).
#[derive(Debug, Clone, PartialEq)]
pub struct CodecFacts {
    pub sample_rate: u32,
    pub channels: usize,
    pub levels: Vec<LevelSpec>,
}

impl CodecFacts {
    fn of(codec: &dyn AudioCodec) -> Self {
        CodecFacts {
            sample_rate: codec.sample_rate(),
            channels: codec.channels(),
            levels: codec.levels(),
        }
    }

    /// Bits per second with `n_q` codebooks per level (all of them when `None`).
    pub fn bitrate(&self, n_q: Option<usize>) -> f64 {
        self.levels
            .iter()
            .map(|l| {
                let q = n_q.unwrap_or(l.n_q).min(l.n_q) as f64;
                q * l.frame_rate * (l.codebook_size as f64).log2()
            })
            .sum()
    }
}

const ENTRIES: &[CodecEntry] = &[
    CodecEntry {
        id: "snac_24khz",
        family: Family::Snac,
        repo: "hubertsiuzdak/snac_24khz",
        description: "SNAC 24 kHz speech codec, 3 scales (12/23/47 Hz), 0.98 kbps",
    },
    CodecEntry {
        id: "snac_32khz",
        family: Family::Snac,
        repo: "hubertsiuzdak/snac_32khz",
        description: "SNAC 32 kHz music/sfx codec, 4 scales, local attention",
    },
    CodecEntry {
        id: "snac_44khz",
        family: Family::Snac,
        repo: "hubertsiuzdak/snac_44khz",
        description: "SNAC 44.1 kHz music/sfx codec, 4 scales, local attention",
    },
    CodecEntry {
        id: "dac_16khz",
        family: Family::Dac,
        repo: "descript/dac_16khz",
        description: "DAC 16 kHz, 12 codebooks at 50 Hz, 6 kbps",
    },
    CodecEntry {
        id: "dac_24khz",
        family: Family::Dac,
        repo: "descript/dac_24khz",
        description: "DAC 24 kHz, 32 codebooks at 75 Hz, 24 kbps",
    },
    CodecEntry {
        id: "dac_44khz",
        family: Family::Dac,
        repo: "descript/dac_44khz",
        description: "DAC 44.1 kHz, 9 codebooks at 86 Hz, 7.75 kbps",
    },
    CodecEntry {
        id: "mimi",
        family: Family::Mimi,
        repo: "kyutai/mimi",
        description: "Mimi 24 kHz speech codec (Moshi), 12.5 Hz, 1 semantic + 31 acoustic \
                      codebooks, streaming; 8 codebooks (1.1 kbps) by default",
    },
    CodecEntry {
        id: "encodec_24khz",
        family: Family::Encodec,
        repo: "facebook/encodec_24khz",
        description: "EnCodec 24 kHz general audio codec, 75 Hz, 1.5/3/6/12/24 kbps (2-32 \
                      codebooks), streaming; 1.5 kbps by default",
    },
];

/// Every registered checkpoint, in display order.
pub fn entries() -> &'static [CodecEntry] {
    ENTRIES
}

/// The entry for an id, if it is one.
pub fn find(id: &str) -> Option<&'static CodecEntry> {
    ENTRIES.iter().find(|e| e.id == id)
}

impl CodecEntry {
    /// Sample rate, channels and levels of this checkpoint, from its real default config.
    pub fn facts(&self) -> CodecFacts {
        match self.family {
            Family::Snac => {
                let cfg = match self.id {
                    "snac_24khz" => SnacConfig::snac_24khz(),
                    "snac_32khz" => SnacConfig::snac_32khz(),
                    _ => SnacConfig::snac_44khz(),
                };
                snac_facts(&cfg)
            }
            Family::Dac => {
                let cfg = match self.id {
                    "dac_16khz" => DacConfig::dac_16khz(),
                    "dac_24khz" => DacConfig::dac_24khz(),
                    _ => DacConfig::dac_44khz(),
                };
                dac_facts(&cfg)
            }
            Family::Encodec => {
                let cfg = EncodecConfig::encodec_24khz();
                single_level(
                    cfg.sampling_rate,
                    cfg.audio_channels,
                    LevelSpec {
                        n_q: cfg.num_quantizers(),
                        codebook_size: cfg.codebook_size as u32,
                        frame_rate: cfg.sampling_rate as f64 / cfg.hop_length() as f64,
                    },
                )
            }
            Family::Mimi => {
                let cfg = MimiConfig::mimi();
                single_level(
                    cfg.sampling_rate,
                    cfg.audio_channels,
                    LevelSpec {
                        n_q: cfg.num_quantizers,
                        codebook_size: cfg.codebook_size as u32,
                        frame_rate: cfg.code_frame_rate(),
                    },
                )
            }
        }
    }
}

fn single_level(sample_rate: u32, channels: usize, level: LevelSpec) -> CodecFacts {
    CodecFacts {
        sample_rate,
        channels,
        levels: vec![level],
    }
}

fn snac_facts(cfg: &SnacConfig) -> CodecFacts {
    CodecFacts {
        sample_rate: cfg.sampling_rate,
        channels: 1,
        levels: (0..cfg.vq_strides.len())
            .map(|k| LevelSpec {
                n_q: 1,
                codebook_size: cfg.codebook_size as u32,
                frame_rate: cfg.frame_rate(k),
            })
            .collect(),
    }
}

fn dac_facts(cfg: &DacConfig) -> CodecFacts {
    CodecFacts {
        sample_rate: cfg.sampling_rate,
        channels: 1,
        levels: vec![LevelSpec {
            n_q: cfg.n_codebooks,
            codebook_size: cfg.codebook_size as u32,
            frame_rate: cfg.frame_rate(),
        }],
    }
}

/// Facts of a loaded codec (for local directories, which have no registry entry).
pub fn facts_of(codec: &dyn AudioCodec) -> CodecFacts {
    CodecFacts::of(codec)
}

/// Where a `--codec` value points.
#[derive(Debug, Clone)]
pub enum CodecSource {
    Registered(&'static CodecEntry),
    Directory(PathBuf),
}

/// Interpret a `--codec` value: an existing directory, else a registry id.
pub fn parse_source(spec: &str) -> Result<CodecSource> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(CodecSource::Directory(path.to_path_buf()));
    }
    if let Some(e) = find(spec) {
        return Ok(CodecSource::Registered(e));
    }
    let ids: Vec<&str> = ENTRIES.iter().map(|e| e.id).collect();
    Err(Error::invalid(format!(
        "'{spec}' is neither a codec id nor a checkpoint directory; ids: {} (see `tessera codecs`)",
        ids.join(", ")
    )))
}

/// Load a codec from an id (hub cache, downloaded when allowed) or a checkpoint directory.
pub fn load_codec(spec: &str, device: &Device, progress: bool) -> Result<Box<dyn AudioCodec>> {
    match parse_source(spec)? {
        CodecSource::Registered(e) => {
            let dir = hub::resolve_checkpoint(e.repo, None, progress)?;
            let ckpt = Checkpoint::open(&dir)?;
            e.family.load(&ckpt, e.id, device)
        }
        CodecSource::Directory(dir) => load_dir(&dir, device),
    }
}

/// Load a checkpoint directory, detecting the family from its `config.json`.
pub fn load_dir(dir: &Path, device: &Device) -> Result<Box<dyn AudioCodec>> {
    let ckpt = Checkpoint::open(dir)?;
    let config = ckpt.config_json()?;
    let family = Family::detect(&config).ok_or_else(|| {
        Error::file(
            &ckpt.config,
            "not the config of a codec tessera knows (SNAC, DAC, EnCodec, Mimi); is this the \
             right directory?",
        )
    })?;
    family.load(&ckpt, &dir_id(dir), device)
}

/// The codec id for a directory: the registry id when it is a hub cache snapshot of a registered
/// repo (`.../models--ORG--NAME/snapshots/REV`), else the directory's name.
pub fn dir_id(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let parts: Vec<String> = canonical
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let Some(i) = parts.iter().rposition(|p| p == "snapshots")
        && i >= 1
        && let Some(repo) = parts[i - 1].strip_prefix("models--")
    {
        let repo = repo.replacen("--", "/", 1);
        if let Some(e) = ENTRIES.iter().find(|e| e.repo == repo) {
            return e.id.to_string();
        }
    }
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "codec".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_facts_derive_from_configs() {
        let mut ids: Vec<&str> = ENTRIES.iter().map(|e| e.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), ENTRIES.len());
        let f = find("snac_24khz").unwrap().facts();
        assert_eq!(f.sample_rate, 24_000);
        assert_eq!(f.levels.len(), 3);
        assert!((f.levels[2].frame_rate - 46.875).abs() < 1e-12);
        // 12 bits x (11.72 + 23.44 + 46.88) frames/s = 984.4 bit/s.
        assert!((f.bitrate(None) - 984.375).abs() < 1e-9);
        assert_eq!(find("snac_44khz").unwrap().facts().levels.len(), 4);
        for (id, rate, n_q, kbps) in [
            ("dac_16khz", 50.0, 12, 6.0),
            ("dac_24khz", 75.0, 32, 24.0),
            ("dac_44khz", 44100.0 / 512.0, 9, 7.751953125),
        ] {
            let f = find(id).unwrap().facts();
            assert_eq!(f.levels.len(), 1, "{id}");
            assert_eq!(f.levels[0].frame_rate, rate, "{id}");
            assert_eq!(f.levels[0].n_q, n_q, "{id}");
            assert!((f.bitrate(None) - kbps * 1000.0).abs() < 1e-6, "{id}");
        }
        let f = find("mimi").unwrap().facts();
        assert_eq!((f.sample_rate, f.levels[0].n_q), (24_000, 32));
        assert_eq!(f.levels[0].frame_rate, 12.5);
        // 8 codebooks of 11 bits at 12.5 Hz: Mimi's 1.1 kbps.
        assert!((f.bitrate(Some(8)) - 1100.0).abs() < 1e-9);
        let f = find("encodec_24khz").unwrap().facts();
        assert_eq!(f.levels[0].frame_rate, 75.0);
        // 2 codebooks of 10 bits at 75 Hz: 1.5 kbps; all 32: 24 kbps.
        assert!((f.bitrate(Some(2)) - 1500.0).abs() < 1e-9);
        assert!((f.bitrate(None) - 24_000.0).abs() < 1e-9);
    }

    #[test]
    fn families_are_detected_from_configs() {
        let detect = |s: &str| Family::detect(&serde_json::from_str(s).unwrap());
        assert_eq!(detect(r#"{"model_type": "dac"}"#), Some(Family::Dac));
        assert_eq!(
            detect(r#"{"downsampling_ratios": [2], "n_codebooks": 4, "decoder_hidden_size": 8}"#),
            Some(Family::Dac)
        );
        assert_eq!(
            detect(
                r#"{"model_type": "encodec", "n_codebooks": 4, "decoder_hidden_size": 8, "downsampling_ratios": [2]}"#
            ),
            Some(Family::Encodec)
        );
        assert_eq!(detect(r#"{"model_type": "mimi"}"#), Some(Family::Mimi));
        assert_eq!(
            detect(r#"{"model_type": "encodec", "target_bandwidths": [1.5]}"#),
            Some(Family::Encodec)
        );
        assert_eq!(
            detect(r#"{"encoder_rates": [2], "vq_strides": [1]}"#),
            Some(Family::Snac)
        );
    }

    #[test]
    fn unknown_specs_list_the_ids() {
        let e = parse_source("snac_99khz").unwrap_err().to_string();
        assert!(
            e.contains("snac_24khz") && e.contains("tessera codecs"),
            "{e}"
        );
    }

    #[test]
    fn hub_snapshot_dirs_map_to_registry_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = tmp
            .path()
            .join("hub/models--hubertsiuzdak--snac_24khz/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        assert_eq!(dir_id(&snap), "snac_24khz");
        let plain = tmp.path().join("my_codec");
        std::fs::create_dir_all(&plain).unwrap();
        assert_eq!(dir_id(&plain), "my_codec");
    }
}
