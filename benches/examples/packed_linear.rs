//! The projections of a transformer pass (Mimi's: 8 layers of q/k/v 512 -> 1536, out 512 -> 512,
//! fc1 512 -> 2048, fc2 2048 -> 512, 250 frames) by candle's matmul on a transposed contiguous
//! weight (what `Linear` did before), by the gemm crate on raw slices, and by `PackedLinear`:
//! time per pass, GFLOP/s, and the largest difference from candle relative to the output scale.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p tessera-benches --example packed_linear -- [FRAMES] [LAYERS]
//! ```
//!
//! Every layer has its own weights (100 MB for 8 layers), so each call meets its weight cold,
//! as in a real pass. Best of 10 passes each.

use std::time::Instant;

use candle_core::{Device, Tensor};
use tessera_core::nn::{MatRef, PackedLinear, matmul_into};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Proj {
    /// `[in, out]` contiguous, as the candle path holds it.
    weight_t: Tensor,
    plain_t: Vec<f32>,
    packed: PackedLinear,
    bias: Vec<f32>,
    k: usize,
    n: usize,
}

fn main() -> candle_core::Result<()> {
    tessera_benches::keep_freed_memory();
    let mut args = std::env::args().skip(1);
    let frames: usize = args.next().map_or(250, |s| s.parse().expect("frames"));
    let layers: usize = args.next().map_or(8, |s| s.parse().expect("layers"));
    let dev = Device::Cpu;
    let threads = rayon::current_num_threads();
    let shapes = [(512, 1536), (512, 512), (512, 2048), (2048, 512)];
    let mut projs = Vec::new();
    for _ in 0..layers {
        for &(k, n) in &shapes {
            let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? / (k as f64).sqrt())?;
            let bias = Tensor::randn(0f32, 0.1, n, &dev)?.to_vec1::<f32>()?;
            let plain = w.flatten_all()?.to_vec1::<f32>()?;
            let weight_t = w.t()?.contiguous()?;
            projs.push(Proj {
                plain_t: weight_t.flatten_all()?.to_vec1::<f32>()?,
                weight_t,
                packed: PackedLinear::new(&plain, n, k, Some(&bias)),
                bias,
                k,
                n,
            });
        }
    }
    let inputs: Vec<Tensor> = shapes
        .iter()
        .map(|&(k, _)| Tensor::randn(0f32, 1.0, (frames, k), &dev))
        .collect::<candle_core::Result<_>>()?;
    let input_of = |p: &Proj| {
        &inputs[shapes
            .iter()
            .position(|s| s.0 == p.k && s.1 == p.n)
            .unwrap()]
    };
    let flops: f64 = projs
        .iter()
        .map(|p| 2.0 * (frames * p.k * p.n) as f64)
        .sum();
    let best = |f: &mut dyn FnMut()| {
        f();
        (0..10)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let mut candle_out = Vec::new();
    let t_candle = best(&mut || {
        candle_out = projs
            .iter()
            .map(|p| input_of(p).matmul(&p.weight_t).unwrap())
            .collect();
    });
    let xs: Vec<Vec<f32>> = inputs
        .iter()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    let x_of = |p: &Proj| {
        &xs[shapes
            .iter()
            .position(|s| s.0 == p.k && s.1 == p.n)
            .unwrap()]
    };
    let mut bufs: Vec<Vec<f32>> = projs.iter().map(|p| vec![0f32; frames * p.n]).collect();
    let t_gemm = best(&mut || {
        for (p, y) in projs.iter().zip(bufs.iter_mut()) {
            matmul_into(
                y,
                p.n,
                frames,
                p.n,
                p.k,
                MatRef::new(x_of(p), p.k, 1),
                MatRef::new(&p.plain_t, p.n, 1),
                false,
                threads,
            );
        }
    });
    let t_packed = best(&mut || {
        for (p, y) in projs.iter().zip(bufs.iter_mut()) {
            p.packed.forward_into(x_of(p), frames, y);
        }
    });
    // Each shape alone, its layers back to back: which projection is slow.
    let mut by_shape = Vec::new();
    for &(k, n) in &shapes {
        let t = best(&mut || {
            for (p, y) in projs.iter().zip(bufs.iter_mut()) {
                if (p.k, p.n) == (k, n) {
                    p.packed.forward_into(x_of(p), frames, y);
                }
            }
        });
        by_shape.push((k, n, t));
    }
    // The packed results include the bias: compare them with candle's plus the bias.
    let mut worst = 0f32;
    for (p, (y, c)) in projs.iter().zip(bufs.iter().zip(&candle_out)) {
        let c = c.flatten_all()?.to_vec1::<f32>()?;
        let scale = c.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (i, (&got, &want)) in y.iter().zip(&c).enumerate() {
            worst = worst.max((got - (want + p.bias[i % p.n])).abs() / scale);
        }
    }
    println!(
        "{frames} frames, {layers} layers, {threads} threads, {:.2} GFLOP per pass",
        flops / 1e9
    );
    for (name, t) in [
        ("candle matmul", t_candle),
        ("gemm crate", t_gemm),
        ("packed", t_packed),
    ] {
        println!(
            "{name:<14} {:>8.2} ms  {:>6.1} GFLOP/s",
            t * 1e3,
            flops / t / 1e9
        );
    }
    println!("max difference packed vs candle (relative to scale): {worst:.2e}");
    for (k, n, t) in by_shape {
        let f = 2.0 * (frames * k * n * layers) as f64;
        println!(
            "packed {k:>4} -> {n:<4} {:>7.2} ms  {:>6.1} GFLOP/s",
            t * 1e3,
            f / t / 1e9
        );
    }
    Ok(())
}
