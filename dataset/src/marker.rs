//! The small JSON files that make a dataset job resumable and checkable: the plan every worker
//! agrees on, a done marker per finished shard, and the failed items of each shard.
//!
//! None of them holds a time stamp or a duration of the run: an interrupted and resumed job
//! must leave exactly the bytes an uninterrupted one leaves.

use serde::{Deserialize, Serialize};
use tessera_core::{Error, Result};

use crate::layout::TokenLayout;
use crate::store::Store;

pub const PLAN_KEY: &str = "plan.json";
pub const MANIFEST_KEY: &str = "manifest.json";

/// Bumped when the layout of the output changes incompatibly.
pub const LAYOUT_VERSION: u32 = 1;

pub fn done_key(shard: usize) -> String {
    format!("done/{shard:05}.json")
}

pub fn errors_key(shard: usize) -> String {
    format!("errors/{shard:05}.jsonl")
}

/// What every worker of one job must agree on; written by the first, checked by the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    /// Tokenizer id (registry id or checkpoint directory name).
    pub tokenizer: String,
    pub sample_rate: u32,
    pub channels: usize,
    pub frame_rates: Vec<f64>,
    pub layout: TokenLayout,
    pub format: String,
    pub num_shards: usize,
    pub n_items: usize,
    /// FNV-1a of the sorted (source, id) list: workers given different inputs would make
    /// shards that do not fit together.
    pub inputs_digest: String,
}

/// Written last for each finished shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardDone {
    pub shard: usize,
    pub num_shards: usize,
    /// Keys of the shard's files below the output root.
    pub files: Vec<String>,
    pub items: usize,
    pub encoded: usize,
    pub failed: usize,
    /// Seconds of audio encoded (at the codec's rate).
    pub audio_seconds: f64,
    /// Codes written: the sum over items and levels of `n_q * frames`.
    pub tokens: u64,
}

/// One input that could not be tokenised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedItem {
    pub id: String,
    pub path: String,
    pub reason: String,
}

pub fn digest(items: &[crate::item::Item]) -> String {
    // FNV-1a, 64 bit: stable across Rust versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for item in items {
        for b in item
            .source
            .bytes()
            .chain([0])
            .chain(item.id.bytes())
            .chain([0])
        {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

pub fn to_json(value: &impl Serialize) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(value).expect("marker types serialise");
    v.push(b'\n');
    v
}

/// Read and parse a marker; `None` when absent.
pub fn read<T: for<'de> Deserialize<'de>>(store: &dyn Store, key: &str) -> Result<Option<T>> {
    match store.read(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::file(
                format!("{}/{key}", store.describe()),
                format!("not a valid tessera marker ({e})"),
            )
        }),
    }
}

pub fn read_errors(store: &dyn Store, shard: usize) -> Result<Vec<FailedItem>> {
    let key = errors_key(shard);
    let Some(bytes) = store.read(&key)? else {
        return Ok(Vec::new());
    };
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| {
                Error::file(
                    format!("{}/{key}", store.describe()),
                    format!("not a valid error record ({e})"),
                )
            })
        })
        .collect()
}
