//! Output formats: each writes one shard of encoded items into a staging directory; the caller
//! moves the finished files into place (see the pipeline), so a writer never needs to be atomic.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tessera_core::{Error, Result};

use crate::item::EncodedItem;
use crate::layout::TokenLayout;

pub mod megatron;
pub mod npy;
pub mod parquet;
pub mod webdataset;

pub use megatron::{MegatronIndex, MegatronWriter, merge_megatron};
pub use npy::NpyWriter;
pub use parquet::ParquetWriter;
pub use webdataset::WebDatasetWriter;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    WebDataset,
    Megatron,
    Npy,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::WebDataset => "webdataset",
            Format::Megatron => "megatron",
            Format::Npy => "npy",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "parquet" => Some(Format::Parquet),
            "webdataset" | "wds" => Some(Format::WebDataset),
            "megatron" => Some(Format::Megatron),
            "npy" => Some(Format::Npy),
            _ => None,
        }
    }
}

/// Names a shard: `data-00003-of-00008`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardName {
    pub index: usize,
    pub count: usize,
}

impl ShardName {
    pub fn stem(&self) -> String {
        format!("data-{:05}-of-{:05}", self.index, self.count)
    }
}

/// What every writer is told about the tokenizer whose codes it stores.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterContext {
    /// Tokenizer id (e.g. `snac_24khz`) and the codes' sample rate.
    pub tokenizer: String,
    pub sample_rate: u32,
    /// Frame rate of each level.
    pub frame_rates: Vec<f64>,
    /// The layout of the codes every item of this dataset has (depth kept per level, codebook
    /// sizes, vocabulary offsets).
    pub layout: TokenLayout,
}

/// Writes one shard. Items arrive in shard order; `finish` flushes and closes, and returns the
/// paths it created, relative to the staging directory (a file, or a directory for npy).
pub trait ShardWriter: Send {
    fn write(&mut self, item: &EncodedItem) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>>;
}

/// Staging directory and shard name handed to every writer's constructor.
pub struct ShardTarget<'a> {
    pub staging: &'a Path,
    pub shard: ShardName,
    pub context: &'a WriterContext,
}

/// Opens the writer of `format` for one shard.
pub fn open_writer(format: Format, target: &ShardTarget) -> Result<Box<dyn ShardWriter>> {
    Ok(match format {
        Format::Parquet => Box::new(ParquetWriter::create(target)?),
        Format::WebDataset => Box::new(WebDatasetWriter::create(target)?),
        Format::Megatron => Box::new(MegatronWriter::create(target)?),
        Format::Npy => Box::new(NpyWriter::create(target)?),
    })
}

/// How the codes of one level are stored in the per-level formats (Parquet, WebDataset, npy):
/// the narrowest unsigned integer that holds every code of the codebook, so that the common
/// 1024..=65536-entry codebooks take half the space of u32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeWidth {
    U16,
    U32,
}

impl CodeWidth {
    /// The width for a codebook of `size` entries (codes `0..size`).
    pub fn for_codebook(size: u32) -> Self {
        if size <= 1 << 16 {
            CodeWidth::U16
        } else {
            CodeWidth::U32
        }
    }

    /// The numpy dtype string (little-endian).
    pub fn npy_descr(self) -> &'static str {
        match self {
            CodeWidth::U16 => "<u2",
            CodeWidth::U32 => "<u4",
        }
    }
}

/// Checks that an item's codes have the shape of the dataset's layout (levels, codebooks per
/// level, codebook sizes): every writer relies on it, the narrow dtypes and Megatron's vocabulary
/// offsets in particular, and a mismatch means the pipeline mixed tokenizers or `--n-q` depths.
pub(crate) fn check_item(context: &WriterContext, item: &EncodedItem) -> Result<()> {
    let layout = &context.layout;
    let codes = &item.codes;
    let shapes = codes.shapes();
    let sizes = &codes.meta().codebook_sizes;
    let reason = if shapes.len() != layout.n_q.len() {
        Some(format!(
            "codes have {} levels, the dataset's tokenizer {}",
            shapes.len(),
            layout.n_q.len()
        ))
    } else if let Some(k) = (0..shapes.len()).find(|&k| shapes[k][0] != layout.n_q[k]) {
        Some(format!(
            "level {k} has {} codebooks, the dataset keeps {}",
            shapes[k][0], layout.n_q[k]
        ))
    } else if *sizes != layout.codebook_sizes {
        Some(format!(
            "codebook sizes {sizes:?} differ from the dataset's {:?}",
            layout.codebook_sizes
        ))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::file(&item.item.source, reason)),
        None => Ok(()),
    }
}

/// The codes of one level in C order (`[n_q, T]` row-major), as u32.
pub(crate) fn level_codes(item: &EncodedItem, k: usize) -> Result<Vec<u32>> {
    let level = item
        .codes
        .level(k)
        .ok_or_else(|| Error::file(&item.item.source, format!("codes have no level {k}")))?;
    Ok(level.flatten_all()?.to_vec1::<u32>()?)
}

/// Appends `.ext` to a path stem without touching dots already in it.
pub(crate) fn with_suffix(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    dir.join(format!("{stem}.{ext}"))
}
