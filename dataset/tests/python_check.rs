//! Checks the four formats with the Python tools that will read them: `datasets` (Parquet),
//! Megatron-LM's `IndexedDataset` (or a numpy reader where megatron-core is absent), WebDataset
//! (or `tarfile`) and `numpy.load`. See `dataset/tests/check_formats.py`.
//!
//! Runs only where `TESSERA_REF_PYTHON` names a Python with `datasets`, `pyarrow` and `numpy`
//! (CI has none, and then this test passes without checking anything, saying so on stderr):
//!
//! ```text
//! TESSERA_REF_PYTHON=/work/refenv/bin/python cargo test -p tessera-dataset --test python_check -- --nocapture
//! ```
//! Set `TESSERA_CHECK_KEEP=DIR` to keep the generated shards in DIR.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;
use tessera_dataset::format::megatron::merge_megatron;
use tessera_dataset::format::{Format, ShardName, ShardTarget, open_writer};

/// Writes every format for one tokenizer shape under `root/name`, and returns what the script
/// must find there.
fn write_fixtures(root: &Path, name: &str, spec: &Spec) -> serde_json::Value {
    let ctx = context(spec);
    let items = items(spec);
    let dir = root.join(name);
    // Two shards of half the items each (the npy check needs one tree only: all in shard 0).
    let halves = [&items[..items.len() / 2], &items[items.len() / 2..]];
    for format in [
        Format::Parquet,
        Format::WebDataset,
        Format::Megatron,
        Format::Npy,
    ] {
        let out = dir.join(format.name());
        std::fs::create_dir_all(&out).unwrap();
        let shards: Vec<&[_]> = match format {
            Format::Npy => vec![&items[..]],
            _ => halves.to_vec(),
        };
        for (i, shard) in shards.into_iter().enumerate() {
            let target = ShardTarget {
                staging: &out,
                shard: ShardName { index: i, count: 2 },
                context: &ctx,
            };
            let mut w = open_writer(format, &target).unwrap();
            for it in shard {
                w.write(it).unwrap();
            }
            w.finish().unwrap();
        }
    }
    let meg = dir.join("megatron");
    let prefixes: Vec<PathBuf> = (0..2)
        .map(|i| meg.join(format!("data-{i:05}-of-00002")))
        .collect();
    merge_megatron(&prefixes, &meg.join("merged")).unwrap();

    let items_json: Vec<serde_json::Value> = items
        .iter()
        .map(|it| {
            let levels: Vec<Vec<Vec<u32>>> =
                (0..it.codes.n_levels()).map(|k| level(it, k)).collect();
            json!({
                "id": it.item.id,
                "source": it.item.source,
                "text": it.item.text,
                "n_samples": it.n_samples,
                "rel_stem": it.item.rel_path.with_extension("").to_string_lossy(),
                "levels": levels,
                "tokens": ctx.layout.flatten(&it.codes).unwrap(),
            })
        })
        .collect();
    json!({
        "tokenizer": spec.tokenizer,
        "sample_rate": spec.sample_rate,
        "frame_rates": spec.rates,
        "layout": ctx.layout,
        "shards": 2,
        "items": items_json,
    })
}

#[test]
fn python_readers_accept_every_format() {
    let Ok(python) = std::env::var("TESSERA_REF_PYTHON") else {
        eprintln!("skipped: set TESSERA_REF_PYTHON to a Python with datasets, pyarrow and numpy");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = match std::env::var("TESSERA_CHECK_KEEP") {
        Ok(keep) => PathBuf::from(keep),
        Err(_) => tmp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&root).unwrap();
    let mut expected = serde_json::Map::new();
    for (name, spec) in [
        ("snac", snac()),
        ("mimi", mimi()),
        ("edge", edge()),
        ("wide", wide()),
    ] {
        expected.insert(name.into(), write_fixtures(&root, name, &spec));
    }
    std::fs::write(
        root.join("expected.json"),
        serde_json::to_vec_pretty(&expected).unwrap(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_formats.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&root)
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_DATASETS_CACHE", tmp.path().join("hf-cache"))
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "check_formats.py failed");
}
