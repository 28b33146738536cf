//! The tokenize pipeline end to end on a generated corpus and the tiny SNAC checkpoint:
//! codes equal one-by-one encoding, bad items are recorded, shards made by separate workers
//! merge to exactly what one process makes, interrupted runs resume to identical bytes, and
//! batching settings never change the output.

mod support;

use std::fs;
use std::path::Path;

use candle_core::{Device, Tensor};
use tessera_codec::audio::{ChannelMode, load_audio};
use tessera_codec::codec::{AudioCodec, EncodeOptions, encode_to_codes};
use tessera_codec::registry::load_dir;
use tessera_dataset::format::Format;
use tessera_dataset::format::npy::parse_npy;
use tessera_dataset::store::LocalStore;
use tessera_dataset::tokenize::Silent;
use tessera_dataset::{Item, Job, ShardAssignment, Summary, TokenizeOptions, input, merge, status};

use support::{assert_same_tree, snac_dir, write_corpus};

fn codec() -> Box<dyn AudioCodec> {
    load_dir(&snac_dir(), &Device::Cpu).unwrap()
}

fn run(
    codec: &dyn AudioCodec,
    items: &[Item],
    out: &Path,
    shards: ShardAssignment,
    options: TokenizeOptions,
) -> Summary {
    let store = LocalStore::create(out).unwrap();
    Job {
        codec,
        store: &store,
        items,
        shards,
        options,
    }
    .run(&Silent)
    .unwrap()
}

fn opts(format: Format) -> TokenizeOptions {
    TokenizeOptions {
        format,
        jobs: 2,
        batch_seconds: 3.0,
        ..TokenizeOptions::default()
    }
}

fn all(count: usize) -> ShardAssignment {
    ShardAssignment { count, index: None }
}

fn corpus(dir: &Path, n: usize) -> Vec<Item> {
    write_corpus(dir, n);
    input::discover(&[dir.join("corpus").display().to_string()]).unwrap()
}

#[test]
fn codes_equal_one_by_one_encoding_and_bad_items_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(dir.path(), 10);
    let codec = codec();
    let out = dir.path().join("out");
    let summary = run(codec.as_ref(), &items, &out, all(3), opts(Format::Npy));
    assert_eq!(summary.items, 13);
    assert_eq!(summary.encoded, 10);
    assert_eq!(summary.failed, 3);

    for item in items.iter().filter(|i| !i.source.contains("/bad/")) {
        let audio = load_audio(&item.source, codec.sample_rate(), ChannelMode::Mono).unwrap();
        let n = audio.n_frames();
        let clip = Tensor::from_vec(audio.channel(0).to_vec(), (1, n), &Device::Cpu).unwrap();
        let alone = encode_to_codes(
            codec.as_ref(),
            &clip,
            codec.sample_rate(),
            &EncodeOptions::default(),
        )
        .unwrap();
        // npy output mirrors the input tree inside the shard directory.
        let shard_dir = fs::read_dir(out.join("shards"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|d| d.join(item.rel_path.with_extension("codes_0.npy")).exists())
            .unwrap_or_else(|| panic!("no shard holds {}", item.id));
        for (k, level) in alone.levels().iter().enumerate() {
            let file = shard_dir.join(item.rel_path.with_extension(format!("codes_{k}.npy")));
            let got = parse_npy(&fs::read(&file).unwrap()).unwrap();
            let want = level.to_vec2::<u32>().unwrap();
            assert_eq!(got.shape, [want.len(), want[0].len()], "{}", file.display());
            assert_eq!(got.data, want.concat(), "{} level {k}", item.id);
        }
    }

    let s = status::status(&LocalStore::create(&out).unwrap()).unwrap();
    assert!(s.complete());
    assert_eq!(s.failures.len(), 3);
    let reasons: Vec<String> = s.failures.iter().map(|f| f.reason.clone()).collect();
    assert!(reasons.iter().any(|r| r.contains("empty")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("too short")),
        "{reasons:?}"
    );
}

#[test]
fn separate_workers_then_merge_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(dir.path(), 9);
    let codec = codec();
    for format in [Format::Megatron, Format::Parquet, Format::WebDataset] {
        let one = dir.path().join(format!("one-{}", format.name()));
        let many = dir.path().join(format!("many-{}", format.name()));
        run(codec.as_ref(), &items, &one, all(4), opts(format));
        std::thread::scope(|s| {
            for k in 0..4 {
                let (codec, items, many) = (codec.as_ref(), &items, &many);
                s.spawn(move || {
                    let shards = ShardAssignment {
                        count: 4,
                        index: Some(k),
                    };
                    run(codec, items, many, shards, opts(format));
                });
            }
        });
        for out in [&one, &many] {
            merge::merge(&LocalStore::create(out).unwrap()).unwrap();
        }
        assert_same_tree(&one, &many);
        if format == Format::Megatron {
            assert!(one.join("merged.bin").exists() && one.join("merged.idx").exists());
        }
    }
}

#[test]
fn interrupted_runs_resume_to_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(dir.path(), 8);
    let codec = codec();
    let clean = dir.path().join("clean");
    run(
        codec.as_ref(),
        &items,
        &clean,
        all(3),
        opts(Format::Parquet),
    );

    // The states a killed run can leave: a shard in place without its done marker (killed
    // before the marker), a stale error file, and staging leftovers.
    let out = dir.path().join("resumed");
    run(codec.as_ref(), &items, &out, all(3), opts(Format::Parquet));
    fs::remove_file(out.join("done/00001.json")).unwrap();
    fs::write(
        out.join("shards/data-00001-of-00003.parquet"),
        b"half a file",
    )
    .unwrap();
    fs::remove_file(out.join("done/00002.json")).unwrap();
    fs::remove_file(out.join("shards/data-00002-of-00003.parquet")).unwrap();
    fs::create_dir_all(out.join(".staging/shard-1-0")).unwrap();
    fs::write(out.join(".staging/shard-1-0/junk"), b"x").unwrap();
    let summary = run(codec.as_ref(), &items, &out, all(3), opts(Format::Parquet));
    assert_eq!(summary.shards_skipped, 1);
    assert_eq!(summary.shards_done, 2);
    assert_same_tree(&clean, &out);
}

#[test]
fn batching_and_threads_do_not_change_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(dir.path(), 8);
    let codec = codec();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    run(codec.as_ref(), &items, &a, all(2), opts(Format::WebDataset));
    let other = TokenizeOptions {
        jobs: 1,
        batch_seconds: 0.01,
        max_batch: 1,
        ..opts(Format::WebDataset)
    };
    run(codec.as_ref(), &items, &b, all(2), other);
    assert_same_tree(&a, &b);
}

#[test]
fn another_job_in_the_same_output_is_refused_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(dir.path(), 4);
    let codec = codec();
    let out = dir.path().join("out");
    run(codec.as_ref(), &items, &out, all(2), opts(Format::Parquet));
    let store = LocalStore::create(&out).unwrap();
    let job = |count, options| Job {
        codec: codec.as_ref(),
        store: &store,
        items: &items,
        shards: all(count),
        options,
    };
    let e = job(3, opts(Format::Parquet))
        .run(&Silent)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("different job") && e.contains("2 shards there, 3 now"),
        "{e}"
    );
    let e = job(2, opts(Format::Npy))
        .run(&Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("format parquet there, npy now"), "{e}");
    let replace = TokenizeOptions {
        overwrite: true,
        ..opts(Format::Npy)
    };
    job(3, replace).run(&Silent).unwrap();
    let s = status::status(&store).unwrap();
    assert_eq!(
        (s.format.as_str(), s.num_shards, s.done.len()),
        ("npy", 3, 3)
    );
    assert!(!out.join("shards/data-00000-of-00002.parquet").exists());
}

#[test]
fn merge_refuses_an_incomplete_output_and_bad_options_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let items = corpus(dir.path(), 4);
    let codec = codec();
    let out = dir.path().join("out");
    let store = LocalStore::create(&out).unwrap();
    let only_one = ShardAssignment {
        count: 2,
        index: Some(1),
    };
    run(
        codec.as_ref(),
        &items,
        &out,
        only_one,
        opts(Format::Megatron),
    );
    let e = merge::merge(&store).unwrap_err().to_string();
    assert!(
        e.contains("1 of 2 shards are not done") && e.contains("shard 0"),
        "{e}"
    );
    let e = status::status(&LocalStore::create(&dir.path().join("empty")).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("plan.json") && e.contains("not found"), "{e}");
    for bad in [
        TokenizeOptions {
            batch_seconds: f64::NAN,
            ..opts(Format::Npy)
        },
        TokenizeOptions {
            jobs: 0,
            ..opts(Format::Npy)
        },
        TokenizeOptions {
            n_q: Some(99),
            ..opts(Format::Npy)
        },
    ] {
        let job = Job {
            codec: codec.as_ref(),
            store: &store,
            items: &items,
            shards: all(2),
            options: bad,
        };
        assert!(job.run(&Silent).is_err());
    }
}
