//! Round trips, determinism and edge cases of the four shard formats.

mod common;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt32Type};
use arrow_array::{Array, ListArray};
use arrow_schema::DataType;
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_dataset::EncodedItem;
use tessera_dataset::format::megatron::{MegatronIndex, TokenDtype, merge_megatron};
use tessera_dataset::format::npy::parse_npy;
use tessera_dataset::format::parquet::{ParquetWriter, RowGroupLimits};
use tessera_dataset::format::{CodeWidth, Format, ShardWriter, WriterContext};
use tessera_dataset::layout::TokenLayout;

// ---------------------------------------------------------------- Parquet

/// `[n_q][T]` of row `row` of a `list<list<u16|u32>>` column.
fn nested(col: &ListArray, row: usize) -> Vec<Vec<u32>> {
    let rows = col.value(row);
    let rows = rows.as_list::<i32>();
    (0..rows.len())
        .map(|q| {
            let v = rows.value(q);
            match v.data_type() {
                DataType::UInt16 => v
                    .as_primitive::<UInt16Type>()
                    .values()
                    .iter()
                    .map(|&c| c as u32)
                    .collect(),
                DataType::UInt32 => v.as_primitive::<UInt32Type>().values().to_vec(),
                other => panic!("unexpected leaf type {other:?}"),
            }
        })
        .collect()
}

fn check_parquet(path: &Path, context: &WriterContext, items: &[EncodedItem], leaf: DataType) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let kv: std::collections::HashMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(kv["tessera.tokenizer"], context.tokenizer);
    assert_eq!(kv["tessera.sample_rate"], context.sample_rate.to_string());
    let layout: TokenLayout = serde_json::from_str(&kv["tessera.token_layout"]).unwrap();
    assert_eq!(layout, context.layout);
    let rates: Vec<f64> = serde_json::from_str(&kv["tessera.frame_rates"]).unwrap();
    assert_eq!(rates, context.frame_rates);
    let n_q: Vec<usize> = serde_json::from_str(&kv["tessera.n_q"]).unwrap();
    assert_eq!(n_q, context.layout.n_q);
    let sizes: Vec<u32> = serde_json::from_str(&kv["tessera.codebook_sizes"]).unwrap();
    assert_eq!(sizes, context.layout.codebook_sizes);

    let schema = builder.schema().clone();
    for k in 0..context.layout.n_q.len() {
        let DataType::List(outer) = schema
            .field_with_name(&format!("codes_{k}"))
            .unwrap()
            .data_type()
        else {
            panic!("codes_{k} is not a list");
        };
        let DataType::List(inner) = outer.data_type() else {
            panic!("codes_{k} is not a list of lists");
        };
        assert_eq!(inner.data_type(), &leaf);
    }
    let mut row = 0;
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let sources = batch
            .column_by_name("source")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let texts = batch
            .column_by_name("text")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let rates = batch
            .column_by_name("sample_rate")
            .unwrap()
            .as_primitive::<UInt32Type>()
            .clone();
        let lens = batch
            .column_by_name("n_samples")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>()
            .clone();
        for r in 0..batch.num_rows() {
            let it = &items[row];
            assert_eq!(ids.value(r), it.item.id);
            assert_eq!(sources.value(r), it.item.source);
            assert_eq!(rates.value(r), context.sample_rate);
            assert_eq!(lens.value(r), it.n_samples as i64);
            match &it.item.text {
                Some(t) => assert_eq!(texts.value(r), t),
                None => assert!(texts.is_null(r)),
            }
            for k in 0..it.codes.n_levels() {
                let col = batch.column_by_name(&format!("codes_{k}")).unwrap();
                assert_eq!(
                    nested(col.as_list::<i32>(), r),
                    level(it, k),
                    "item {row} level {k}"
                );
            }
            row += 1;
        }
    }
    assert_eq!(row, items.len());
}

#[test]
fn parquet_round_trip_multi_level_u16() {
    let spec = snac();
    let ctx = context(&spec);
    let items = items(&spec);
    let dir = tempfile::tempdir().unwrap();
    let files = write_shard(Format::Parquet, dir.path(), 3, &ctx, &items);
    assert_eq!(files, vec![PathBuf::from("data-00003-of-00008.parquet")]);
    check_parquet(&dir.path().join(&files[0]), &ctx, &items, DataType::UInt16);
}

#[test]
fn parquet_round_trip_single_level_many_codebooks() {
    let spec = mimi();
    let ctx = context(&spec);
    let items = items(&spec);
    let dir = tempfile::tempdir().unwrap();
    let files = write_shard(Format::Parquet, dir.path(), 0, &ctx, &items);
    check_parquet(&dir.path().join(&files[0]), &ctx, &items, DataType::UInt16);
}

#[test]
fn parquet_uses_u32_when_codebooks_exceed_u16() {
    let spec = wide();
    let ctx = context(&spec);
    let items = items(&spec);
    // The generator puts the largest code (99999) first in every row.
    assert!(level(&items[0], 0)[0][0] > u16::MAX as u32);
    let dir = tempfile::tempdir().unwrap();
    let files = write_shard(Format::Parquet, dir.path(), 0, &ctx, &items);
    check_parquet(&dir.path().join(&files[0]), &ctx, &items, DataType::UInt32);
}

#[test]
fn parquet_keeps_u16_up_to_65536_entries() {
    let spec = edge();
    let ctx = context(&spec);
    let items = items(&spec);
    assert_eq!(level(&items[0], 0)[0][0], 65_535);
    let dir = tempfile::tempdir().unwrap();
    let files = write_shard(Format::Parquet, dir.path(), 0, &ctx, &items);
    check_parquet(&dir.path().join(&files[0]), &ctx, &items, DataType::UInt16);
}

#[test]
fn parquet_cuts_row_groups_by_items_and_by_bytes() {
    let spec = snac();
    let ctx = context(&spec);
    let items = items(&spec);
    let row_groups = |limits: RowGroupLimits| {
        let dir = tempfile::tempdir().unwrap();
        let mut w =
            Box::new(ParquetWriter::with_limits(&target(dir.path(), 0, &ctx), limits).unwrap());
        for it in &items {
            w.write(it).unwrap();
        }
        let files = w.finish().unwrap();
        let path = dir.path().join(&files[0]);
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let groups: Vec<i64> = b
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        check_parquet(&path, &ctx, &items, DataType::UInt16);
        groups
    };
    let by_items = row_groups(RowGroupLimits {
        items: 4,
        code_bytes: usize::MAX,
    });
    assert_eq!(by_items, vec![4, 2]);
    // A 1-byte budget closes a group after every item with codes; the item without frames holds
    // no bytes and joins the next one.
    let by_bytes = row_groups(RowGroupLimits {
        items: usize::MAX,
        code_bytes: 1,
    });
    assert_eq!(by_bytes, vec![1, 1, 1, 2, 1]);
}

// ---------------------------------------------------------------- WebDataset

#[test]
fn webdataset_round_trip() {
    for spec in [snac(), mimi(), wide(), edge()] {
        let ctx = context(&spec);
        let items = items(&spec);
        let dir = tempfile::tempdir().unwrap();
        let files = write_shard(Format::WebDataset, dir.path(), 1, &ctx, &items);
        assert_eq!(files, vec![PathBuf::from("data-00001-of-00008.tar")]);
        let mut archive = tar::Archive::new(File::open(dir.path().join(&files[0])).unwrap());
        let mut members = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!(h.mode().unwrap(), 0o644);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            members.push((name, data));
        }
        let n_levels = spec.n_q.len();
        assert_eq!(members.len(), items.len() * (1 + n_levels));
        let width = CodeWidth::for_codebook(spec.sizes[0]);
        for (i, it) in items.iter().enumerate() {
            let group = &members[i * (1 + n_levels)..(i + 1) * (1 + n_levels)];
            let key = &it.item.id;
            assert_eq!(group[0].0, format!("{key}.json"));
            let json: serde_json::Value = serde_json::from_slice(&group[0].1).unwrap();
            assert_eq!(json["id"], it.item.id.as_str());
            assert_eq!(json["source"], it.item.source.as_str());
            assert_eq!(json["sample_rate"], spec.sample_rate);
            assert_eq!(json["n_samples"], it.n_samples);
            assert_eq!(json["tokenizer"], spec.tokenizer);
            match &it.item.text {
                Some(t) => assert_eq!(json["text"], t.as_str()),
                None => assert!(json["text"].is_null()),
            }
            for k in 0..n_levels {
                assert_eq!(group[1 + k].0, format!("{key}.codes_{k}.npy"));
                let arr = parse_npy(&group[1 + k].1).unwrap();
                let want = level(it, k);
                assert_eq!(arr.width, width);
                assert_eq!(arr.shape, [want.len(), want[0].len()]);
                assert_eq!(arr.data, want.concat());
            }
        }
    }
}

#[test]
fn webdataset_refuses_keys_with_dots() {
    let spec = mimi();
    let ctx = context(&spec);
    let dir = tempfile::tempdir().unwrap();
    let mut w =
        tessera_dataset::format::open_writer(Format::WebDataset, &target(dir.path(), 0, &ctx))
            .unwrap();
    let bad = item(&spec, "a.b", "a.b.wav", None, 2);
    let err = w.write(&bad).unwrap_err().to_string();
    assert!(err.starts_with("/data/in/a.b.wav: "), "{err}");
    assert!(err.contains("dot"), "{err}");
    assert!(!err.contains('\n'));
}

// ---------------------------------------------------------------- Megatron

/// The tokens of every sequence of a Megatron shard, read from .bin through the index.
fn read_sequences(prefix: &Path) -> (MegatronIndex, Vec<Vec<u64>>) {
    let idx = MegatronIndex::read(&PathBuf::from(format!("{}.idx", prefix.display()))).unwrap();
    let bin = std::fs::read(format!("{}.bin", prefix.display())).unwrap();
    assert_eq!(bin.len() as u64, idx.bin_len());
    let size = idx.dtype.size() as usize;
    let seqs = idx
        .sequence_pointers
        .iter()
        .zip(&idx.sequence_lengths)
        .map(|(&p, &l)| {
            bin[p as usize..p as usize + l as usize * size]
                .chunks_exact(size)
                .map(|b| match idx.dtype {
                    TokenDtype::U16 => u16::from_le_bytes([b[0], b[1]]) as u64,
                    TokenDtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64,
                })
                .collect()
        })
        .collect();
    (idx, seqs)
}

#[test]
fn megatron_header_bytes_follow_indexed_dataset() {
    let spec = snac();
    let ctx = context(&spec);
    let items = items(&spec);
    let dir = tempfile::tempdir().unwrap();
    let files = write_shard(Format::Megatron, dir.path(), 2, &ctx, &items);
    assert_eq!(
        files,
        vec![
            PathBuf::from("data-00002-of-00008.bin"),
            PathBuf::from("data-00002-of-00008.idx")
        ]
    );
    let idx = std::fs::read(dir.path().join(&files[1])).unwrap();
    let n = items.len();
    assert_eq!(&idx[..9], b"MMIDIDX\x00\x00");
    assert_eq!(u64::from_le_bytes(idx[9..17].try_into().unwrap()), 1);
    assert_eq!(idx[17], 8, "uint16 dtype code");
    assert_eq!(
        u64::from_le_bytes(idx[18..26].try_into().unwrap()),
        n as u64
    );
    assert_eq!(
        u64::from_le_bytes(idx[26..34].try_into().unwrap()),
        n as u64 + 1
    );
    assert_eq!(idx.len(), 34 + 4 * n + 8 * n + 8 * (n + 1));
    // Lengths: tokens_per_step (1 + 2 + 4 = 7) times the item's coarse frames.
    let first_len = i32::from_le_bytes(idx[34..38].try_into().unwrap());
    assert_eq!(first_len, 7 * 3);
    let docs_at = 34 + 12 * n;
    let docs: Vec<i64> = idx[docs_at..]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(docs, (0..=n as i64).collect::<Vec<_>>());
}

#[test]
fn megatron_round_trip_matches_flattened_layout() {
    for (spec, dtype) in [
        (snac(), TokenDtype::U16),
        (mimi(), TokenDtype::U16),
        (wide(), TokenDtype::I32),
    ] {
        let ctx = context(&spec);
        let items = items(&spec);
        let dir = tempfile::tempdir().unwrap();
        write_shard(Format::Megatron, dir.path(), 0, &ctx, &items);
        let (idx, seqs) = read_sequences(&dir.path().join("data-00000-of-00008"));
        assert_eq!(idx.dtype, dtype, "{}", spec.tokenizer);
        assert_eq!(seqs.len(), items.len());
        for (seq, it) in seqs.iter().zip(&items) {
            assert_eq!(seq, &ctx.layout.flatten(&it.codes).unwrap());
            assert!(seq.iter().all(|&t| t < ctx.layout.vocab_size));
        }
    }
}

#[test]
fn megatron_dtype_follows_vocabulary_size() {
    assert_eq!(TokenDtype::for_vocab(65_536).unwrap(), TokenDtype::U16);
    assert_eq!(TokenDtype::for_vocab(65_537).unwrap(), TokenDtype::I32);
    assert!(TokenDtype::for_vocab(1 << 40).is_err());
    // SNAC's 3 x 4096 and Mimi's 8 x 2048 fit; 2 x 100000 does not.
    assert_eq!(context(&snac()).layout.vocab_size, 3 * 4096);
    assert_eq!(context(&wide()).layout.vocab_size, 200_000);
}

#[test]
fn megatron_merge_of_three_shards_equals_one_shard() {
    for spec in [snac(), wide()] {
        let ctx = context(&spec);
        let mut all = items(&spec);
        all.push(item(&spec, "extra", "x/extra.wav", None, 2));
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one");
        std::fs::create_dir(&one).unwrap();
        write_shard(Format::Megatron, &one, 0, &ctx, &all);

        // Shards of 2, 0 and 3 items: an empty shard must merge too.
        let shards = dir.path().join("shards");
        std::fs::create_dir(&shards).unwrap();
        write_shard(Format::Megatron, &shards, 0, &ctx, &all[..2]);
        write_shard(Format::Megatron, &shards, 1, &ctx, &[]);
        write_shard(Format::Megatron, &shards, 2, &ctx, &all[2..]);
        let prefixes: Vec<PathBuf> = (0..3)
            .map(|i| shards.join(format!("data-{i:05}-of-00008")))
            .collect();
        let merged = dir.path().join("merged");
        assert_eq!(
            merge_megatron(&prefixes, &merged).unwrap(),
            all.len() as u64
        );

        let single = one.join("data-00000-of-00008");
        let read = |p: &Path, ext: &str| std::fs::read(format!("{}.{ext}", p.display())).unwrap();
        assert_eq!(read(&merged, "bin"), read(&single, "bin"));
        let (mi, mseqs) = read_sequences(&merged);
        let (si, sseqs) = read_sequences(&single);
        assert_eq!(mi.sequence_lengths, si.sequence_lengths);
        assert_eq!(mi.sequence_pointers, si.sequence_pointers);
        assert_eq!(mi.document_indices, si.document_indices);
        assert_eq!(mseqs, sseqs);
        // Nothing else distinguishes them: the index is byte-identical too.
        assert_eq!(read(&merged, "idx"), read(&single, "idx"));
    }
}

#[test]
fn megatron_merge_refuses_inconsistent_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (context(&snac()), context(&wide()));
    write_shard(Format::Megatron, dir.path(), 0, &a, &items(&snac()));
    write_shard(Format::Megatron, dir.path(), 1, &b, &items(&wide()));
    let p = |i: usize| dir.path().join(format!("data-{i:05}-of-00008"));
    let out = dir.path().join("out");
    let err = merge_megatron(&[p(0), p(1)], &out).unwrap_err().to_string();
    assert!(
        err.contains("data-00001-of-00008.idx") && err.contains("dtype"),
        "{err}"
    );

    // A truncated .bin is named.
    let bin = dir.path().join("data-00000-of-00008.bin");
    let len = std::fs::metadata(&bin).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bin)
        .unwrap()
        .set_len(len - 2)
        .unwrap();
    let err = merge_megatron(&[p(0)], &out).unwrap_err().to_string();
    assert!(err.contains("data-00000-of-00008.bin"), "{err}");

    // A truncated .idx is named.
    let idx = dir.path().join("data-00001-of-00008.idx");
    let len = std::fs::metadata(&idx).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&idx)
        .unwrap()
        .set_len(len - 8)
        .unwrap();
    let err = merge_megatron(&[p(1)], &out).unwrap_err().to_string();
    assert!(err.contains("data-00001-of-00008.idx"), "{err}");
    assert!(MegatronIndex::read(&idx).is_err());

    assert!(merge_megatron(&[], &out).is_err());
    assert!(merge_megatron(&[p(1)], &p(1)).is_err());
}

// ---------------------------------------------------------------- npy

#[test]
fn npy_mirrors_the_input_tree() {
    for spec in [snac(), wide(), edge()] {
        let ctx = context(&spec);
        let items = items(&spec);
        let dir = tempfile::tempdir().unwrap();
        let files = write_shard(Format::Npy, dir.path(), 5, &ctx, &items);
        assert_eq!(files, vec![PathBuf::from("data-00005-of-00008")]);
        let root = dir.path().join(&files[0]);
        let expected_stems = [
            "spk1/utt1",
            "spk1/utt2",
            "top",
            "empty",
            "spk2/deep/a.b",
            "spk2/b",
        ];
        let n_levels = spec.n_q.len();
        assert_eq!(tree(&root).len(), items.len() * n_levels);
        for (it, stem) in items.iter().zip(expected_stems) {
            for k in 0..n_levels {
                let path = root.join(format!("{stem}.codes_{k}.npy"));
                let arr = parse_npy(&std::fs::read(&path).unwrap()).unwrap();
                let want = level(it, k);
                assert_eq!(arr.width, CodeWidth::for_codebook(spec.sizes[k]));
                assert_eq!(arr.shape, [want.len(), want[0].len()]);
                assert_eq!(arr.data, want.concat());
            }
        }
    }
}

#[test]
fn npy_starts_from_an_empty_tree() {
    let spec = mimi();
    let ctx = context(&spec);
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("data-00000-of-00008/old/stale.codes_0.npy");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"left by an interrupted attempt").unwrap();
    write_shard(Format::Npy, dir.path(), 0, &ctx, &items(&spec)[..1]);
    assert!(!stale.exists());
    assert_eq!(tree(dir.path()).len(), 1);
}

#[test]
fn npy_refuses_colliding_and_escaping_paths() {
    let spec = mimi();
    let ctx = context(&spec);
    let dir = tempfile::tempdir().unwrap();
    let mut w =
        tessera_dataset::format::open_writer(Format::Npy, &target(dir.path(), 0, &ctx)).unwrap();
    w.write(&item(&spec, "a1", "d/a.wav", None, 2)).unwrap();
    let err = w
        .write(&item(&spec, "a2", "d/a.flac", None, 2))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/data/in/d/a.flac: ") && err.contains("d/a.codes_*.npy"),
        "{err}"
    );
    let err = w
        .write(&item(&spec, "up", "../up.wav", None, 2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("leaves the input root"), "{err}");
    assert!(!dir.path().join("up.codes_0.npy").exists());
}

// ---------------------------------------------------------------- all formats

const ALL: [Format; 4] = [
    Format::Parquet,
    Format::WebDataset,
    Format::Megatron,
    Format::Npy,
];

#[test]
fn every_format_is_deterministic() {
    for spec in [snac(), mimi()] {
        let ctx = context(&spec);
        for format in ALL {
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            // Items are rebuilt for the second run: equal values, fresh tensors.
            write_shard(format, a.path(), 4, &ctx, &items(&spec));
            write_shard(format, b.path(), 4, &ctx, &items(&spec));
            let (ta, tb) = (tree(a.path()), tree(b.path()));
            assert!(!ta.is_empty());
            assert_eq!(ta, tb, "{format:?} differs between two runs");
        }
    }
}

#[test]
fn every_format_writes_an_empty_shard() {
    let ctx = context(&snac());
    for format in ALL {
        let dir = tempfile::tempdir().unwrap();
        let files = write_shard(format, dir.path(), 7, &ctx, &[]);
        for f in &files {
            assert!(dir.path().join(f).exists(), "{format:?}: {}", f.display());
        }
    }
    // The empty Parquet file still carries its schema and metadata.
    let dir = tempfile::tempdir().unwrap();
    let files = write_shard(Format::Parquet, dir.path(), 7, &ctx, &[]);
    check_parquet(&dir.path().join(&files[0]), &ctx, &[], DataType::UInt16);
}

#[test]
fn every_format_refuses_codes_of_another_shape() {
    let ctx = context(&snac());
    // Mimi's single level of 8 codebooks is not SNAC's three levels.
    let foreign = item(&mimi(), "m", "m.wav", None, 2);
    // Same levels, but two codebooks in level 0.
    let mut deeper = snac();
    deeper.n_q = vec![2, 1, 1];
    let deeper = item(&deeper, "d", "d.wav", None, 2);
    // Same shapes, other codebook sizes (offsets and dtypes would be wrong).
    let mut bigger = snac();
    bigger.sizes = vec![8192, 8192, 8192];
    let bigger = item(&bigger, "b", "b.wav", None, 2);
    for format in ALL {
        let dir = tempfile::tempdir().unwrap();
        let mut w =
            tessera_dataset::format::open_writer(format, &target(dir.path(), 0, &ctx)).unwrap();
        for (bad, why) in [
            (&foreign, "levels"),
            (&deeper, "codebooks"),
            (&bigger, "codebook sizes"),
        ] {
            let err = w.write(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{}: ", bad.item.source)) && err.contains(why),
                "{format:?}: {err}"
            );
        }
        // The writer is still usable after refusing an item.
        w.write(&item(&snac(), "ok", "ok.wav", None, 2)).unwrap();
        w.finish().unwrap();
    }
}

// ---------------------------------------------------------------- documentation

#[test]
fn documented_snac_example_flattens_as_documented() {
    // The worked example of docs/dataset-formats.md.
    use candle_core::{Device, Tensor};
    let levels = vec![
        Tensor::new(vec![vec![10u32, 20]], &Device::Cpu).unwrap(),
        Tensor::new(vec![vec![1u32, 2, 3, 4]], &Device::Cpu).unwrap(),
        Tensor::new(vec![vec![5u32, 6, 7, 8, 9, 10, 11, 12]], &Device::Cpu).unwrap(),
    ];
    let meta = tessera_core::CodesMeta {
        tokenizer: "snac_24khz".into(),
        tokenizer_version: String::new(),
        sample_rate: Some(24_000),
        n_samples: Some(4000),
        image_size: None,
        frame_rates: vec![12.0, 24.0, 48.0],
        codebook_sizes: vec![4096; 3],
        extra: Default::default(),
    };
    let codes = tessera_core::Codes::new(levels, meta).unwrap();
    let layout = context(&snac()).layout;
    assert_eq!(layout.offsets, vec![vec![0], vec![4096], vec![8192]]);
    assert_eq!((layout.vocab_size, layout.tokens_per_step), (12288, 7));
    assert_eq!(layout.frames_per_step, vec![1, 2, 4]);
    assert_eq!(
        layout.flatten(&codes).unwrap(),
        vec![
            10, 4097, 4098, 8197, 8198, 8199, 8200, //
            20, 4099, 4100, 8201, 8202, 8203, 8204
        ]
    );
    let mimi = context(&mimi()).layout;
    assert_eq!(
        mimi.offsets[0],
        (0..8).map(|q| q * 2048).collect::<Vec<u64>>()
    );
    assert_eq!(mimi.vocab_size, 16384);
}

#[test]
fn code_width_boundary_is_65536_entries() {
    assert_eq!(CodeWidth::for_codebook(65_536), CodeWidth::U16);
    assert_eq!(CodeWidth::for_codebook(65_537), CodeWidth::U32);
    assert_eq!(CodeWidth::for_codebook(1), CodeWidth::U16);
}

#[test]
fn megatron_index_with_absurd_counts_is_an_error_not_an_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.idx");
    let mut b = tessera_dataset::format::megatron::INDEX_MAGIC.to_vec();
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(8);
    b.extend_from_slice(&(u64::MAX / 4).to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    let e = MegatronIndex::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("hostile.idx") && e.contains("absurd counts"),
        "{e}"
    );
}
