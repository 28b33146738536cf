//! Log-mel feature throughput for the recipes codecs and ASR front-ends use.
//!
//! `cargo bench -p tessera-benches --bench logmel`: 10 s of audio per iteration; criterion
//! reports samples per second. Thread count: `TESSERA_BENCH_THREADS` (default 1).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tessera_codec::dsp::{MelSpectrogram, MelSpectrogramConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn signal(sample_rate: u32, seconds: f32) -> Vec<f32> {
    let n = (sample_rate as f32 * seconds) as usize;
    // A chirp plus a deterministic pseudo-noise: exercises every mel band.
    let mut state = 0x2545_f491_u32;
    (0..n)
        .map(|i| {
            let t = i as f32 / sample_rate as f32;
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state as f32 / u32::MAX as f32 - 0.5) * 0.05;
            0.5 * (2.0 * std::f32::consts::PI * (100.0 + 400.0 * t) * t).sin() + noise
        })
        .collect()
}

fn threads() -> usize {
    std::env::var("TESSERA_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("logmel");
    g.sample_size(20);
    let recipes = [
        ("whisper_80", 16_000, MelSpectrogramConfig::whisper(80)),
        ("vocos_24khz", 24_000, MelSpectrogramConfig::vocos_24khz()),
    ];
    for (name, sr, cfg) in recipes {
        let mel = MelSpectrogram::new(cfg).unwrap().with_threads(threads());
        let x = signal(sr, 10.0);
        g.throughput(Throughput::Elements(x.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| black_box(mel.compute(black_box(&x)).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
