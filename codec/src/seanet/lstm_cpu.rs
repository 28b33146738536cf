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
//! threads). Each thread's slab is laid out in blocks of [`BLOCK_UNITS`] units, `[k][gate][unit]`,
//! read strictly front to back: a block's 128 gate rows accumulate in eight vectors, one
//! multiply-add per vector for every input `k` (a broadcast of `h[k]`), so a row's dot product
//! needs no reduction across lanes afterwards and its sum runs in the order of `k` from zero.
//! Every other step walks the blocks backwards, so that what the step before read last is
//! still in L2.
//!
//! Every unit's arithmetic (the dot products in the order of `k`, then the gates) is the same
//! whatever the number of threads or the instruction set, so the result is bitwise independent
//! of both.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use tessera_core::nn::exp::{sigmoid, tanh};

/// Floats per vector (and per line of packed weights).
const LANES: usize = 16;
/// Hidden units per block of packed weights: their four gates are 128 rows, eight vectors.
const BLOCK_UNITS: usize = 32;
/// Lines of packed weights per input `k` of a block.
const BLOCK_LINES: usize = 4 * BLOCK_UNITS / LANES;
/// Below this many hidden units per thread the barrier costs more than the split saves.
const MIN_UNITS_PER_THREAD: usize = 64;
/// Steps below which threads are not worth starting (one start costs tens of microseconds).
const MIN_STEPS_FOR_THREADS: usize = 16;
/// Busy-wait iterations at a barrier before yielding the core (for oversubscribed machines).
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

/// One cache line of weights: one input's weights for [`LANES`] rows of a block.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Line([f32; LANES]);

/// `W_hh` in blocks of [`BLOCK_UNITS`] hidden units, each `[k][gate][unit]`: for every input
/// `k`, the input, forget, cell and output gate rows of the block's units ([`BLOCK_LINES`]
/// lines), zero for units past `dim`. A step reads a block front to back, and each line is
/// one vector of the block's accumulators. With rows laid out as torch keeps them (each
/// thread's rows read line by line, 16 lanes per row summed at the end of the row) a step took
/// 30 us on two threads at d = 512 (a Zen 4), the sums across lanes a fifth of it; with this
/// one 24 us, about what a plain sweep of the same slabs takes there (`cache_stream`: 23 us).
#[derive(Debug, Clone)]
pub(crate) struct PackedRecurrent {
    w: Vec<Line>,
    dim: usize,
    blocks: usize,
}

impl PackedRecurrent {
    /// `w_hh`: torch's `weight_hh_l{k}`, `[4 d, d]` row-major, gates in the order i, f, g, o.
    pub fn new(w_hh: &[f32], dim: usize) -> Self {
        assert_eq!(w_hh.len(), 4 * dim * dim, "W_hh is [4 d, d]");
        let blocks = dim.div_ceil(BLOCK_UNITS);
        let mut w = vec![Line([0.0; LANES]); blocks * dim * BLOCK_LINES];
        for (b, block) in w.chunks_exact_mut(dim * BLOCK_LINES).enumerate() {
            for (k, lines) in block.chunks_exact_mut(BLOCK_LINES).enumerate() {
                for r in 0..4 * BLOCK_UNITS {
                    let (gate, j) = (r / BLOCK_UNITS, b * BLOCK_UNITS + r % BLOCK_UNITS);
                    if j < dim {
                        lines[r / LANES].0[r % LANES] = w_hh[(gate * dim + j) * dim + k];
                    }
                }
            }
        }
        PackedRecurrent { w, dim, blocks }
    }

    /// Block `b`'s lines.
    fn block(&self, b: usize) -> &[Line] {
        &self.w[b * self.dim * BLOCK_LINES..][..self.dim * BLOCK_LINES]
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
        threads.clamp(1, (d / MIN_UNITS_PER_THREAD).clamp(1, w.blocks))
    } else {
        1
    };
    // Whole blocks per thread: units j0..j1.
    let per = w.blocks.div_ceil(threads) * BLOCK_UNITS;
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
    // The thread's blocks (`j0` starts one).
    let blocks = j0 / BLOCK_UNITS..j1.div_ceil(BLOCK_UNITS);
    // The previous hidden state of each item.
    let mut h_prev = vec![0f32; items * d];
    let dots = block_dots_kernel();
    let wide = wide_gates();
    let mut hidden = vec![0f32; items * steps * n];
    // One block's sums, then its gate pre-activations, gate-major: z[gate * BLOCK_UNITS + u].
    let mut z = [0f32; 4 * BLOCK_UNITS];
    for s in 0..steps {
        let (src, dst) = (&shared[s % 2], &shared[(s + 1) % 2]);
        for (v, a) in h_prev.iter_mut().zip(src.iter()) {
            *v = f32::from_bits(a.load(Ordering::Relaxed));
        }
        let mut block = |b: usize| {
            let lines = w.block(b);
            // Units u0..u0 + nb of the block are this thread's, local index u0 - j0 on.
            let u0 = b * BLOCK_UNITS;
            let nb = BLOCK_UNITS.min(d - u0);
            for i in 0..items {
                dots(lines, &h_prev[i * d..][..d], &mut z);
                let g = &pre[(i * steps + s) * 4 * d..][..4 * d];
                for (gate, zg) in z.chunks_exact_mut(BLOCK_UNITS).enumerate() {
                    for (zu, &p) in zg.iter_mut().zip(&g[gate * d + u0..][..nb]) {
                        *zu += p;
                    }
                }
                let (zi, rest) = z.split_at(BLOCK_UNITS);
                let (zf, rest) = rest.split_at(BLOCK_UNITS);
                let (zg, zo) = rest.split_at(BLOCK_UNITS);
                let local = u0 - j0;
                let cs = &mut cell[i * n + local..][..nb];
                let hs = &mut hidden[(i * steps + s) * n + local..][..nb];
                gates(wide, [zi, zf, zg, zo], cs, hs);
                for (a, &v) in dst[i * d + u0..][..nb].iter().zip(hs.iter()) {
                    a.store(v.to_bits(), Ordering::Relaxed);
                }
            }
        };
        // Every other step walks the blocks backwards: the lines the last step read last are
        // the ones still in L2, so a slab somewhat larger than L2 is partly served from it
        // instead of being evicted line by line just before it is needed again (LRU on a
        // cyclic sweep). At d = 512 on a Xeon with 2 MiB of L2 per core, 750 steps: two
        // threads (2 MiB slabs) 33-37 -> 28 ms, one thread 117 -> 83 ms.
        if s % 2 == 0 {
            blocks.clone().for_each(&mut block);
        } else {
            blocks.clone().rev().for_each(&mut block);
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

/// The dot products of a block's `4 BLOCK_UNITS` rows with `h` (`dim` inputs) into `out`: each
/// row's sum by fused multiply-adds in the order of `k`, from zero, whatever the instruction set.
type BlockDots = fn(&[Line], &[f32], &mut [f32; 4 * BLOCK_UNITS]);

/// [`BlockDots`] with the widest instructions this CPU has; chosen once per recurrence.
fn block_dots_kernel() -> BlockDots {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked above).
            return |lines, h, out| unsafe { block_dots_avx512(lines, h, out) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA are present (checked above).
            return |lines, h, out| unsafe { block_dots_avx2(lines, h, out) };
        }
    }
    block_dots_generic
}

fn block_dots_generic(lines: &[Line], h: &[f32], out: &mut [f32; 4 * BLOCK_UNITS]) {
    out.fill(0.0);
    for (k_lines, &hk) in lines.chunks_exact(BLOCK_LINES).zip(h) {
        for (acc, line) in out.chunks_exact_mut(LANES).zip(k_lines) {
            for (a, &wv) in acc.iter_mut().zip(&line.0) {
                *a = wv.mul_add(hk, *a);
            }
        }
    }
}

/// [`block_dots_generic`] with AVX-512: the block's eight accumulators in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_dots_avx512(lines: &[Line], h: &[f32], out: &mut [f32; 4 * BLOCK_UNITS]) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); BLOCK_LINES];
    for (k_lines, &hk) in lines.chunks_exact(BLOCK_LINES).zip(h) {
        let hv = _mm512_set1_ps(hk);
        for (a, line) in acc.iter_mut().zip(k_lines) {
            // SAFETY: each line holds LANES = 16 f32 and is 64-byte aligned.
            *a = _mm512_fmadd_ps(unsafe { _mm512_load_ps(line.0.as_ptr()) }, hv, *a);
        }
    }
    for (dst, a) in out.chunks_exact_mut(LANES).zip(acc) {
        // SAFETY: each chunk holds 16 f32.
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), a) };
    }
}

/// [`block_dots_generic`] with AVX2 and FMA: the block's rows in two halves of eight
/// accumulators (sixteen would leave no registers for the loads).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_dots_avx2(lines: &[Line], h: &[f32], out: &mut [f32; 4 * BLOCK_UNITS]) {
    use std::arch::x86_64::*;
    const HALF: usize = BLOCK_LINES / 2;
    for half in 0..2 {
        let mut acc = [_mm256_setzero_ps(); 2 * HALF];
        for (k_lines, &hk) in lines.chunks_exact(BLOCK_LINES).zip(h) {
            let hv = _mm256_set1_ps(hk);
            for (pair, line) in acc.chunks_exact_mut(2).zip(&k_lines[half * HALF..][..HALF]) {
                // SAFETY: each line holds 16 f32 and is 64-byte aligned (so is its second half).
                unsafe {
                    pair[0] = _mm256_fmadd_ps(_mm256_load_ps(line.0.as_ptr()), hv, pair[0]);
                    pair[1] = _mm256_fmadd_ps(_mm256_load_ps(line.0.as_ptr().add(8)), hv, pair[1]);
                }
            }
        }
        let dst = &mut out[half * HALF * LANES..][..HALF * LANES];
        for (d8, a) in dst.chunks_exact_mut(8).zip(acc) {
            // SAFETY: each chunk holds 8 f32.
            unsafe { _mm256_storeu_ps(d8.as_mut_ptr(), a) };
        }
    }
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
        // d = 40: a partial block (8 of 32 units); 512: EnCodec's width.
        for d in [16, 40, 512] {
            let w_hh = values(4 * d * d, 5, 0.1);
            let packed = PackedRecurrent::new(&w_hh, d);
            let h = values(d, 6, 1.0);
            for b in 0..packed.blocks {
                let lines = packed.block(b);
                let mut want = [0f32; 4 * BLOCK_UNITS];
                block_dots_generic(lines, &h, &mut want);
                // The sums are the rows' dot products (padding rows zero).
                for (r, &got) in want.iter().enumerate() {
                    let (gate, j) = (r / BLOCK_UNITS, b * BLOCK_UNITS + r % BLOCK_UNITS);
                    let exact: f64 = if j < d {
                        (0..d)
                            .map(|k| f64::from(w_hh[(gate * d + j) * d + k]) * f64::from(h[k]))
                            .sum()
                    } else {
                        0.0
                    };
                    assert!((f64::from(got) - exact).abs() < 1e-4, "d {d} row {r}");
                }
                let mut got = [f32::NAN; 4 * BLOCK_UNITS];
                block_dots_kernel()(lines, &h, &mut got);
                assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "d {d}");
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the features are present.
                    unsafe { block_dots_avx2(lines, &h, &mut got) };
                    assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "d {d}, AVX2");
                }
            }
        }
    }
}
