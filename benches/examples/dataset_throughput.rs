//! Throughput of `tessera dataset tokenize` against the raw batched encode of the same clips,
//! in one process on the same threads. Prints one JSON line; `benches/compare/dataset_throughput.sh`
//! runs it beside a plain Python loop over the reference package.
//!
//! `cargo run --release -p tessera-benches --example dataset_throughput -- CODEC_DIR INPUT_DIR [FORMAT] [REPS]`
//!
//! The two are run alternately REPS times (default 3) and the medians compared, so that load
//! from other processes hits both alike.
//!
//! - `raw`: every clip decoded and resampled beforehand (not timed), then `encode_batch` over
//!   all of them with the pipeline's batch size: the model's own speed, the ceiling.
//! - `pipeline`: the whole job on the files (discovery, decoding, resampling on worker
//!   threads, batched encoding, writing the shard).

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use tessera_codec::audio::{ChannelMode, load_audio};
use tessera_codec::codec::{EncodeOptions, encode_batch};
use tessera_codec::registry::load_dir;
use tessera_dataset::format::Format;
use tessera_dataset::store::LocalStore;
use tessera_dataset::tokenize::Silent;
use tessera_dataset::{Job, ShardAssignment, TokenizeOptions, input};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    tessera_benches::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!(
            "usage: dataset_throughput CODEC_DIR INPUT_DIR [parquet|webdataset|megatron|npy]"
        );
        std::process::exit(2);
    }
    let codec = load_dir(Path::new(&args[0]), &Device::Cpu).expect("codec");
    let format = args
        .get(2)
        .and_then(|f| Format::parse(f))
        .unwrap_or(Format::Parquet);
    let items = input::discover(&args[1..2]).expect("inputs");
    let reps: usize = args
        .get(3)
        .map_or(3, |r| r.parse().expect("REPS is a number"));
    let options = TokenizeOptions {
        format,
        ..TokenizeOptions::default()
    };

    let rate = codec.sample_rate();
    let t = Instant::now();
    let clips: Vec<Tensor> = items
        .iter()
        .map(|it| {
            let a = load_audio(&it.source, rate, ChannelMode::Mono).expect("decodable input");
            let n = a.n_frames();
            Tensor::from_vec(a.channel(0).to_vec(), (1, n), &Device::Cpu).unwrap()
        })
        .collect();
    // Decoding and resampling alone, on one thread: what the pipeline must hide or pay.
    let decode_s = t.elapsed().as_secs_f64();
    let audio_seconds: f64 = clips.iter().map(|c| c.dims()[1] as f64).sum::<f64>() / rate as f64;
    let opts = EncodeOptions::default();
    // Warm-up on one clip: allocator pools, thread pools.
    encode_batch(codec.as_ref(), &clips[..1], rate, &opts, options.max_batch).unwrap();

    let out = tempfile::tempdir().unwrap();
    let mut raw_times = Vec::new();
    let mut pipe_times = Vec::new();
    for rep in 0..reps.max(1) {
        let t = Instant::now();
        let raw = encode_batch(codec.as_ref(), &clips, rate, &opts, options.max_batch).unwrap();
        raw_times.push(t.elapsed().as_secs_f64());
        drop(raw);

        let store = LocalStore::create(&out.path().join(rep.to_string())).unwrap();
        let job = Job {
            codec: codec.as_ref(),
            store: &store,
            items: &items,
            shards: ShardAssignment {
                count: 1,
                index: None,
            },
            options: options.clone(),
        };
        let t = Instant::now();
        let summary = job.run(&Silent).unwrap();
        pipe_times.push(t.elapsed().as_secs_f64());
        assert_eq!(summary.failed, 0, "the benchmark corpus must decode");
    }
    let raw_s = median(raw_times.clone());
    let pipe_s = median(pipe_times.clone());

    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!(
        "{}",
        serde_json::json!({
            "codec": codec.id(),
            "format": format.name(),
            "items": items.len(),
            "audio_seconds": audio_seconds,
            "threads": threads,
            "jobs": options.jobs,
            "decode_one_thread_s": decode_s,
            "reps": reps,
            "raw_encode_s": raw_s,
            "raw_encode_all_s": raw_times,
            "pipeline_all_s": pipe_times,
            "pipeline_s": pipe_s,
            "raw_audio_hours_per_hour": audio_seconds / raw_s,
            "pipeline_audio_hours_per_hour": audio_seconds / pipe_s,
            "pipeline_vs_raw": raw_s / pipe_s,
        })
    );
}
