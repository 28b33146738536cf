//! RVQ encode/decode throughput at the sizes real codecs use.
//!
//! `cargo bench -p tessera-benches --bench quantizers`. Frames are 10 s of codec latents
//! (EnCodec/DAC 75 Hz -> 750 frames, Mimi 12.5 Hz -> 125 frames); random codebooks.

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tessera_core::quant::{
    Distance, Projection, Quantizer, ResidualVectorQuantizer, VectorQuantizer,
};

// Same allocator as the binary, so the figures are what users get (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Case {
    name: &'static str,
    dim: usize,
    codebook: usize,
    codebook_dim: usize,
    n_q: usize,
    frames: usize,
    distance: Distance,
}

const CASES: &[Case] = &[
    Case {
        name: "encodec_24khz_8q",
        dim: 128,
        codebook: 1024,
        codebook_dim: 128,
        n_q: 8,
        frames: 750,
        distance: Distance::Euclidean,
    },
    Case {
        name: "dac_44khz_9q",
        dim: 1024,
        codebook: 1024,
        codebook_dim: 8,
        n_q: 9,
        frames: 861,
        distance: Distance::Cosine,
    },
    Case {
        name: "mimi_8q",
        dim: 256,
        codebook: 2048,
        codebook_dim: 256,
        n_q: 8,
        frames: 125,
        distance: Distance::Cdist,
    },
];

fn build(case: &Case, dev: &Device) -> ResidualVectorQuantizer {
    let stages = (0..case.n_q)
        .map(|_| {
            let cb = Tensor::randn(0f32, 1.0, (case.codebook, case.codebook_dim), dev).unwrap();
            let vq = VectorQuantizer::new(cb, case.distance).unwrap();
            if case.codebook_dim == case.dim {
                vq
            } else {
                let scale = 1.0 / (case.dim as f64).sqrt();
                let w_in = (Tensor::randn(0f32, 1.0, (case.codebook_dim, case.dim), dev).unwrap()
                    * scale)
                    .unwrap();
                let w_out = Tensor::randn(0f32, 1.0, (case.dim, case.codebook_dim), dev).unwrap();
                vq.with_projections(
                    Projection::new(w_in, None).unwrap(),
                    Projection::new(w_out, None).unwrap(),
                )
                .unwrap()
            }
        })
        .collect();
    ResidualVectorQuantizer::new(stages).unwrap()
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut g = c.benchmark_group("rvq");
    g.sample_size(20);
    for case in CASES {
        let rvq = build(case, &dev);
        let x = Tensor::randn(0f32, 1.0, (1, case.dim, case.frames), &dev).unwrap();
        let codes = rvq.encode(&x).unwrap();
        assert_eq!(codes.dtype(), DType::U32);
        g.throughput(Throughput::Elements(case.frames as u64));
        g.bench_function(format!("encode/{}", case.name), |b| {
            b.iter(|| black_box(rvq.encode(black_box(&x)).unwrap()))
        });
        g.bench_function(format!("decode/{}", case.name), |b| {
            b.iter(|| black_box(rvq.decode(black_box(&codes)).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
