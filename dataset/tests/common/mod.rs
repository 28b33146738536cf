//! Items and contexts shared by the format tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tessera_core::{Codes, CodesMeta};
use tessera_dataset::format::{
    Format, ShardName, ShardTarget, ShardWriter, WriterContext, open_writer,
};
use tessera_dataset::layout::TokenLayout;
use tessera_dataset::{EncodedItem, Item};

/// A tokenizer's shape: codebooks, codebook size and frame rate per level.
#[derive(Debug, Clone)]
pub struct Spec {
    pub tokenizer: &'static str,
    pub sample_rate: u32,
    pub n_q: Vec<usize>,
    pub sizes: Vec<u32>,
    pub rates: Vec<f64>,
}

/// SNAC 24 kHz: three levels of one codebook at 12, 24 and 48 Hz, 4096 entries.
pub fn snac() -> Spec {
    Spec {
        tokenizer: "snac_24khz",
        sample_rate: 24_000,
        n_q: vec![1, 1, 1],
        sizes: vec![4096, 4096, 4096],
        rates: vec![12.0, 24.0, 48.0],
    }
}

/// Mimi-like: one level of 8 codebooks of 2048 at 12.5 Hz.
pub fn mimi() -> Spec {
    Spec {
        tokenizer: "mimi",
        sample_rate: 24_000,
        n_q: vec![8],
        sizes: vec![2048],
        rates: vec![12.5],
    }
}

/// A single level whose codebooks exceed u16 (u32 storage, int32 Megatron tokens).
pub fn wide() -> Spec {
    Spec {
        tokenizer: "wide_test",
        sample_rate: 16_000,
        n_q: vec![2],
        sizes: vec![100_000],
        rates: vec![50.0],
    }
}

/// The largest codebooks that still fit u16 (codes up to 65535; uint16 Megatron tokens too).
pub fn edge() -> Spec {
    Spec {
        tokenizer: "edge_test",
        sample_rate: 16_000,
        n_q: vec![1],
        sizes: vec![65_536],
        rates: vec![25.0],
    }
}

pub fn context(spec: &Spec) -> WriterContext {
    WriterContext {
        tokenizer: spec.tokenizer.into(),
        sample_rate: spec.sample_rate,
        frame_rates: spec.rates.clone(),
        layout: TokenLayout::new(&spec.n_q, &spec.sizes, &spec.rates).unwrap(),
    }
}

/// Deterministic codes for item `seed` with `steps` frames of level 0: values spread over the
/// whole codebook, the largest code included, so that narrowing bugs show.
pub fn level_values(spec: &Spec, seed: u64, steps: usize) -> Vec<Vec<Vec<u32>>> {
    let base = spec.rates[0];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    spec.n_q
        .iter()
        .zip(&spec.sizes)
        .zip(&spec.rates)
        .map(|((&q, &size), &rate)| {
            let frames = steps * (rate / base).round() as usize;
            (0..q)
                .map(|_| {
                    (0..frames)
                        .map(|f| {
                            if f == 0 {
                                size - 1
                            } else {
                                (next() % size as u64) as u32
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

pub fn item(spec: &Spec, id: &str, rel: &str, text: Option<&str>, steps: usize) -> EncodedItem {
    let seed = id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let levels = level_values(spec, seed, steps);
    let n_samples = (steps as f64 / spec.rates[0] * spec.sample_rate as f64).round() as u64;
    let tensors = levels
        .into_iter()
        .map(|l| {
            let q = l.len();
            let t = l[0].len();
            let flat: Vec<u32> = l.into_iter().flatten().collect();
            Tensor::from_vec(flat, (q, t), &Device::Cpu).unwrap()
        })
        .collect();
    let meta = CodesMeta {
        tokenizer: spec.tokenizer.into(),
        tokenizer_version: String::new(),
        sample_rate: Some(spec.sample_rate),
        n_samples: Some(n_samples),
        image_size: None,
        frame_rates: spec.rates.clone(),
        codebook_sizes: spec.sizes.clone(),
        extra: BTreeMap::new(),
    };
    EncodedItem {
        item: Item {
            id: id.into(),
            source: format!("/data/in/{rel}"),
            rel_path: PathBuf::from(rel),
            text: text.map(str::to_owned),
            duration: None,
        },
        n_samples,
        codes: Codes::new(tensors, meta).unwrap(),
    }
}

/// Six items: with and without text, different lengths (one without frames at all), nested and
/// top-level paths, a dot in a directory-free file stem.
pub fn items(spec: &Spec) -> Vec<EncodedItem> {
    vec![
        item(spec, "spk1_utt1", "spk1/utt1.wav", Some("hello there"), 3),
        item(spec, "spk1_utt2", "spk1/utt2.flac", None, 5),
        item(spec, "top", "top.wav", Some("ünïcödé text"), 1),
        item(spec, "empty", "empty.wav", Some(""), 0),
        item(spec, "spk2_a", "spk2/deep/a.b.wav", None, 4),
        item(spec, "spk2_b", "spk2/b.ogg", Some("second speaker"), 2),
    ]
}

pub fn target<'a>(staging: &'a Path, index: usize, context: &'a WriterContext) -> ShardTarget<'a> {
    ShardTarget {
        staging,
        shard: ShardName { index, count: 8 },
        context,
    }
}

/// Writes `items` as shard `index` in `staging`; returns what `finish` returned.
pub fn write_shard(
    format: Format,
    staging: &Path,
    index: usize,
    context: &WriterContext,
    items: &[EncodedItem],
) -> Vec<PathBuf> {
    let mut w: Box<dyn ShardWriter> =
        open_writer(format, &target(staging, index, context)).unwrap();
    for it in items {
        w.write(it).unwrap();
    }
    w.finish().unwrap()
}

/// Every file under `dir`, relative path -> bytes, sorted.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Level k of an item as `[n_q][T]`.
pub fn level(item: &EncodedItem, k: usize) -> Vec<Vec<u32>> {
    item.codes.levels()[k].to_vec2::<u32>().unwrap()
}
