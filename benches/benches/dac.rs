//! DAC encode and decode throughput: 10 s of audio through the real descript/dac_16khz config
//! (random weights: speed does not depend on the values).
//!
//! `cargo bench -p tessera-benches --bench dac`; set `RAYON_NUM_THREADS` (2 for the figures in
//! docs/codecs/dac.md). Criterion reports samples per second; real-time factor = that / 16000.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera_codec::dac::{ChunkPolicy, Dac, DacConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gives every weight a model asks for random values of the asked shape (and the same tensor
/// when asked again by name), so a full-size model builds without a checkpoint.
struct RandomWeights {
    made: Mutex<HashMap<String, Tensor>>,
}

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut made = self.made.lock().unwrap();
        if let Some(t) = made.get(name) {
            return Ok(t.clone());
        }
        let dims = s.dims().to_vec();
        let t = if name.ends_with("alpha") {
            Tensor::ones(s, dtype, dev)?
        } else if dims.len() == 3 {
            // Unit-variance activations: std 1 / sqrt(fan_in).
            let fan_in = (dims[1] * dims[2]) as f64;
            Tensor::randn(0f32, (1.0 / fan_in.sqrt()) as f32, s, dev)?.to_dtype(dtype)?
        } else {
            (Tensor::randn(0f32, 1.0, s, dev)? * 0.1)?.to_dtype(dtype)?
        };
        made.insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        let made = self.made.lock().unwrap();
        made.get(name)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("{name} was never shaped")))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.made.lock().unwrap().contains_key(name)
    }
}

fn model(config: DacConfig) -> Dac {
    let backend = RandomWeights {
        made: Mutex::new(HashMap::new()),
    };
    let vb = candle_nn::VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
    Dac::new(config, vb, "dac_16khz").unwrap()
}

fn signal(sample_rate: u32, seconds: f32) -> Tensor {
    let n = (sample_rate as f32 * seconds) as usize;
    let mut state = 0x2545_f491_u32;
    let v: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f32 / sample_rate as f32;
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state as f32 / u32::MAX as f32 - 0.5) * 0.05;
            0.5 * (2.0 * std::f32::consts::PI * (100.0 + 400.0 * t) * t).sin() + noise
        })
        .collect();
    Tensor::from_vec(v, (1, 1, n), &Device::Cpu).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dac_16khz");
    g.sample_size(10);
    let dac = model(DacConfig::dac_16khz());
    let audio = signal(16_000, 10.0);
    let codes = dac.encode(&audio, None).unwrap();
    g.throughput(Throughput::Elements(audio.dims()[2] as u64));
    g.bench_function("encode_10s", |b| {
        b.iter(|| black_box(dac.encode(black_box(&audio), None).unwrap()))
    });
    g.bench_function("decode_10s", |b| {
        b.iter(|| black_box(dac.decode(black_box(&codes)).unwrap()))
    });
    // The default window (256 frames) with exact margins: the cost of bounded memory.
    let policy = ChunkPolicy::default();
    g.bench_function("encode_10s_chunked", |b| {
        b.iter(|| {
            black_box(
                dac.encode_chunked(black_box(&audio), None, &policy)
                    .unwrap(),
            )
        })
    });
    g.bench_function("decode_10s_chunked", |b| {
        b.iter(|| black_box(dac.decode_chunked(black_box(&codes), &policy).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
