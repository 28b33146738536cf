//! EnCodec encode and decode of 10 s of audio: the full encodec_24khz config with random weights
//! built in-process (no checkpoint needed), at 6 kbps (8 codebooks), whole-signal and streamed
//! in 1 s chunks. mimalloc is the allocator, as in the CLI.
//!
//! Run: `cargo bench -p tessera-benches --bench encodec` (thread count: `RAYON_NUM_THREADS`).

#[path = "support/random_weights.rs"]
mod random_weights;

use std::sync::OnceLock;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use criterion::{Criterion, criterion_group, criterion_main};
use mimalloc::MiMalloc;
use random_weights::{RandomWeights, audio};
use tessera_codec::encodec::{Encodec, EncodecConfig, EncodecFrames, EncodecStreamingEncoder};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn bench(c: &mut Criterion) {
    // Built on first use, so that filtering out these benchmarks skips the setup.
    let setup: OnceLock<(Encodec, Tensor, EncodecFrames)> = OnceLock::new();
    let get = || {
        setup.get_or_init(|| {
            let vb =
                VarBuilder::from_backend(Box::<RandomWeights>::default(), DType::F32, Device::Cpu);
            let model = Encodec::new(EncodecConfig::encodec_24khz(), vb, "encodec_24khz")
                .expect("valid config");
            let x = audio(24_000, 10);
            let frames = model.encode(&x, 8).expect("encode");
            (model, x, frames)
        })
    };
    let mut group = c.benchmark_group("encodec_24khz");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("encode_10s_6kbps", |b| {
        let (model, x, _) = get();
        b.iter(|| model.encode(x, 8).unwrap())
    });
    group.bench_function("decode_10s_6kbps", |b| {
        let (model, _, frames) = get();
        b.iter(|| model.decode(frames).unwrap())
    });
    group.bench_function("encode_10s_6kbps_streamed_1s", |b| {
        let (model, x, _) = get();
        b.iter(|| {
            let mut enc = EncodecStreamingEncoder::new(model, 8).unwrap();
            for k in 0..10 {
                enc.step(&x.narrow(2, k * 24_000, 24_000).unwrap()).unwrap();
            }
            enc.finish().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
