//! How fast the cores read weights that do not fit their own caches: the bound of EnCodec's LSTM
//! recurrence (docs/performance.md), whose every step reads each thread's slab of `W_hh` (2 MiB
//! per thread at d = 512 on two threads) with fused multiply-adds, alternately front to back
//! and back to front (`codec/src/seanet/lstm_cpu.rs`).
//!
//! ```sh
//! cargo run --release -p tessera-benches --example cache_stream -- [THREADS]
//! ```
//!
//! For slabs of 0.5-8 MiB per thread, on one thread and on THREADS threads at once (default 2),
//! each thread sweeps its own slab 400 times in the LSTM's pattern, the threads meeting at a
//! barrier after every sweep as the recurrence's steps do; prints the median microseconds per
//! sweep and GB/s per thread.

use std::sync::Barrier;
use std::time::Instant;

const SWEEPS: usize = 400;
const LANES: usize = 16;

/// One sweep of `w` (a multiple of 8 x 16 floats) against `h`, forwards or backwards, by
/// multiply-adds into eight accumulators; returns their sum so that the reads are kept.
fn sweep(w: &[f32], h: &[f32; LANES], backwards: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature is present.
        return unsafe { sweep_avx512(w, h, backwards) };
    }
    let mut acc = [[0f32; LANES]; 8];
    let mut body = |block: &[f32]| {
        for (a, line) in acc.iter_mut().zip(block.chunks_exact(LANES)) {
            for l in 0..LANES {
                a[l] = line[l].mul_add(h[l], a[l]);
            }
        }
    };
    if backwards {
        w.chunks_exact(8 * LANES).rev().for_each(&mut body);
    } else {
        w.chunks_exact(8 * LANES).for_each(&mut body);
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sweep_avx512(w: &[f32], h: &[f32; LANES], backwards: bool) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: `h` holds 16 floats.
    let hv = unsafe { _mm512_loadu_ps(h.as_ptr()) };
    let mut acc = [_mm512_setzero_ps(); 8];
    let mut body = |block: &[f32]| {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: each block holds 8 x 16 floats.
            *a = _mm512_fmadd_ps(
                unsafe { _mm512_loadu_ps(block.as_ptr().add(16 * j)) },
                hv,
                *a,
            );
        }
    };
    if backwards {
        w.chunks_exact(8 * LANES).rev().for_each(&mut body);
    } else {
        w.chunks_exact(8 * LANES).for_each(&mut body);
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

/// Median seconds per sweep of `threads` threads, each over its own slab of `bytes`.
fn run(threads: usize, bytes: usize) -> f64 {
    let floats = bytes / 4 / (8 * LANES) * (8 * LANES);
    let barrier = Barrier::new(threads);
    let h = [1e-3f32; LANES];
    let times: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let w: Vec<f32> = (0..floats).map(|i| ((i + t) % 7) as f32 * 1e-3).collect();
                    let mut sink = 0f32;
                    let mut times = Vec::with_capacity(SWEEPS);
                    // Warm the slab into whatever cache holds it, then time each sweep.
                    sink += sweep(&w, &h, false);
                    for s in 0..SWEEPS {
                        barrier.wait();
                        let start = Instant::now();
                        sink += sweep(&w, &h, s % 2 == 1);
                        times.push(start.elapsed().as_secs_f64());
                    }
                    std::hint::black_box(sink);
                    times
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let mut all: Vec<f64> = times.into_iter().flatten().collect();
    all.sort_by(f64::total_cmp);
    all[all.len() / 2]
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map_or(2, |s| s.parse().expect("THREADS is a count"));
    println!("threads  slab_KiB  us_per_sweep  GB/s_per_thread");
    for t in [1, threads] {
        for kib in [512, 1024, 2048, 4096, 8192] {
            let secs = run(t, kib << 10);
            let gbs = (kib << 10) as f64 / secs / 1e9;
            println!("{t:7}  {kib:8}  {:12.1}  {gbs:15.1}", secs * 1e6);
        }
    }
}
