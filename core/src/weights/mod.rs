//! Weights from a local directory in a Hugging Face repository layout.
//!
//! A checkpoint directory holds `config.json` and the weights as the model's own repository ships
//! them: `model.safetensors`, a sharded `model.safetensors.index.json`, or `pytorch_model.bin`
//! (also sharded). Nothing is converted by hand; keys are renamed with a [`KeyMap`] and weight
//! norms are folded as the model loads.

mod remap;
mod store;
mod weight_norm;

pub use remap::KeyMap;
pub use store::WeightStore;
pub use weight_norm::fold_weight_norm;

use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// A `config.json` larger than this is not a model config.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// The files of one checkpoint directory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
}

impl Checkpoint {
    /// Find `config.json` and the weight files in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::file(
                dir,
                if dir.exists() {
                    "not a directory; a checkpoint is a directory with config.json and weights"
                } else {
                    "no such checkpoint directory"
                },
            ));
        }
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(Error::file(
                dir,
                "no config.json here; point at the directory of a Hugging Face checkpoint",
            ));
        }
        let weights = find_weights(dir)?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            weights,
        })
    }

    /// The parsed `config.json`.
    pub fn config_json(&self) -> Result<serde_json::Value> {
        read_json(&self.config)
    }

    /// `config.json` deserialised into a model's config type.
    pub fn read_config<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let value = self.config_json()?;
        serde_json::from_value(value).map_err(|e| Error::file(&self.config, format!("{e}")))
    }

    /// Open the weights under a key map.
    pub fn store(&self, keymap: &KeyMap) -> Result<WeightStore> {
        WeightStore::open(&self.weights, keymap)
    }
}

/// Read a JSON file with a size limit and a one-line error that says where it is broken.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::file(path, crate::fsutil::io_reason(&e)))?
        .len();
    if len > MAX_CONFIG_BYTES {
        return Err(Error::file(
            path,
            format!("{len} bytes is too large for a config file"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))
}

fn find_weights(dir: &Path) -> Result<Vec<PathBuf>> {
    for index in [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ] {
        let p = dir.join(index);
        if p.is_file() {
            return shards_from_index(dir, &p);
        }
    }
    for single in ["model.safetensors", "pytorch_model.bin"] {
        let p = dir.join(single);
        if p.is_file() {
            return Ok(vec![p]);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(Error::MissingWeights(format!(
            "{}: no weights here; expected model.safetensors, model.safetensors.index.json or \
             pytorch_model.bin as in the model's Hugging Face repository",
            dir.display()
        )));
    }
    Ok(found)
}

fn shards_from_index(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    let v = read_json(index)?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::file(index, "no 'weight_map' object in the index"))?;
    let mut shards: Vec<String> = Vec::new();
    for (key, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| Error::file(index, format!("weight '{key}' maps to a non-string")))?;
        // The index is user input: a shard name must stay inside the checkpoint directory.
        let p = Path::new(file);
        if p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::file(
                index,
                format!("shard name '{file}' leaves the checkpoint directory"),
            ));
        }
        if !shards.iter().any(|s| s == file) {
            shards.push(file.to_string());
        }
    }
    if shards.is_empty() {
        return Err(Error::file(index, "the index lists no shards"));
    }
    shards.sort();
    let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
    for p in &paths {
        if !p.is_file() {
            return Err(Error::file(
                p,
                format!("shard listed in {} is missing", index.display()),
            ));
        }
    }
    Ok(paths)
}
