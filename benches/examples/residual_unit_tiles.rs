//! SEANet's residual units (`EluResidualUnit`) on the FMA kernels and on AMX tiles
//! (`Conv1d::with_tiles`), at the channel counts and frame counts EnCodec and Mimi give them for
//! 10 s of 24 kHz audio: time per call, the ratio, and the largest difference between the two
//! relative to the output's scale.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p tessera-benches --example residual_unit_tiles -- [C] [REPS]
//! ```
//!
//! Best of REPS calls each (default 10); with C, only EnCodec's unit of C channels (for a
//! profiler). Units whose convs cannot run on the tiles (no AMX, or fewer than 32
//! hidden channels) print `-` for the tiles.

use std::time::Instant;

use candle_core::{Device, Tensor};
use tessera_core::nn::{Conv1d, Conv1dConfig, EdgeMode, EluResidualUnit};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn best_of(n: usize, unit: &EluResidualUnit, x: &Tensor) -> candle_core::Result<(f64, Tensor)> {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..n {
        let t = Instant::now();
        let y = unit
            .forward_cpu(x)?
            .expect("the unit fits the fused kernels");
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(y);
    }
    Ok((best, out.expect("n > 0")))
}

fn main() -> candle_core::Result<()> {
    tessera_benches::keep_freed_memory();
    let dev = Device::Cpu;
    println!("unit                          fma_ms  tiles_ms  ratio  max_rel_diff");
    // (model, channels, samples per 10 s, shortcut conv)
    let units = [
        ("encodec res", 32, 240_000, true),
        ("encodec res", 64, 120_000, true),
        ("encodec res", 128, 30_000, true),
        ("encodec res", 256, 6_000, true),
        ("mimi res", 64, 240_000, false),
        ("mimi res", 128, 60_000, false),
        ("mimi res", 256, 12_000, false),
        ("mimi res", 512, 2_000, false),
    ];
    let only: Option<usize> = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("channels"));
    let reps: usize = std::env::args()
        .nth(2)
        .map_or(10, |s| s.parse().expect("reps"));
    for (model, c, len, shortcut) in units {
        if only.is_some_and(|o| o != c || model != "encodec res") {
            continue;
        }
        let x = Tensor::randn(0f32, 1.0, (1, c, len), &dev)?;
        let w = |shape: (usize, usize, usize)| -> candle_core::Result<Tensor> {
            let fan_in = (shape.1 * shape.2) as f64;
            Tensor::randn(0f32, 1.0, shape, &dev)? * (1.0 / fan_in.sqrt())
        };
        let b = |n: usize| Tensor::randn(0f32, 0.1, n, &dev);
        let cfg = Conv1dConfig::default();
        let conv1 = Conv1d::new(w((c / 2, c, 3))?, Some(b(c / 2)?), cfg)?;
        let conv2 = Conv1d::new(w((c, c / 2, 1))?, Some(b(c)?), cfg)?;
        let skip = Conv1d::new(w((c, c, 1))?, Some(b(c)?), cfg)?;
        let tiled = (
            conv1.clone().with_tiles(),
            conv2.clone().with_tiles(),
            skip.clone().with_tiles(),
        );
        let unit = |c1, c2, s| EluResidualUnit {
            conv1: c1,
            conv2: c2,
            shortcut: shortcut.then_some(s),
            pad: (2, 0),
            mode: EdgeMode::Zeros,
        };
        let (t_fma, y_fma) = best_of(reps, &unit(&conv1, &conv2, &skip), &x)?;
        let name = format!("{model} {c} x {len}");
        if !(tiled.0.runs_on_tiles() && tiled.1.runs_on_tiles() && tiled.2.runs_on_tiles()) {
            println!("{name:<28} {:>7.2}         -", t_fma * 1e3);
            continue;
        }
        let (t_tiles, y_tiles) = best_of(10, &unit(&tiled.0, &tiled.1, &tiled.2), &x)?;
        let diff = (&y_fma - &y_tiles)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let scale = y_fma.abs()?.max_all()?.to_scalar::<f32>()?;
        println!(
            "{name:<28} {:>7.2} {:>9.2} {:>6.2} {:>13.2e}",
            t_fma * 1e3,
            t_tiles * 1e3,
            t_fma / t_tiles,
            diff / scale
        );
    }
    Ok(())
}
