//! SNAC encode and decode of 10 s of audio, full-size real configs with random weights built
//! in-process (no checkpoint needed): snac_24khz always, the 32 and 44.1 kHz models too when
//! `TESSERA_BENCH_SNAC=all` (they take minutes). Then the layers that dominate snac_24khz, on
//! 2 s of signal, through tessera's kernels and through candle's own ops (`.../candle`);
//! scripts/reference/snac_speed.py times the same layers in torch. mimalloc is the allocator,
//! as in the CLI.
//!
//! Run: `cargo bench -p tessera-benches --bench snac` (thread count: `RAYON_NUM_THREADS`).
//! With `TESSERA_BENCH_CPU_TIME=1` the same benchmarks measure the on-CPU time of the process's
//! threads instead of wall time: on a shared machine that is what stays comparable (with one
//! thread, against `snac_speed.py --cpu-time` with one torch thread).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;
use std::time::Duration;

use candle_core::{DType, Device, Module, Shape, Tensor};
use candle_nn::VarBuilder;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mimalloc::MiMalloc;
use tessera_codec::codec::Noise;
use tessera_codec::snac::{Snac, SnacConfig};
use tessera_core::nn::{
    Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, NormalRng, Snake1d,
    residual_depthwise_separable,
};

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

fn bench_model<M: Measurement>(c: &mut Criterion<M>, id: &str, config: SnacConfig) {
    // Built on first use, so that filtering out these benchmarks skips the setup.
    let setup = OnceLock::new();
    let get = || {
        setup.get_or_init(|| {
            let x = audio(config.sampling_rate as usize);
            let snac = model(config.clone(), id);
            let codes = snac.encode(&x).unwrap();
            (snac, x, codes)
        })
    };
    let mut group = c.benchmark_group(id);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("encode_10s", |b| {
        let (snac, x, _) = get();
        b.iter(|| snac.encode(x).unwrap())
    });
    group.bench_function("decode_10s", |b| {
        let (snac, _, codes) = get();
        b.iter(|| snac.decode(codes, Noise::Seeded(0)).unwrap())
    });
    group.finish();
}

fn snac<M: Measurement>(c: &mut Criterion<M>) {
    bench_model(c, "snac_24khz", SnacConfig::snac_24khz());
    if std::env::var("TESSERA_BENCH_SNAC").as_deref() == Ok("all") {
        bench_model(c, "snac_32khz", SnacConfig::snac_32khz());
        bench_model(c, "snac_44khz", SnacConfig::snac_44khz());
    }
}

fn randn(shape: &[usize], scale: f32, seed: u64) -> Tensor {
    let t = NormalRng::new(seed)
        .randn(shape.to_vec(), &Device::Cpu)
        .unwrap();
    (t * scale as f64).unwrap()
}

fn snake(c: usize, seed: u64) -> Snake1d {
    let a = (randn(&[1, c, 1], 0.1, seed).abs().unwrap() + 0.8).unwrap();
    Snake1d::new(a).unwrap()
}

/// candle's path for a conv: its `conv1d` plus a broadcast bias.
fn candle_conv(x: &Tensor, conv: &Conv1d) -> Tensor {
    let cfg = conv.config();
    let y = x
        .conv1d(
            conv.weight(),
            cfg.padding,
            cfg.stride,
            cfg.dilation,
            cfg.groups,
        )
        .unwrap();
    y.broadcast_add(&conv.bias().unwrap().reshape((1, (), 1)).unwrap())
        .unwrap()
}

/// candle's ops for snake.
fn candle_snake(x: &Tensor, alpha: &Tensor) -> Tensor {
    let inv = (alpha + 1e-9).unwrap().recip().unwrap();
    (x + inv
        .broadcast_mul(
            &x.broadcast_mul(alpha)
                .unwrap()
                .sin()
                .unwrap()
                .sqr()
                .unwrap(),
        )
        .unwrap())
    .unwrap()
}

fn conv(c_in: usize, c_out: usize, k: usize, cfg: Conv1dConfig, seed: u64) -> Conv1d {
    let fan_in = (c_in / cfg.groups * k) as f32;
    let w = randn(&[c_out, c_in / cfg.groups, k], fan_in.sqrt().recip(), seed);
    Conv1d::new(w, Some(randn(&[c_out], 0.1, seed + 1)), cfg).unwrap()
}

/// The layers that dominate snac_24khz, 2 s of signal each (batch 1).
fn layers<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("snac_layers");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let n = 48_000;
    let same = |k: usize, d: usize, groups: usize| Conv1dConfig {
        padding: d * (k - 1) / 2,
        dilation: d,
        groups,
        ..Default::default()
    };
    let pw = Conv1dConfig::default();
    let dense: Vec<(&str, usize, usize, usize, usize, Conv1dConfig)> = vec![
        // name, c_in, c_out, kernel, input length, config
        ("enc_in_1x48_k7", 1, 48, 7, n, same(7, 1, 1)),
        ("pw_48x48", 48, 48, 1, n, pw),
        (
            "enc_down_48x96_k4_s2",
            48,
            96,
            4,
            n,
            Conv1dConfig {
                padding: 1,
                stride: 2,
                ..pw
            },
        ),
        (
            "enc_down_384x768_k16_s8",
            384,
            768,
            16,
            750,
            Conv1dConfig {
                padding: 4,
                stride: 8,
                ..pw
            },
        ),
        ("pw_64x64", 64, 64, 1, n, pw),
        ("pw_512x512", 512, 512, 1, 750, pw),
        ("dec_out_64x1_k7", 64, 1, 7, n, same(7, 1, 1)),
        ("dw_64_k7_d9", 64, 64, 7, n, same(7, 9, 64)),
    ];
    for (i, (name, c_in, c_out, k, len, cfg)) in dense.into_iter().enumerate() {
        let layer = conv(c_in, c_out, k, cfg, 10 * i as u64);
        let x = randn(&[1, c_in, len], 1.0, 99);
        group.bench_function(format!("{name}/tessera"), |b| {
            b.iter(|| layer.forward(&x).unwrap())
        });
        group.bench_function(format!("{name}/candle"), |b| {
            b.iter(|| candle_conv(&x, &layer))
        });
    }
    // A residual unit of the depthwise models: snake, depthwise k7, snake, 1x1, + x.
    let (c, d) = (64, 3);
    let (s1, s2) = (snake(c, 1), snake(c, 2));
    let (dw, pw1) = (conv(c, c, 7, same(7, d, c), 3), conv(c, c, 1, pw, 4));
    let x = randn(&[1, c, n], 1.0, 5);
    let (a1, a2) = (
        randn(&[1, c, 1], 0.1, 1).abs().unwrap(),
        randn(&[1, c, 1], 0.1, 2).abs().unwrap(),
    );
    group.bench_function("residual_unit_64_d3/tessera", |b| {
        b.iter(|| residual_depthwise_separable(&x, Some(&s1), &dw, Some(&s2), &pw1).unwrap())
    });
    group.bench_function("residual_unit_64_d3/candle", |b| {
        b.iter(|| {
            let y = candle_snake(&candle_conv(&candle_snake(&x, &a1), &dw), &a2);
            (candle_conv(&y, &pw1) + &x).unwrap()
        })
    });
    group.bench_function("snake_64/tessera", |b| b.iter(|| s1.forward(&x).unwrap()));
    group.bench_function("snake_64/candle", |b| b.iter(|| candle_snake(&x, &a1)));
    // Decoder upsampling: 128 -> 64 channels, x2 (to 2 s at 24 kHz), and 1024 -> 512, x8.
    for (name, c_in, c_out, s, len) in [
        ("dec_up_128x64_s2", 128, 64, 2usize, n / 2),
        ("dec_up_1024x512_s8", 1024, 512, 8, 94),
    ] {
        let cfg = ConvTranspose1dConfig {
            padding: s.div_ceil(2),
            output_padding: s % 2,
            stride: s,
            ..Default::default()
        };
        let w = randn(&[c_in, c_out, 2 * s], (c_in as f32).sqrt().recip(), 7);
        let up = ConvTranspose1d::new(w.clone(), None, cfg).unwrap();
        let x = randn(&[1, c_in, len], 1.0, 8);
        group.bench_function(format!("{name}/tessera"), |b| {
            b.iter(|| up.forward(&x).unwrap())
        });
        group.bench_function(format!("{name}/candle"), |b| {
            b.iter(|| {
                x.conv_transpose1d(&w, cfg.padding, cfg.output_padding, s, 1, 1)
                    .unwrap()
            })
        });
    }
    // The gemm peak that the conv layers are measured against.
    let a = randn(&[1024, 1024], 1.0, 11);
    let b = randn(&[1024, 1024], 1.0, 12);
    group.bench_function("matmul_1024/candle", |bench| {
        bench.iter(|| a.matmul(&b).unwrap())
    });
    group.finish();
}

/// On-CPU nanoseconds of every thread of this process (Linux `schedstat`): unlike wall time it
/// does not grow when other processes share the cores.
struct CpuTime;

fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        process_cpu_ns()
    }

    fn end(&self, start: u64) -> u64 {
        process_cpu_ns().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = if typical >= 1e9 {
            (1e9, "s cpu")
        } else if typical >= 1e6 {
            (1e6, "ms cpu")
        } else {
            (1e3, "us cpu")
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(&self, _: f64, _: &Throughput, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v = 0.0);
        "n/a"
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns cpu"
    }
}

fn cpu_time_wanted() -> bool {
    std::env::var("TESSERA_BENCH_CPU_TIME").as_deref() == Ok("1")
}

fn wall(c: &mut Criterion<WallTime>) {
    if !cpu_time_wanted() {
        snac(c);
        layers(c);
    }
}

fn cpu(c: &mut Criterion<CpuTime>) {
    if cpu_time_wanted() {
        snac(c);
        layers(c);
    }
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
