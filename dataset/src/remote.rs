//! Inputs in object stores: `s3://bucket/prefix/` (every audio object below it) or
//! `s3://bucket/key.flac` (one object), and the same for `gs://` and `az://`.
//!
//! Discovery lists the objects; decoding fetches one object at a time into a local temporary
//! file (symphonia wants a seekable file, and the extension helps it pick a demuxer), so local
//! disk use is bounded by the decoding threads' items in flight.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tessera_core::{Error, Result};

use crate::input::{AUDIO_EXTENSIONS, id_from};
use crate::item::Item;
use crate::store::{ObjectStoreOutput, Store};

/// `scheme://bucket` and the key below it.
fn split(url: &str) -> Result<(String, String)> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::invalid(format!("{url}: not a URL")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::invalid(format!("{url}: no bucket in the URL")));
    }
    Ok((format!("{scheme}://{bucket}"), key.to_string()))
}

fn is_audio(key: &str) -> bool {
    Path::new(key)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Object stores opened so far, one per bucket.
#[derive(Default)]
pub struct Buckets {
    open: Mutex<HashMap<String, Arc<ObjectStoreOutput>>>,
}

impl Buckets {
    fn get(&self, root: &str) -> Result<Arc<ObjectStoreOutput>> {
        let mut open = self.open.lock().expect("bucket cache lock");
        if let Some(s) = open.get(root) {
            return Ok(s.clone());
        }
        let s = Arc::new(ObjectStoreOutput::open(root)?);
        open.insert(root.to_string(), s.clone());
        Ok(s)
    }

    /// The items an input URL names.
    pub fn discover(&self, url: &str) -> Result<Vec<Item>> {
        let (root, key) = split(url)?;
        let store = self.get(&root)?;
        if is_audio(&key) {
            let rel = PathBuf::from(key.rsplit('/').next().unwrap_or(&key));
            return Ok(vec![item(format!("{root}/{key}"), rel)]);
        }
        let prefix = key.trim_end_matches('/');
        let base = prefix.rsplit('/').next().unwrap_or("");
        let mut out = Vec::new();
        for k in store.list_recursive(prefix)? {
            if is_audio(&k) {
                let below = k[prefix.len().min(k.len())..].trim_start_matches('/');
                let rel = Path::new(base).join(below);
                out.push(item(format!("{root}/{k}"), rel));
            }
        }
        if out.is_empty() {
            return Err(Error::file(url, "no audio objects found below this URL"));
        }
        Ok(out)
    }

    /// Copy the object at `url` into `dir`, keeping its extension; returns the local path.
    pub fn fetch(&self, url: &str, dir: &Path, name: &str) -> Result<PathBuf> {
        let (root, key) = split(url)?;
        let ext = Path::new(&key)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("bin");
        let dest = dir.join(format!("{name}.{ext}"));
        self.get(&root)?.fetch_to(&key, &dest)?;
        Ok(dest)
    }
}

fn item(source: String, rel_path: PathBuf) -> Item {
    Item {
        id: id_from(&rel_path),
        source,
        rel_path,
        text: None,
        duration: None,
    }
}
