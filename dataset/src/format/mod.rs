//! Output formats: each writes one shard of encoded items into a staging directory; the caller
//! moves the finished files into place (see the pipeline), so a writer never needs to be atomic.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tessera_core::Result;

use crate::item::EncodedItem;
use crate::layout::TokenLayout;

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
