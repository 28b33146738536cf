//! The machine's f32 fused multiply-add peak: the ceiling that the codecs' conv kernels are
//! measured against in docs/performance.md (a matmul peak from torch or candle is a library's
//! figure, below this one).
//!
//! ```sh
//! cargo run --release -p tessera-benches --example fma_peak -- [THREADS]
//! ```
//!
//! Each thread runs 12 independent chains of vector FMAs (enough to cover the latency of two
//! FMA pipes) on registers only, with the widest vectors the CPU has (AVX-512, else AVX2), and
//! reports GFLOP/s (2 FLOP per lane per FMA) for 1 thread and for THREADS threads (default 2),
//! best of 5 runs of about 0.2 s each.

use std::time::Instant;

const CHAINS: usize = 12;
const ITERS: usize = 20_000_000;

/// FLOP done by one call of `chains` on this CPU, and its result (kept so that the work is not
/// optimised away).
fn chains() -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature is present.
            let r = unsafe { x86::chains_avx512() };
            return ((ITERS * CHAINS * 16 * 2) as f64, r);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features are present.
            let r = unsafe { x86::chains_avx2() };
            return ((ITERS * CHAINS * 8 * 2) as f64, r);
        }
    }
    let mut acc = [1f32; CHAINS];
    for _ in 0..ITERS / 64 {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    ((ITERS / 64 * CHAINS * 2) as f64, acc.iter().sum())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{CHAINS, ITERS};

    #[target_feature(enable = "avx512f")]
    pub unsafe fn chains_avx512() -> f32 {
        let m = _mm512_set1_ps(0.999_999);
        let c = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..ITERS {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn chains_avx2() -> f32 {
        let m = _mm256_set1_ps(0.999_999);
        let c = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..ITERS {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let mut lanes = [0f32; 8];
        let mut sum = 0.0;
        for a in acc {
            // SAFETY: `lanes` holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
            sum += lanes.iter().sum::<f32>();
        }
        sum
    }
}

/// Best GFLOP/s of 5 runs with `threads` threads each running [`chains`].
fn measure(threads: usize) -> f64 {
    let mut best = 0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let flop: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(chains)).collect();
            handles
                .into_iter()
                .map(|h| {
                    let (flop, r) = h.join().expect("thread");
                    std::hint::black_box(r);
                    flop
                })
                .sum()
        });
        best = best.max(flop / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn main() {
    let threads: usize = match std::env::args().nth(1) {
        None => 2,
        Some(a) => match a.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: fma_peak [THREADS]");
                std::process::exit(2);
            }
        },
    };
    let one = measure(1);
    let many = measure(threads);
    println!(
        "{{\"fma_peak_gflops_1_thread\": {one:.1}, \"threads\": {threads}, \"fma_peak_gflops\": {many:.1}}}"
    );
}
