//! From a Hugging Face repo id to a local checkpoint directory.
//!
//! The hub cache (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`) is always looked at first.
//! With the `hub` cargo feature, missing files are downloaded unless `HF_HUB_OFFLINE` is set;
//! otherwise the error says what to download and where to put it.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::{Error, Result};

/// Weight layouts a Hugging Face model repository ships, in order of preference.
const WEIGHT_LAYOUTS: &[&str] = &[
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
];

/// Whether the user asked for no network (`HF_HUB_OFFLINE=1`, as the Python hub library reads it).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// The hub cache directory in use.
pub fn cache_dir() -> PathBuf {
    Cache::from_env().path().clone()
}

fn repo(id: &str, revision: Option<&str>) -> Repo {
    Repo::with_revision(
        id.to_string(),
        RepoType::Model,
        revision.unwrap_or("main").to_string(),
    )
}

/// A checkpoint directory for `repo_id`: from the cache, or downloaded when allowed.
pub fn resolve_checkpoint(
    repo_id: &str,
    revision: Option<&str>,
    progress: bool,
) -> Result<PathBuf> {
    if let Some(dir) = cached_checkpoint(repo_id, revision) {
        return Ok(dir);
    }
    let why = if offline() {
        Some("HF_HUB_OFFLINE is set")
    } else if !cfg!(feature = "hub") {
        Some("this tessera was built without the `hub` feature")
    } else {
        None
    };
    match why {
        Some(why) => Err(not_cached(repo_id, why)),
        None => download(repo_id, revision, progress),
    }
}

/// The snapshot directory of a fully cached checkpoint (config and every weight file).
pub fn cached_checkpoint(repo_id: &str, revision: Option<&str>) -> Option<PathBuf> {
    let cache = Cache::from_env().repo(repo(repo_id, revision));
    let config = cache.get("config.json")?;
    let dir = config.parent()?.to_path_buf();
    for layout in WEIGHT_LAYOUTS {
        if let Some(p) = cache.get(layout) {
            if layout.ends_with(".index.json") {
                return shards_present(&dir, &p).then_some(dir);
            }
            return Some(dir);
        }
    }
    None
}

fn shards_present(dir: &Path, index: &Path) -> bool {
    let Ok(v) = crate::weights::read_json(index) else {
        return false;
    };
    let Some(map) = v.get("weight_map").and_then(|m| m.as_object()) else {
        return false;
    };
    map.values()
        .filter_map(|f| f.as_str())
        .all(|f| dir.join(f).is_file())
}

fn not_cached(repo_id: &str, why: &str) -> Error {
    Error::MissingWeights(format!(
        "weights for '{repo_id}' are not in the Hugging Face cache ({}) and {why}; download them \
         with `huggingface-cli download {repo_id}` (honours HF_HOME), or pass a local directory \
         holding config.json and the weights",
        cache_dir().display()
    ))
}

#[cfg(feature = "hub")]
fn download(repo_id: &str, revision: Option<&str>, progress: bool) -> Result<PathBuf> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::MissingWeights(format!(
            "could not download '{repo_id}' from the Hugging Face hub: {e}; check the network \
             (or set HF_ENDPOINT), or download it with `huggingface-cli download {repo_id}`"
        ))
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(progress)
        .build()
        .map_err(|e| fail(&e))?;
    let api_repo = api.repo(repo(repo_id, revision));
    let config = api_repo.get("config.json").map_err(|e| fail(&e))?;
    let info = api_repo.info().map_err(|e| fail(&e))?;
    let listed: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let layout = WEIGHT_LAYOUTS
        .iter()
        .find(|l| listed.contains(l))
        .ok_or_else(|| fail(&"the repository has no weights in a layout tessera reads"))?;
    let first = api_repo.get(layout).map_err(|e| fail(&e))?;
    if layout.ends_with(".index.json") {
        let v = crate::weights::read_json(&first)?;
        let mut shards: Vec<String> = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.values()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        shards.sort();
        shards.dedup();
        for s in shards {
            api_repo.get(&s).map_err(|e| fail(&e))?;
        }
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| fail(&"the cache returned a file without a directory"))
}

#[cfg(not(feature = "hub"))]
fn download(repo_id: &str, _revision: Option<&str>, _progress: bool) -> Result<PathBuf> {
    Err(not_cached(
        repo_id,
        "this tessera was built without the `hub` feature",
    ))
}
