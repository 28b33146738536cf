//! SNAC encode and decode of 10 s of audio, full-size real configs with random weights built
//! in-process (no checkpoint needed). snac_24khz always; the 32 and 44.1 kHz models too when
//! `TESSERA_BENCH_SNAC=all` (they take minutes). mimalloc is the allocator, as in the CLI.
//!
//! Run: `cargo bench -p tessera-benches --bench snac` (thread count: `RAYON_NUM_THREADS`).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use criterion::{Criterion, criterion_group, criterion_main};
use mimalloc::MiMalloc;
use tessera_codec::codec::Noise;
use tessera_codec::snac::{Snac, SnacConfig};
use tessera_core::nn::NormalRng;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const SECONDS: usize = 10;

/// Random weights with torch-like scales, the same for the same name on every run.
struct RandomWeights;

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        let mut rng = NormalRng::new(h.finish());
        let dims = shape.dims().to_vec();
        let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
        let t = rng.randn(shape, &Device::Cpu)?;
        let t = if name.ends_with("alpha") || name.ends_with("norm.weight") {
            ((t * 0.1)? + 1.0)?
        } else if name.ends_with("inv_freq") {
            let n = dims[0];
            let v: Vec<f32> = (0..n)
                .map(|i| 10000f32.powf(-((2 * i) as f32) / (2 * n) as f32))
                .collect();
            Tensor::from_vec(v, n, &Device::Cpu)?
        } else {
            (t / (fan_in as f64).sqrt())?
        };
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: random weights need a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

fn model(config: SnacConfig, id: &str) -> Snac {
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), DType::F32, Device::Cpu);
    Snac::new(config, vb, id).expect("valid config")
}

/// A few partials plus noise at a moderate level.
fn audio(sr: usize) -> Tensor {
    let n = SECONDS * sr;
    let mut noise = vec![0f32; n];
    NormalRng::new(7).fill(&mut noise);
    let v: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f32 / sr as f32;
            0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                + 0.1 * (2.0 * std::f32::consts::PI * 1375.0 * t).sin()
                + 0.05 * noise[i]
        })
        .collect();
    Tensor::from_vec(v, (1, 1, n), &Device::Cpu).unwrap()
}

fn bench_model(c: &mut Criterion, id: &str, config: SnacConfig) {
    let sr = config.sampling_rate as usize;
    let snac = model(config, id);
    let x = audio(sr);
    let codes = snac.encode(&x).unwrap();
    let mut group = c.benchmark_group(id);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("encode_10s", |b| b.iter(|| snac.encode(&x).unwrap()));
    group.bench_function("decode_10s", |b| {
        b.iter(|| snac.decode(&codes, Noise::Seeded(0)).unwrap())
    });
    group.finish();
}

fn snac(c: &mut Criterion) {
    bench_model(c, "snac_24khz", SnacConfig::snac_24khz());
    if std::env::var("TESSERA_BENCH_SNAC").as_deref() == Ok("all") {
        bench_model(c, "snac_32khz", SnacConfig::snac_32khz());
        bench_model(c, "snac_44khz", SnacConfig::snac_44khz());
    }
}

criterion_group!(benches, snac);
criterion_main!(benches);
