//! Decoder prefill and decode throughput on a ~100M-parameter Llama shape with random weights
//! (benches/src/lm.rs), all layers global and with five 128-token window layers to one global.
//!
//! `cargo bench -p tessera-benches --bench lm`: prefill of 512 tokens in one forward pass, and
//! 128 greedy decode steps after that prompt (the prefill is set-up, not timed); criterion reports
//! tokens per second. Threads: `RAYON_NUM_THREADS` (default: all cores). The side-by-side
//! comparison with transformers and candle-transformers is benches/compare/lm_vs_peers.py.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tessera_benches::lm::{llama_100m_config, random_decoder, speed_prompt, with_window_pattern};
use tessera_lm::sampling::argmax;
use tessera_lm::{Decoder, DecoderCache, DecoderConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROMPT: usize = 512;
const NEW: usize = 128;

fn models() -> Vec<(&'static str, Decoder)> {
    let cfg = DecoderConfig::from_json(&llama_100m_config()).expect("a valid config");
    let hybrid = with_window_pattern(cfg.clone(), 128, 6);
    vec![
        ("global", random_decoder(&cfg, 1).expect("model")),
        ("window_5to1", random_decoder(&hybrid, 1).expect("model")),
    ]
}

fn prefilled(model: &Decoder, prompt: &[u32]) -> (DecoderCache, u32) {
    let mut cache = model.new_cache_with(0, prompt.len() + NEW);
    let logits = model.forward_last(prompt, &mut cache).expect("prefill");
    let next = argmax(&logits.to_vec1::<f32>().expect("f32 logits"));
    (cache, next)
}

fn bench(c: &mut Criterion) {
    let models = models();
    let prompt = speed_prompt(PROMPT, 32000);

    let mut g = c.benchmark_group("lm_prefill_512");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PROMPT as u64));
    for (name, model) in &models {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut cache = model.new_cache_with(0, PROMPT);
                black_box(model.forward_last(black_box(&prompt), &mut cache).unwrap())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("lm_decode_128");
    g.sample_size(10);
    g.throughput(Throughput::Elements(NEW as u64));
    for (name, model) in &models {
        g.bench_function(*name, |b| {
            b.iter_batched(
                || prefilled(model, &prompt),
                |(mut cache, mut next)| {
                    for _ in 0..NEW {
                        let logits = model.forward_last(&[next], &mut cache).unwrap();
                        next = argmax(&logits.to_vec1::<f32>().unwrap());
                    }
                    black_box(next)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
