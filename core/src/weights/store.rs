//! A lazily-loading store of named tensors over one or more checkpoint files.
//!
//! safetensors files are memory-mapped and pytorch `.bin` files read through candle's pickle
//! reader, which interprets the pickle opcodes for tensors only and never runs code. Keys are
//! renamed by a [`KeyMap`] and weight-normed pairs are folded when a weight is first asked for.
//! The store implements candle-nn's `SimpleBackend`, so models build from a `VarBuilder` as usual,
//! and every error names the key and the file.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

use super::remap::KeyMap;
use super::weight_norm::{WEIGHT_NORM_SUFFIXES, fold_weight_norm};
use crate::{Error, Result};

/// Largest tensor the store will materialise from a pickle (16 GiB); a hostile file could
/// otherwise claim any shape and make us allocate it.
const MAX_TENSOR_BYTES: u64 = 16 << 30;

enum FileBackend {
    Safetensors(MmapedSafetensors),
    Pth(candle_core::pickle::PthTensors),
}

struct WeightFile {
    path: PathBuf,
    backend: FileBackend,
}

#[derive(Debug, Clone)]
struct Source {
    file: usize,
    key: String,
}

#[derive(Debug, Clone)]
enum Entry {
    Plain(Source),
    WeightNorm { g: Source, v: Source },
}

/// Named tensors from checkpoint files, renamed and folded, loaded on demand.
pub struct WeightStore {
    files: Vec<WeightFile>,
    entries: HashMap<String, Entry>,
    used: Mutex<BTreeSet<String>>,
}

impl WeightStore {
    /// Open checkpoint files (`.safetensors`, or `.bin`/`.pt`/`.pth` pickles) under a key map.
    pub fn open(paths: &[PathBuf], keymap: &KeyMap) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::MissingWeights("no weight files given".into()));
        }
        let mut files = Vec::with_capacity(paths.len());
        let mut raw: Vec<(String, Source)> = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let (backend, keys) = open_file(path)?;
            raw.extend(keys.into_iter().map(|key| {
                (
                    key,
                    Source {
                        file: i,
                        key: String::new(),
                    },
                )
            }));
            files.push(WeightFile {
                path: path.clone(),
                backend,
            });
        }
        let mut plain: HashMap<String, Source> = HashMap::with_capacity(raw.len());
        for (ckpt_key, mut src) in raw {
            if let Some(model_key) = keymap.apply(&ckpt_key) {
                src.key = ckpt_key;
                if let Some(prev) = plain.insert(model_key.clone(), src.clone()) {
                    return Err(Error::file(
                        &files[src.file].path,
                        format!(
                            "weights '{}' and '{}' both map to '{model_key}'",
                            prev.key, src.key
                        ),
                    ));
                }
            }
        }
        let entries = pair_weight_norms(plain);
        Ok(WeightStore {
            files,
            entries,
            used: Mutex::new(BTreeSet::new()),
        })
    }

    /// The model-side names of every weight (after renaming and folding), sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.entries.keys().cloned().collect();
        k.sort();
        k
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Weights that no model component has asked for yet: after building a model, a non-empty
    /// list means the checkpoint and the config disagree.
    pub fn unused_keys(&self) -> Vec<String> {
        let used = self.used.lock().expect("weight store lock");
        self.keys()
            .into_iter()
            .filter(|k| !used.contains(k))
            .collect()
    }

    /// Load one weight (renamed, folded), in its stored dtype, on the CPU.
    pub fn load(&self, name: &str) -> Result<Tensor> {
        Ok(self.load_candle(name)?)
    }

    fn files_list(&self) -> String {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        names.join(", ")
    }

    fn load_candle(&self, name: &str) -> candle_core::Result<Tensor> {
        let entry = self.entries.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "weight '{name}' is missing from {}",
                self.files_list()
            ))
        })?;
        self.used
            .lock()
            .expect("weight store lock")
            .insert(name.to_string());
        match entry {
            Entry::Plain(src) => self.read(src),
            Entry::WeightNorm { g, v } => {
                let (gt, vt) = (self.read(g)?, self.read(v)?);
                fold_weight_norm(&gt, &vt).map_err(|e| {
                    candle_core::Error::Msg(format!(
                        "weight '{name}' in {}: {e}",
                        self.files[v.file].path.display()
                    ))
                })
            }
        }
    }

    fn read(&self, src: &Source) -> candle_core::Result<Tensor> {
        let file = &self.files[src.file];
        let t = match &file.backend {
            FileBackend::Safetensors(st) => st.load(&src.key, &Device::Cpu),
            FileBackend::Pth(p) => p
                .get(&src.key)
                .and_then(|t| t.ok_or_else(|| candle_core::Error::Msg("not a tensor".into()))),
        };
        t.map_err(|e| {
            candle_core::Error::Msg(format!(
                "cannot read weight '{}' from {}: {e}",
                src.key,
                file.path.display()
            ))
        })
    }

    fn path_of(&self, name: &str) -> String {
        match self.entries.get(name) {
            Some(Entry::Plain(s)) | Some(Entry::WeightNorm { v: s, .. }) => {
                self.files[s.file].path.display().to_string()
            }
            None => self.files_list(),
        }
    }

    /// A `VarBuilder` over this store, producing `dtype` tensors on `device`.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

impl candle_nn::var_builder::SimpleBackend for WeightStore {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.load_candle(name)?;
        if t.shape() != &shape {
            candle_core::bail!(
                "weight '{name}' in {} has shape {:?}, the model config expects {:?}",
                self.path_of(name),
                t.dims(),
                shape.dims()
            );
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load_candle(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}

/// Replace `X<g suffix>` + `X<v suffix>` pairs by one folded `X.weight` entry.
fn pair_weight_norms(mut plain: HashMap<String, Source>) -> HashMap<String, Entry> {
    let mut entries = HashMap::with_capacity(plain.len());
    for (g_suffix, v_suffix, folded_suffix) in WEIGHT_NORM_SUFFIXES {
        let bases: Vec<String> = plain
            .keys()
            .filter_map(|k| k.strip_suffix(g_suffix).map(str::to_string))
            .filter(|base| plain.contains_key(&format!("{base}{v_suffix}")))
            .collect();
        for base in bases {
            let g = plain.remove(&format!("{base}{g_suffix}")).expect("listed");
            let v = plain.remove(&format!("{base}{v_suffix}")).expect("checked");
            entries.insert(format!("{base}{folded_suffix}"), Entry::WeightNorm { g, v });
        }
    }
    for (k, src) in plain {
        entries.entry(k).or_insert(Entry::Plain(src));
    }
    entries
}

fn open_file(path: &Path) -> Result<(FileBackend, Vec<String>)> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::file(path, crate::fsutil::io_reason(&e)))?;
    if meta.len() == 0 {
        return Err(Error::file(path, "empty weights file"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => {
            // SAFETY: the file is mapped read-only; like every mmap reader we rely on nobody
            // truncating it while we run. The safetensors header is validated against its size.
            let st = unsafe { MmapedSafetensors::new(path) }
                .map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
            let keys = st.tensors().into_iter().map(|(k, _)| k).collect();
            Ok((FileBackend::Safetensors(st), keys))
        }
        "bin" | "pt" | "pth" | "ckpt" => {
            let pth = open_pickle(path, meta.len())?;
            let keys = pth.tensor_infos().keys().cloned().collect();
            Ok((FileBackend::Pth(pth), keys))
        }
        _ => Err(Error::file(
            path,
            "unknown weights format: expected .safetensors or a PyTorch .bin/.pt/.pth",
        )),
    }
}

/// Open a PyTorch zip checkpoint, trying the plain state dict first, then the usual wrappers.
fn open_pickle(path: &Path, file_len: u64) -> Result<candle_core::pickle::PthTensors> {
    let mut last_err = None;
    for key in [None, Some("state_dict"), Some("model"), Some("generator")] {
        match candle_core::pickle::PthTensors::new(path, key) {
            Ok(p) if !p.tensor_infos().is_empty() => {
                for (name, info) in p.tensor_infos() {
                    let bytes =
                        info.layout.shape().elem_count() as u64 * info.dtype.size_in_bytes() as u64;
                    if bytes > MAX_TENSOR_BYTES || bytes > file_len.saturating_mul(2) + 4096 {
                        return Err(Error::file(
                            path,
                            format!(
                                "weight '{name}' claims shape {:?}, larger than the file; \
                                 the checkpoint is corrupt",
                                info.layout.dims()
                            ),
                        ));
                    }
                }
                return Ok(p);
            }
            Ok(_) => {}
            Err(e) => last_err = Some(e),
        }
    }
    Err(Error::file(
        path,
        match last_err {
            Some(e) => format!("not a readable PyTorch checkpoint: {e}"),
            None => "no tensors found in the PyTorch checkpoint".to_string(),
        },
    ))
}
