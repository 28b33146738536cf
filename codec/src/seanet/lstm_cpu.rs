//! The LSTM recurrence on the CPU (f32), split over threads by hidden unit.
//!
//! The recurrence is the one serial part of EnCodec: every step is a matrix-vector product with
//! `W_hh` (`[4 d, d]`, 4 MiB at d = 512) that waits for the step before. On one thread, through
//! candle's gemv and libm's `expf`/`tanhf`, it was about 30% of EnCodec's wall time on two
//! threads while the other thread idled. Here each thread owns a contiguous range of hidden
//! units, keeps the four gate rows of those units (regrouped at load, so its slab of `W_hh` is
//! contiguous and stays in its own cache), computes their gates and states, and publishes its
//! part of the new hidden state; one spin barrier per step orders the threads.
//!
//! Every unit's arithmetic (dot products over eight fixed lanes, then the gates) is the same
//! whatever the number of threads or the instruction set, so the result is bitwise independent
//! of both.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use tessera_core::nn::exp::{sigmoid, tanh};

/// Lanes of the dot products' partial sums.
const LANES: usize = 8;
/// Below this many hidden units per thread the barrier costs more than the split saves.
const MIN_UNITS_PER_THREAD: usize = 64;
/// Steps below which threads are not worth starting (one start costs tens of microseconds).
const MIN_STEPS_FOR_THREADS: usize = 16;
/// Busy-wait iterations at a barrier before yielding the core (for oversubscribed machines).
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

/// `W_hh` with rows regrouped by hidden unit: rows `4 j .. 4 j + 4` are unit `j`'s input, forget,
/// cell and output gate rows (torch keeps them `d` rows apart).
#[derive(Debug, Clone)]
pub(crate) struct PackedRecurrent {
    w: Vec<f32>,
    dim: usize,
}

impl PackedRecurrent {
    /// `w_hh`: torch's `weight_hh_l{k}`, `[4 d, d]` row-major, gates in the order i, f, g, o.
    pub fn new(w_hh: &[f32], dim: usize) -> Self {
        assert_eq!(w_hh.len(), 4 * dim * dim, "W_hh is [4 d, d]");
        let mut w = Vec::with_capacity(w_hh.len());
        for j in 0..dim {
            for g in 0..4 {
                w.extend_from_slice(&w_hh[(g * dim + j) * dim..][..dim]);
            }
        }
        PackedRecurrent { w, dim }
    }
}

/// The recurrence over `steps` of `items` sequences.
///
/// `pre`: `[items, steps, 4 d]`, the input projections plus both biases, gates in torch's order;
/// `h`, `c`: `[items, d]`, the state before the first step, replaced by the state after the
/// last; returns the hidden states `[items, steps, d]`. `threads` is an upper bound.
pub(crate) fn recur(
    w: &PackedRecurrent,
    pre: &[f32],
    items: usize,
    steps: usize,
    h: &mut [f32],
    c: &mut [f32],
    threads: usize,
) -> Vec<f32> {
    let d = w.dim;
    assert_eq!(
        pre.len(),
        items * steps * 4 * d,
        "pre is [items, steps, 4 d]"
    );
    assert_eq!(h.len(), items * d, "h is [items, d]");
    assert_eq!(c.len(), items * d, "c is [items, d]");
    let threads = if steps >= MIN_STEPS_FOR_THREADS {
        threads.clamp(1, (d / MIN_UNITS_PER_THREAD).max(1))
    } else {
        1
    };
    let per = d.div_ceil(threads);
    let parts: Vec<(usize, usize)> = (0..threads)
        .map(|p| (p * per, ((p + 1) * per).min(d)))
        .filter(|(a, b)| a < b)
        .collect();

    // The hidden state, double-buffered by step parity: step s reads buffer s % 2 and writes
    // buffer (s + 1) % 2, so one barrier per step suffices.
    let shared: [Vec<AtomicU32>; 2] = [
        h.iter().map(|v| AtomicU32::new(v.to_bits())).collect(),
        (0..items * d).map(|_| AtomicU32::new(0)).collect(),
    ];
    let barrier = SpinBarrier::new(parts.len());
    let run = |&(j0, j1): &(usize, usize)| {
        let cell: Vec<f32> = (0..items)
            .flat_map(|i| c[i * d + j0..i * d + j1].iter().copied())
            .collect();
        run_units(w, pre, items, steps, (j0, j1), cell, &shared, &barrier)
    };
    let results: Vec<UnitsResult> = if parts.len() == 1 {
        vec![run(&parts[0])]
    } else {
        std::thread::scope(|scope| {
            let helpers: Vec<_> = parts[1..]
                .iter()
                .map(|part| scope.spawn(|| run(part)))
                .collect();
            let mut all = vec![run(&parts[0])];
            all.extend(helpers.into_iter().map(|t| t.join().expect("LSTM thread")));
            all
        })
    };

    let mut out = vec![0f32; items * steps * d];
    for (&(j0, j1), r) in parts.iter().zip(&results) {
        let n = j1 - j0;
        for i in 0..items {
            c[i * d + j0..i * d + j1].copy_from_slice(&r.cell[i * n..][..n]);
            for s in 0..steps {
                out[(i * steps + s) * d + j0..][..n]
                    .copy_from_slice(&r.hidden[(i * steps + s) * n..][..n]);
            }
        }
    }
    for (v, a) in h.iter_mut().zip(&shared[steps % 2]) {
        *v = f32::from_bits(a.load(Ordering::Relaxed));
    }
    out
}

/// One thread's units after the last step: hidden states `[items, steps, n]`, cell `[items, n]`.
struct UnitsResult {
    hidden: Vec<f32>,
    cell: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
fn run_units(
    w: &PackedRecurrent,
    pre: &[f32],
    items: usize,
    steps: usize,
    units: (usize, usize),
    cell: Vec<f32>,
    shared: &[Vec<AtomicU32>; 2],
    barrier: &SpinBarrier,
) -> UnitsResult {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { run_units_avx2(w, pre, items, steps, units, cell, shared, barrier) };
    }
    run_units_generic(w, pre, items, steps, units, cell, shared, barrier)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn run_units_avx2(
    w: &PackedRecurrent,
    pre: &[f32],
    items: usize,
    steps: usize,
    units: (usize, usize),
    cell: Vec<f32>,
    shared: &[Vec<AtomicU32>; 2],
    barrier: &SpinBarrier,
) -> UnitsResult {
    run_units_generic(w, pre, items, steps, units, cell, shared, barrier)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn run_units_generic(
    w: &PackedRecurrent,
    pre: &[f32],
    items: usize,
    steps: usize,
    (j0, j1): (usize, usize),
    mut cell: Vec<f32>,
    shared: &[Vec<AtomicU32>; 2],
    barrier: &SpinBarrier,
) -> UnitsResult {
    let d = w.dim;
    let n = j1 - j0;
    let slab = &w.w[4 * j0 * d..4 * j1 * d];
    let mut h_prev = vec![0f32; items * d];
    let mut hidden = vec![0f32; items * steps * n];
    // Gate pre-activations of this thread's units, per item and gate-major: z[(i * 4 + g) * n + u].
    let mut z = vec![0f32; items * 4 * n];
    for s in 0..steps {
        let (src, dst) = (&shared[s % 2], &shared[(s + 1) % 2]);
        for (v, a) in h_prev.iter_mut().zip(src) {
            *v = f32::from_bits(a.load(Ordering::Relaxed));
        }
        // Unit-major, items inside: a unit's four rows (4 d floats) are read from memory once per
        // step and reused from L1 for every item.
        for (u, rows) in slab.chunks_exact(4 * d).enumerate() {
            for i in 0..items {
                let dots = dot4_dispatch(rows, &h_prev[i * d..][..d]);
                let g = &pre[(i * steps + s) * 4 * d..][..4 * d];
                for (gate, dot) in dots.into_iter().enumerate() {
                    z[(i * 4 + gate) * n + u] = g[gate * d + j0 + u] + dot;
                }
            }
        }
        for i in 0..items {
            let zs = &z[i * 4 * n..][..4 * n];
            let (zi, rest) = zs.split_at(n);
            let (zf, rest) = rest.split_at(n);
            let (zg, zo) = rest.split_at(n);
            let cs = &mut cell[i * n..][..n];
            let hs = &mut hidden[(i * steps + s) * n..][..n];
            for u in 0..n {
                let c_new = sigmoid(zf[u]) * cs[u] + sigmoid(zi[u]) * tanh(zg[u]);
                cs[u] = c_new;
                hs[u] = sigmoid(zo[u]) * tanh(c_new);
            }
            for (a, &v) in dst[i * d + j0..i * d + j1].iter().zip(hs.iter()) {
                a.store(v.to_bits(), Ordering::Relaxed);
            }
        }
        barrier.wait();
    }
    UnitsResult { hidden, cell }
}

#[inline(always)]
fn dot4_dispatch(rows: &[f32], h: &[f32]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if cfg!(target_feature = "avx") || std::is_x86_feature_detected!("avx") {
        assert!(rows.len() >= 4 * h.len());
        // SAFETY: AVX is present (checked above) and rows holds four rows of h.len() (asserted).
        return unsafe { dot4_avx(rows, h) };
    }
    dot4(rows, h)
}

/// [`dot4`] with AVX: the same lanes, products and order of additions, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn dot4_avx(rows: &[f32], h: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let d = h.len();
    let split = d - d % LANES;
    let (hp, wp) = (h.as_ptr(), rows.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut k = 0;
    while k < split {
        // SAFETY: k + LANES <= d, and row r spans rows[r * d..(r + 1) * d].
        unsafe {
            let hv = _mm256_loadu_ps(hp.add(k));
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_ps(wp.add(r * d + k));
                *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, hv));
            }
        }
        k += LANES;
    }
    let mut out = [0f32; 4];
    for (r, (o, a)) in out.iter_mut().zip(acc).enumerate() {
        let mut lanes = [0f32; LANES];
        // SAFETY: lanes holds LANES f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
        let tail: f32 = (split..d).map(|k| rows[r * d + k] * h[k]).sum();
        *o = lanes.iter().sum::<f32>() + tail;
    }
    out
}

/// The dot products of four consecutive rows of length `h.len()` with `h`, each summed over
/// [`LANES`] fixed lanes (so the order of additions never depends on the instruction set).
#[inline(always)]
fn dot4(rows: &[f32], h: &[f32]) -> [f32; 4] {
    let d = h.len();
    let (r0, rest) = rows.split_at(d);
    let (r1, rest) = rest.split_at(d);
    let (r2, r3) = rest.split_at(d);
    let mut acc = [[0f32; LANES]; 4];
    for ((((hv, w0), w1), w2), w3) in h
        .chunks_exact(LANES)
        .zip(r0.chunks_exact(LANES))
        .zip(r1.chunks_exact(LANES))
        .zip(r2.chunks_exact(LANES))
        .zip(r3.chunks_exact(LANES))
    {
        let (hv, ws) = (lanes(hv), [lanes(w0), lanes(w1), lanes(w2), lanes(w3)]);
        for (a, w) in acc.iter_mut().zip(ws) {
            for l in 0..LANES {
                a[l] += w[l] * hv[l];
            }
        }
    }
    let split = d - d % LANES;
    let mut out = [0f32; 4];
    for ((o, a), r) in out.iter_mut().zip(&acc).zip([r0, r1, r2, r3]) {
        let tail: f32 = (split..d).map(|k| r[k] * h[k]).sum();
        *o = a.iter().sum::<f32>() + tail;
    }
    out
}

#[inline(always)]
fn lanes(x: &[f32]) -> &[f32; LANES] {
    x.try_into().expect("chunks of LANES")
}

/// A reusable barrier for a fixed number of threads that busy-waits (a step is tens of
/// microseconds; a futex wake-up would cost a good part of that), then yields.
struct SpinBarrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    threads: usize,
}

impl SpinBarrier {
    fn new(threads: usize) -> Self {
        SpinBarrier {
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            threads,
        }
    }

    /// Returns once every thread has called `wait` for this generation; the stores each thread
    /// made before its call are visible to all after theirs.
    fn wait(&self) {
        if self.threads == 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if spins < SPINS_BEFORE_YIELD {
                spins += 1;
                spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The LSTM step in f64 with torch's gate layout, for reference.
    fn reference(
        w_hh: &[f32],
        pre: &[f32],
        items: usize,
        steps: usize,
        d: usize,
        h0: &[f32],
        c0: &[f32],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mut out = vec![0f64; items * steps * d];
        let mut h: Vec<f64> = h0.iter().map(|&v| v as f64).collect();
        let mut c: Vec<f64> = c0.iter().map(|&v| v as f64).collect();
        for i in 0..items {
            for s in 0..steps {
                let g = &pre[(i * steps + s) * 4 * d..][..4 * d];
                let hp: Vec<f64> = h[i * d..][..d].to_vec();
                let z = |r: usize| {
                    g[r] as f64 + (0..d).map(|k| w_hh[r * d + k] as f64 * hp[k]).sum::<f64>()
                };
                for j in 0..d {
                    let (zi, zf, zg, zo) = (z(j), z(d + j), z(2 * d + j), z(3 * d + j));
                    c[i * d + j] = sig(zf) * c[i * d + j] + sig(zi) * zg.tanh();
                    h[i * d + j] = sig(zo) * c[i * d + j].tanh();
                    out[(i * steps + s) * d + j] = h[i * d + j];
                }
            }
        }
        (out, h, c)
    }

    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    #[test]
    fn matches_f64_and_is_independent_of_threads() {
        // d = 131: not a multiple of the lanes, three threads of uneven size.
        for (d, items, steps) in [(131, 2, 40), (8, 1, 5), (200, 1, 17)] {
            let w_hh = values(4 * d * d, 1, 0.3 / (d as f32).sqrt() * 3.0);
            let pre = values(items * steps * 4 * d, 2, 2.0);
            let h0 = values(items * d, 3, 0.5);
            let c0 = values(items * d, 4, 0.5);
            let (want_out, want_h, want_c) = reference(&w_hh, &pre, items, steps, d, &h0, &c0);
            let packed = PackedRecurrent::new(&w_hh, d);
            let mut first: Option<(Vec<f32>, Vec<f32>, Vec<f32>)> = None;
            for threads in [1, 2, 3, 8] {
                let (mut h, mut c) = (h0.clone(), c0.clone());
                let out = recur(&packed, &pre, items, steps, &mut h, &mut c, threads);
                let worst = |got: &[f32], want: &[f64]| {
                    got.iter()
                        .zip(want)
                        .map(|(&g, &w)| (g as f64 - w).abs())
                        .fold(0f64, f64::max)
                };
                assert!(worst(&out, &want_out) < 1e-5, "d {d} threads {threads}");
                assert!(worst(&h, &want_h) < 1e-5);
                assert!(worst(&c, &want_c) < 1e-5);
                match &first {
                    None => first = Some((out, h, c)),
                    Some(f) => assert!(
                        f.0 == out && f.1 == h && f.2 == c,
                        "threads change the bits (d {d}, {threads} threads)"
                    ),
                }
            }
        }
    }
}
