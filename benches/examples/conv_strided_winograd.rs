//! The downsampling convs and upsampling transposed convs of EnCodec's and Mimi's SEANet, by
//! the direct kernels and by minimal filtering over frames (`with_winograd`: F(3, 2) for the
//! strided convs, F(4, 2) for the transposed ones): time per call, the ratio, and the largest
//! difference between the two relative to the output's scale.
//!
//! ```sh
//! cargo run --release -p tessera-benches --example conv_strided_winograd -- [SECONDS]
//! ```
//!
//! Each layer gets the frames its model sees for that much audio (default 10 s, 24 kHz), an ELU
//! on its input as in the models. Best of 5 calls each, on rayon's default pool (set
//! `RAYON_NUM_THREADS`). Layers marked `-` keep the direct kernel (`with_winograd` leaves them
//! as they are), so both columns time the same code.

use std::time::Instant;

use candle_core::{Device, Tensor};
use tessera_core::nn::{
    Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig, InputActivation,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn best_of(n: usize, mut f: impl FnMut() -> Tensor) -> (f64, Tensor) {
    let mut best = f64::INFINITY;
    let mut out = f();
    for _ in 0..n {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, out)
}

fn report(name: &str, (t0, y0): (f64, Tensor), (t1, y1): (f64, Tensor)) -> candle_core::Result<()> {
    let diff = (&y0 - &y1)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let mag = y0.abs()?.max_all()?.to_scalar::<f32>()?;
    println!(
        "{name:<34} {:>9.2} {:>12.2} {:>6.2} {:>13.2e}",
        t0 * 1e3,
        t1 * 1e3,
        t0 / t1,
        diff / mag
    );
    Ok(())
}

fn main() -> candle_core::Result<()> {
    tessera_benches::keep_freed_memory();
    let seconds: f64 = std::env::args()
        .nth(1)
        .map_or(10.0, |s| s.parse().expect("seconds"));
    let dev = Device::Cpu;
    let samples = (24_000.0 * seconds) as usize;
    println!("layer                               direct_ms  winograd_ms  ratio  max_rel_diff");
    // (model, input channels at full rate, strides from the input side)
    for (model, c0, strides) in [("encodec", 32, [2, 4, 5, 8]), ("mimi", 64, [4, 5, 6, 8])] {
        let (mut len, mut c) = (samples, c0);
        let (mut t_direct, mut t_wino) = (0.0, 0.0);
        for s in strides {
            let k = 2 * s;
            let scale = 1.0 / ((k * c) as f64).sqrt();
            let x = Tensor::randn(0f32, 1.0, (1, c, len), &dev)?;
            let w = (Tensor::randn(0f32, 1.0, (2 * c, c, k), &dev)? * scale)?;
            let b = Tensor::randn(0f32, 0.1, 2 * c, &dev)?;
            let cfg = Conv1dConfig {
                stride: s,
                ..Default::default()
            };
            let plain = Conv1d::new(w.clone(), Some(b.clone()), cfg)?;
            let wino = Conv1d::new(w, Some(b), cfg)?.with_winograd();
            let run = |conv: &Conv1d| {
                conv.forward_activated(&x, Some(InputActivation::Elu), None, None)
                    .unwrap()
            };
            let direct = best_of(5, || run(&plain));
            let winograd = best_of(5, || run(&wino));
            t_direct += direct.0;
            t_wino += winograd.0;
            report(
                &format!("{model} down {c}->{} s{s}", 2 * c),
                direct,
                winograd,
            )?;
            len = (len - k) / s + 1;
            c *= 2;
        }
        // The decoder mirrors the encoder: from c channels at the frame rate up to c0.
        for &s in strides.iter().rev() {
            let k = 2 * s;
            let scale = 1.0 / ((k * c / s) as f64).sqrt();
            let x = Tensor::randn(0f32, 1.0, (1, c, len), &dev)?;
            let w = (Tensor::randn(0f32, 1.0, (c, c / 2, k), &dev)? * scale)?;
            let b = Tensor::randn(0f32, 0.1, c / 2, &dev)?;
            let cfg = ConvTranspose1dConfig {
                stride: s,
                ..Default::default()
            };
            let plain = ConvTranspose1d::new(w.clone(), Some(b.clone()), cfg)?;
            let wino = ConvTranspose1d::new(w, Some(b), cfg)?.with_winograd();
            let run = |conv: &ConvTranspose1d| {
                conv.forward_activated(&x, Some(InputActivation::Elu))
                    .unwrap()
            };
            let direct = best_of(5, || run(&plain));
            let winograd = best_of(5, || run(&wino));
            t_direct += direct.0;
            t_wino += winograd.0;
            report(&format!("{model} up {c}->{} s{s}", c / 2), direct, winograd)?;
            len = (len - 1) * s + k;
            c /= 2;
        }
        println!(
            "{model} total: direct {:.1} ms, winograd {:.1} ms, ratio {:.2}",
            t_direct * 1e3,
            t_wino * 1e3,
            t_direct / t_wino
        );
    }
    Ok(())
}
