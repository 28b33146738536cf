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
//! A step is bound by reading the weights from L3 (2 MiB per thread per step at d = 512, two
//! threads): the weights are laid out so that each thread reads its slab strictly front to back
//! in aligned cache lines (see [`PackedRecurrent`]), and every other step walks it backwards,
//! so that what the step before read last is still in L2.
//!
//! Every unit's arithmetic (dot products by fused multiply-adds over sixteen fixed lanes, then
//! the gates) is the same whatever the number of threads or the instruction set, so the result
//! is bitwise independent of both.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use tessera_core::nn::exp::{sigmoid, tanh};

/// Lanes of the dot products' partial sums.
const LANES: usize = 16;
/// Below this many hidden units per thread the barrier costs more than the split saves.
const MIN_UNITS_PER_THREAD: usize = 64;
/// Steps below which threads are not worth starting (one start costs tens of microseconds).
const MIN_STEPS_FOR_THREADS: usize = 16;
/// Busy-wait iterations at a barrier before yielding the core (for oversubscribed machines).
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

/// One cache line of weights: [`LANES`] inputs of one gate row.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Line([f32; LANES]);

/// `W_hh` regrouped by hidden unit so that a step reads it strictly front to back: unit `j`'s
/// block holds, for each run of [`LANES`] inputs, one line of its input, forget, cell and output
/// gate rows each (torch keeps the gates `d` rows apart). Rows are zero-padded to a whole
/// number of runs. A step streams these weights from L3: with the plain row layout (four
/// interleaved 2 KiB streams per unit) one step took 93 us on one thread at d = 512, with this
/// one 70 us.
#[derive(Debug, Clone)]
pub(crate) struct PackedRecurrent {
    w: Vec<Line>,
    dim: usize,
    /// Runs of [`LANES`] inputs per row (`dim` rounded up).
    runs: usize,
}

impl PackedRecurrent {
    /// `w_hh`: torch's `weight_hh_l{k}`, `[4 d, d]` row-major, gates in the order i, f, g, o.
    pub fn new(w_hh: &[f32], dim: usize) -> Self {
        assert_eq!(w_hh.len(), 4 * dim * dim, "W_hh is [4 d, d]");
        let runs = dim.div_ceil(LANES);
        let mut w = vec![Line([0.0; LANES]); 4 * dim * runs];
        for (j, unit) in w.chunks_exact_mut(4 * runs).enumerate() {
            for g in 0..4 {
                let row = &w_hh[(g * dim + j) * dim..][..dim];
                for (k, &v) in row.iter().enumerate() {
                    unit[(k / LANES) * 4 + g].0[k % LANES] = v;
                }
            }
        }
        PackedRecurrent { w, dim, runs }
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
    let dp = w.runs * LANES;
    let slab = &w.w[4 * j0 * w.runs..4 * j1 * w.runs];
    // The previous hidden state of each item, zero-padded to `dp`.
    let mut h_prev = vec![0f32; items * dp];
    let kernels = dot_kernels();
    let wide = wide_gates();
    let mut hidden = vec![0f32; items * steps * n];
    // Gate pre-activations of this thread's units, per item and gate-major: z[(i * 4 + g) * n + u].
    let mut z = vec![0f32; items * 4 * n];
    for s in 0..steps {
        let (src, dst) = (&shared[s % 2], &shared[(s + 1) % 2]);
        for (i, hp) in h_prev.chunks_exact_mut(dp).enumerate() {
            for (v, a) in hp.iter_mut().zip(&src[i * d..(i + 1) * d]) {
                *v = f32::from_bits(a.load(Ordering::Relaxed));
            }
        }
        // Unit-major, items inside: a unit's four rows (4 d floats) are read from memory once per
        // step and reused from L1 for every item. Units go in pairs: eight independent chains of
        // fused multiply-adds keep both FMA units busy where one unit's four would wait on
        // their own latency (750 steps at d = 512, two threads: 30 -> 28 ms).
        let mut pair = |(p, block): (usize, &[Line])| {
            let u0 = 2 * p;
            for i in 0..items {
                let h = &h_prev[i * dp..][..dp];
                let g = &pre[(i * steps + s) * 4 * d..][..4 * d];
                let mut put = |u: usize, sums: [f32; 4]| {
                    for (gate, dot) in sums.into_iter().enumerate() {
                        z[(i * 4 + gate) * n + u] = g[gate * d + j0 + u] + dot;
                    }
                };
                if block.len() == 8 * w.runs {
                    let (a, b) = block.split_at(4 * w.runs);
                    let [da, db] = kernels.pair(a, b, h);
                    put(u0, da);
                    put(u0 + 1, db);
                } else {
                    put(u0, (kernels.one)(block, h));
                }
            }
        };
        // Every other step walks the slab backwards: the lines the last step read last are the
        // ones still in L2, so a slab somewhat larger than L2 is partly served from it instead
        // of being evicted line by line just before it is needed again (LRU on a cyclic sweep).
        // At d = 512 on a Xeon with 2 MiB of L2 per core, 750 steps: two threads (2 MiB slabs)
        // 33-37 -> 28 ms, one thread 117 -> 83 ms.
        let pairs = slab.chunks(8 * w.runs).enumerate();
        if s % 2 == 0 {
            pairs.for_each(&mut pair);
        } else {
            pairs.rev().for_each(&mut pair);
        }
        for i in 0..items {
            let zs = &z[i * 4 * n..][..4 * n];
            let (zi, rest) = zs.split_at(n);
            let (zf, rest) = rest.split_at(n);
            let (zg, zo) = rest.split_at(n);
            let cs = &mut cell[i * n..][..n];
            let hs = &mut hidden[(i * steps + s) * n..][..n];
            gates(wide, [zi, zf, zg, zo], cs, hs);
            for (a, &v) in dst[i * d + j0..i * d + j1].iter().zip(hs.iter()) {
                a.store(v.to_bits(), Ordering::Relaxed);
            }
        }
        barrier.wait();
    }
    UnitsResult { hidden, cell }
}

/// The new cell and hidden states of a run of units from their gate pre-activations
/// (`[i, f, g, o]`), element by element: `c = sigmoid(f) c + sigmoid(i) tanh(g)`, `h =
/// sigmoid(o) tanh(c)`.
#[inline(always)]
fn gates_body([zi, zf, zg, zo]: [&[f32]; 4], cs: &mut [f32], hs: &mut [f32]) {
    let n = cs.len();
    let (zi, zf, zg, zo, hs) = (&zi[..n], &zf[..n], &zg[..n], &zo[..n], &mut hs[..n]);
    for u in 0..n {
        let c_new = sigmoid(zf[u]) * cs[u] + sigmoid(zi[u]) * tanh(zg[u]);
        cs[u] = c_new;
        hs[u] = sigmoid(zo[u]) * tanh(c_new);
    }
}

/// Whether [`gates`] may run its AVX-512 build.
fn wide_gates() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`gates_body`], compiled for AVX-512 when `wide` (16 units per vector): the gates were a
/// fifth of a step on two threads at d = 512. The operations per element are the same in
/// every build (nothing fused), so the bits are too.
fn gates(wide: bool, z: [&[f32]; 4], cs: &mut [f32], hs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` says the CPU has AVX-512F.
        return unsafe { gates_avx512(z, cs, hs) };
    }
    let _ = wide;
    gates_body(z, cs, hs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gates_avx512(z: [&[f32]; 4], cs: &mut [f32], hs: &mut [f32]) {
    gates_body(z, cs, hs)
}

/// The dot products of one unit's four gate rows with `h` (`block` in [`PackedRecurrent`]'s
/// layout, `h` zero-padded to its runs). Each row accumulates in [`LANES`] fixed lanes by fused
/// multiply-adds, and the lanes are summed in order: neither the order of additions nor the
/// rounding depends on the instruction set.
type Dot4 = fn(&[Line], &[f32]) -> [f32; 4];

/// The dot products of two units' blocks at once ([`Dot4`] of each).
type Dot4Pair = fn(&[Line], &[Line], &[f32]) -> [[f32; 4]; 2];

/// The dot-product kernels of one instruction set: one unit, and two units interleaved.
#[derive(Clone, Copy)]
struct DotKernels {
    one: Dot4,
    two: Option<Dot4Pair>,
}

impl DotKernels {
    #[inline(always)]
    fn pair(&self, a: &[Line], b: &[Line], h: &[f32]) -> [[f32; 4]; 2] {
        match self.two {
            Some(two) => two(a, b, h),
            None => [(self.one)(a, h), (self.one)(b, h)],
        }
    }
}

/// [`DotKernels`] with the widest instructions this CPU has; chosen once per recurrence, not
/// per unit and step. Only AVX-512 has the registers for two units at once (8 accumulators and
/// `h`); AVX2 would spill, and runs the units one after the other.
fn dot_kernels() -> DotKernels {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return DotKernels {
                // SAFETY (both): AVX-512F is present (checked above).
                one: |block, h| unsafe { dot4_avx512(block, h) },
                two: Some(|a, b, h| unsafe { dot4_pair_avx512(a, b, h) }),
            };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return DotKernels {
                // SAFETY: AVX2 and FMA are present (checked above).
                one: |block, h| unsafe { dot4_avx2(block, h) },
                two: None,
            };
        }
    }
    DotKernels {
        one: dot4_generic,
        two: None,
    }
}

/// The lanes of a dot product summed in order (as `Iterator::sum` does, from -0.0), inlined
/// and unrolled: through the iterator it was a call per sum, 4% of EnCodec's encode.
#[inline(always)]
fn sum_lanes(lanes: &[f32; LANES]) -> f32 {
    lanes.iter().fold(-0.0, |s, &v| s + v)
}

#[inline(always)]
fn dot4_generic(block: &[Line], h: &[f32]) -> [f32; 4] {
    let mut acc = [[0f32; LANES]; 4];
    for (run, hv) in block.chunks_exact(4).zip(h.chunks_exact(LANES)) {
        for (a, w) in acc.iter_mut().zip(run) {
            for l in 0..LANES {
                a[l] = w.0[l].mul_add(hv[l], a[l]);
            }
        }
    }
    acc.map(|a| sum_lanes(&a))
}

/// [`dot4_generic`] with AVX-512: one register per row holds its sixteen lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot4_avx512(block: &[Line], h: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 4];
    for (run, hv) in block.chunks_exact(4).zip(h.chunks_exact(LANES)) {
        // SAFETY: each line and each chunk of h holds LANES = 16 f32; lines are 64-byte aligned.
        unsafe {
            let hv = _mm512_loadu_ps(hv.as_ptr());
            for (a, w) in acc.iter_mut().zip(run) {
                *a = _mm512_fmadd_ps(_mm512_load_ps(w.0.as_ptr()), hv, *a);
            }
        }
    }
    acc.map(|a| {
        let mut lanes = [0f32; LANES];
        // SAFETY: lanes holds LANES f32.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), a) };
        sum_lanes(&lanes)
    })
}

/// [`dot4_avx512`] of two units, their eight rows interleaved.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot4_pair_avx512(a: &[Line], b: &[Line], h: &[f32]) -> [[f32; 4]; 2] {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 8];
    let runs = a.chunks_exact(4).zip(b.chunks_exact(4));
    for ((ra, rb), hv) in runs.zip(h.chunks_exact(LANES)) {
        // SAFETY: each line and each chunk of h holds LANES = 16 f32; lines are 64-byte aligned.
        unsafe {
            let hv = _mm512_loadu_ps(hv.as_ptr());
            for (acc, w) in acc.iter_mut().zip(ra.iter().chain(rb)) {
                *acc = _mm512_fmadd_ps(_mm512_load_ps(w.0.as_ptr()), hv, *acc);
            }
        }
    }
    let sums = acc.map(|a| {
        let mut lanes = [0f32; LANES];
        // SAFETY: lanes holds LANES f32.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), a) };
        sum_lanes(&lanes)
    });
    [
        [sums[0], sums[1], sums[2], sums[3]],
        [sums[4], sums[5], sums[6], sums[7]],
    ]
}

/// [`dot4_generic`] with AVX2 and FMA: two registers per row hold its sixteen lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_avx2(block: &[Line], h: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    for (run, hv) in block.chunks_exact(4).zip(h.chunks_exact(LANES)) {
        // SAFETY: each line and each chunk of h holds LANES = 16 f32; lines are 64-byte aligned.
        unsafe {
            let h0 = _mm256_loadu_ps(hv.as_ptr());
            let h1 = _mm256_loadu_ps(hv.as_ptr().add(8));
            for (a, w) in acc.iter_mut().zip(run) {
                a[0] = _mm256_fmadd_ps(_mm256_load_ps(w.0.as_ptr()), h0, a[0]);
                a[1] = _mm256_fmadd_ps(_mm256_load_ps(w.0.as_ptr().add(8)), h1, a[1]);
            }
        }
    }
    acc.map(|a| {
        let mut lanes = [0f32; LANES];
        // SAFETY: lanes holds LANES f32.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), a[1]);
        }
        sum_lanes(&lanes)
    })
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

    #[test]
    fn dot_products_do_not_depend_on_the_instruction_set() {
        for d in [16, 40, 512] {
            let w_hh = values(4 * d * d, 5, 0.1);
            let packed = PackedRecurrent::new(&w_hh, d);
            let runs = packed.runs;
            let mut h = values(d, 6, 1.0);
            h.resize(runs * LANES, 0.0);
            let kernels = dot_kernels();
            for block in packed.w.chunks_exact(4 * runs) {
                assert_eq!((kernels.one)(block, &h), dot4_generic(block, &h), "d {d}");
            }
            for pair in packed.w.chunks_exact(8 * runs) {
                let (a, b) = pair.split_at(4 * runs);
                let want = [dot4_generic(a, &h), dot4_generic(b, &h)];
                assert_eq!(kernels.pair(a, b, &h), want, "d {d}, two units");
            }
        }
    }
}
