//! Mimi encode and decode of 10 s of audio: the full kyutai/mimi config with random weights
//! built in-process (no checkpoint needed), with 8 codebooks, whole-signal and streamed in
//! 80 ms frames (as Moshi feeds it). mimalloc is the allocator, as in the CLI.
//!
//! Run: `cargo bench -p tessera-benches --bench mimi` (thread count: `RAYON_NUM_THREADS`).

#[path = "support/random_weights.rs"]
mod random_weights;

use std::sync::OnceLock;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use criterion::{Criterion, criterion_group, criterion_main};
use mimalloc::MiMalloc;
use random_weights::{RandomWeights, audio};
use tessera_codec::mimi::{Mimi, MimiConfig, MimiStreamingDecoder, MimiStreamingEncoder};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn bench(c: &mut Criterion) {
    let setup: OnceLock<(Mimi, Tensor, Tensor)> = OnceLock::new();
    let get = || {
        setup.get_or_init(|| {
            let vb =
                VarBuilder::from_backend(Box::<RandomWeights>::default(), DType::F32, Device::Cpu);
            let model = Mimi::new(MimiConfig::mimi(), vb, "mimi").expect("valid config");
            let x = audio(24_000, 10);
            let codes = model.encode(&x, 8).expect("encode");
            (model, x, codes)
        })
    };
    let mut group = c.benchmark_group("mimi");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("encode_10s_8q", |b| {
        let (model, x, _) = get();
        b.iter(|| model.encode(x, 8).unwrap())
    });
    group.bench_function("decode_10s_8q", |b| {
        let (model, _, codes) = get();
        b.iter(|| model.decode(codes).unwrap())
    });
    group.bench_function("encode_10s_8q_streamed_80ms", |b| {
        let (model, x, _) = get();
        b.iter(|| {
            let mut enc = MimiStreamingEncoder::new(model, 8).unwrap();
            for k in 0..125 {
                enc.step(&x.narrow(2, k * 1920, 1920).unwrap()).unwrap();
            }
            enc.finish().unwrap()
        })
    });
    group.bench_function("decode_10s_8q_streamed_80ms", |b| {
        let (model, _, codes) = get();
        b.iter(|| {
            let mut dec = MimiStreamingDecoder::new(model).unwrap();
            for k in 0..codes.dims()[2] {
                dec.step(&codes.narrow(2, k, 1).unwrap()).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
