//! `tessera dataset merge`: after every shard is done, write `manifest.json` (the tokenizer,
//! its token layout, the shards and the totals) and, for Megatron output, one combined
//! `merged.bin` + `merged.idx` over all shards in order.

use std::path::PathBuf;

use serde::Serialize;
use tessera_core::{Error, Result};

use crate::format::megatron::{TokenDtype, bin_path, idx_path, merge_megatron};
use crate::layout::TokenLayout;
use crate::marker::{self, ShardDone};
use crate::status::{done_markers, read_plan};
use crate::store::{Store, discard_staging};

pub const MERGED_PREFIX: &str = "merged";

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub version: u32,
    pub tokenizer: TokenizerInfo,
    pub format: String,
    pub num_shards: usize,
    pub shards: Vec<ShardDone>,
    pub totals: Totals,
    /// Megatron output only: the combined index over all shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub megatron: Option<MegatronInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenizerInfo {
    pub id: String,
    pub sample_rate: u32,
    pub channels: usize,
    pub frame_rates: Vec<f64>,
    /// Codebooks per level, codebook sizes, vocabulary offsets (see docs/dataset-formats.md).
    pub layout: TokenLayout,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub items: usize,
    pub encoded: usize,
    pub failed: usize,
    pub audio_seconds: f64,
    pub audio_hours: f64,
    pub tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MegatronInfo {
    pub bin: String,
    pub idx: String,
    pub dtype: String,
    pub vocab_size: u64,
    pub documents: u64,
}

/// Check that every shard is done, write the combined Megatron index if the format is
/// Megatron, and write manifest.json last.
pub fn merge(store: &dyn Store) -> Result<Manifest> {
    let plan = read_plan(store)?;
    let markers = done_markers(store, &plan)?;
    let missing: Vec<usize> = (0..plan.num_shards)
        .filter(|&k| markers[k].is_none())
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(10).map(|k| k.to_string()).collect();
        return Err(Error::invalid(format!(
            "{}: {} of {} shards are not done yet (shard {}{}); run tokenize for them first",
            store.describe(),
            missing.len(),
            plan.num_shards,
            shown.join(", "),
            if missing.len() > 10 { ", ..." } else { "" }
        )));
    }
    let shards: Vec<ShardDone> = markers.into_iter().flatten().collect();
    let mut totals = Totals {
        items: 0,
        encoded: 0,
        failed: 0,
        audio_seconds: 0.0,
        audio_hours: 0.0,
        tokens: 0,
    };
    for d in &shards {
        totals.items += d.items;
        totals.encoded += d.encoded;
        totals.failed += d.failed;
        totals.audio_seconds += d.audio_seconds;
        totals.tokens += d.tokens;
    }
    totals.audio_hours = totals.audio_seconds / 3600.0;
    let megatron = if plan.format == "megatron" {
        Some(merge_megatron_shards(store, &shards, &plan.layout)?)
    } else {
        None
    };
    let manifest = Manifest {
        version: marker::LAYOUT_VERSION,
        tokenizer: TokenizerInfo {
            id: plan.tokenizer.clone(),
            sample_rate: plan.sample_rate,
            channels: plan.channels,
            frame_rates: plan.frame_rates.clone(),
            layout: plan.layout.clone(),
        },
        format: plan.format.clone(),
        num_shards: plan.num_shards,
        shards,
        totals,
        megatron,
    };
    store.put_bytes(marker::MANIFEST_KEY, &marker::to_json(&manifest))?;
    // Every shard is done, so nothing staged belongs to a running worker.
    store.clear_staging()?;
    Ok(manifest)
}

fn merge_megatron_shards(
    store: &dyn Store,
    shards: &[ShardDone],
    layout: &TokenLayout,
) -> Result<MegatronInfo> {
    // Local shards are read in place; object-store shards are fetched to a local staging
    // directory first. The merged files are built in staging and put last.
    let staging = store.staging_dir()?;
    let result = (|| -> Result<MegatronInfo> {
        let mut prefixes = Vec::new();
        for (n, shard) in shards.iter().enumerate() {
            let idx = shard.files.iter().find(|f| f.ends_with(".idx"));
            let bin = shard.files.iter().find(|f| f.ends_with(".bin"));
            let (Some(idx), Some(bin)) = (idx, bin) else {
                return Err(Error::invalid(format!(
                    "the done marker of shard {} lists no .bin/.idx pair",
                    shard.shard
                )));
            };
            let in_place = match (store.local_path(bin), store.local_path(idx)) {
                (Some(b), Some(i)) if b.with_extension("") == i.with_extension("") => {
                    Some(b.with_extension(""))
                }
                _ => None,
            };
            let prefix = match in_place {
                Some(p) => p,
                None => {
                    let p: PathBuf = staging.join(format!("shard{n:05}"));
                    store.fetch_to(bin, &bin_path(&p))?;
                    store.fetch_to(idx, &idx_path(&p))?;
                    p
                }
            };
            prefixes.push(prefix);
        }
        let out = staging.join(MERGED_PREFIX);
        let documents = merge_megatron(&prefixes, &out)?;
        let bin_key = format!("{MERGED_PREFIX}.bin");
        let idx_key = format!("{MERGED_PREFIX}.idx");
        store.put_path(&bin_key, &bin_path(&out))?;
        store.put_path(&idx_key, &idx_path(&out))?;
        let dtype = TokenDtype::for_vocab(layout.vocab_size)?;
        Ok(MegatronInfo {
            bin: bin_key,
            idx: idx_key,
            dtype: match dtype {
                TokenDtype::U16 => "uint16".into(),
                TokenDtype::I32 => "int32".into(),
            },
            vocab_size: layout.vocab_size,
            documents,
        })
    })();
    discard_staging(&staging);
    result
}
