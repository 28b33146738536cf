//! Dilated 7-tap convs at the widths of a DAC decoder, by im2col + gemm and by minimal filtering
//! (`Conv1d::with_winograd`): time per call, the ratio, and the largest difference between the
//! two relative to the output's scale.
//!
//! ```sh
//! cargo run --release -p tessera-benches --example conv_winograd -- [SECONDS_OF_44K_AUDIO]
//! ```
//!
//! Each layer gets the samples a 44.1 kHz DAC decoder's residual units see for that much audio
//! (96 channels at 44 100 Hz, 192 at 22 050, 384 at 5 512, 768 at 689; default 1 s), with
//! dilations 1, 3 and 9, a Snake on the input and a residual added, as in the decoder. Best of
//! 5 calls each, on rayon's default pool (set `RAYON_NUM_THREADS`).

use std::time::Instant;

use candle_core::{Device, Tensor};
use tessera_core::nn::{Conv1d, Conv1dConfig, Snake1d, same_padding};

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

fn main() -> candle_core::Result<()> {
    tessera_benches::keep_freed_memory();
    let seconds: f64 = std::env::args()
        .nth(1)
        .map_or(1.0, |s| s.parse().expect("seconds"));
    let dev = Device::Cpu;
    let (mut total_gemm, mut total_wino) = (0.0, 0.0);
    println!("channels dilation samples   gemm_ms  winograd_ms  ratio  max_rel_diff");
    for (channels, rate) in [
        (96, 44_100.0),
        (192, 22_050.0),
        (384, 5_512.5),
        (768, 689.0),
    ] {
        let len = (rate * seconds) as usize;
        let scale = 1.0 / (7.0 * channels as f64).sqrt();
        let x = Tensor::randn(0f32, 1.0, (1, channels, len), &dev)?;
        let snake = Snake1d::new(Tensor::randn(0f32, 0.5, (1, channels, 1), &dev)?.abs()?)?;
        for dilation in [1, 3, 9] {
            let w = (Tensor::randn(0f32, 1.0, (channels, channels, 7), &dev)? * scale)?;
            let b = Tensor::randn(0f32, 0.1, channels, &dev)?;
            let cfg = Conv1dConfig {
                padding: same_padding(7, dilation),
                dilation,
                ..Default::default()
            };
            let plain = Conv1d::new(w.clone(), Some(b.clone()), cfg)?;
            let wino = Conv1d::new(w, Some(b), cfg)?.with_winograd();
            let run = |c: &Conv1d| c.forward_fused(&x, Some(&snake), None, Some(&x)).unwrap();
            let (tg, yg) = best_of(5, || run(&plain));
            let (tw, yw) = best_of(5, || run(&wino));
            let diff = (&yg - &yw)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let mag = yg.abs()?.max_all()?.to_scalar::<f32>()?;
            println!(
                "{channels:>8} {dilation:>8} {len:>8} {:>9.2} {:>12.2} {:>6.2} {:>13.2e}",
                tg * 1e3,
                tw * 1e3,
                tg / tw,
                diff / mag
            );
            total_gemm += tg;
            total_wino += tw;
        }
    }
    println!(
        "total: gemm {:.1} ms, winograd {:.1} ms, ratio {:.2}",
        total_gemm * 1e3,
        total_wino * 1e3,
        total_gemm / total_wino
    );
    Ok(())
}
