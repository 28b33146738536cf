//! The Snake kernel on the CPU: `y = x + inv * sin(alpha * x)^2` over one channel's samples.
//!
//! libm's `sinf` is scalar and was a fifth of SNAC's decode time, so on x86-64 the sine is
//! evaluated 16 (AVX-512) or 8 (AVX2 + FMA) lanes at a time: reduction by multiples of pi/2
//! (Cody-Waite, three parts, fused multiply-adds) and Cephes' single-precision minimax
//! polynomial for sin on [-pi/4, pi/4], within 2 ulp of the true sine like torch's own
//! vectorised sine (SLEEF, 1 ulp). Only `sin^2` is needed, so the sign is dropped and odd
//! quadrants take `cos^2 = 1 - sin^2` (in [1/2, 1], no cancellation) instead of a second
//! polynomial. Vectors holding an |alpha * x| > 8192, where the three-part reduction
//! loses accuracy, or a NaN go through libm.

/// Largest |alpha * x| the vector reduction handles accurately.
const FAST_RANGE: f32 = 8192.0;

// pi/2 split so that j * PIO2_1 and j * PIO2_2 are exact for the j we meet.
const PIO2_1: f32 = 1.570_312_5;
const PIO2_2: f32 = 4.837_513e-4;
const PIO2_3: f32 = 7.549_79e-8;
// Cephes sinf coefficients on [-pi/4, pi/4].
const S1: f32 = -1.666_665_5e-1;
const S2: f32 = 8.332_161e-3;
const S3: f32 = -1.951_529_6e-4;

/// Per-channel Snake parameters as the kernels take them: `alpha` and `1 / (alpha + 1e-9)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SnakeParams<'a> {
    pub alpha: &'a [f32],
    pub inv: &'a [f32],
}

/// `o = snake(x)` for one channel: in one pass with AVX-512, else copied and transformed in
/// blocks that stay in L1 (the same bits).
pub(crate) fn snake_row(o: &mut [f32], x: &[f32], alpha: f32, inv: f32) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        unsafe { avx512::snake_into(o, x, alpha, inv) };
        return;
    }
    for (ob, xb) in o.chunks_mut(1024).zip(x.chunks(1024)) {
        ob.copy_from_slice(xb);
        snake_in_place(ob, alpha, inv);
    }
}

/// `buf = snake(buf)` for one channel.
pub(crate) fn snake_in_place(buf: &mut [f32], alpha: f32, inv: f32) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        unsafe { avx512::snake_in_place(buf, alpha, inv) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { avx2::snake_in_place(buf, alpha, inv) };
        return;
    }
    snake_scalar(buf, alpha, inv);
}

fn snake_scalar(buf: &mut [f32], alpha: f32, inv: f32) {
    for v in buf {
        let s = (alpha * *v).sin();
        *v += inv * (s * s);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::*;

    /// `sin(a)^2` for 8 lanes with |a| <= FAST_RANGE.
    #[target_feature(enable = "avx2,fma")]
    fn sin_sq(a: __m256) -> __m256 {
        let j = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(a, _mm256_set1_ps(std::f32::consts::FRAC_2_PI)),
        );
        let r = _mm256_fnmadd_ps(j, _mm256_set1_ps(PIO2_1), a);
        let r = _mm256_fnmadd_ps(j, _mm256_set1_ps(PIO2_2), r);
        let r = _mm256_fnmadd_ps(j, _mm256_set1_ps(PIO2_3), r);
        let z = _mm256_mul_ps(r, r);
        // sin(r) = r + r z (S1 + z (S2 + z S3))
        let ps = _mm256_fmadd_ps(z, _mm256_set1_ps(S3), _mm256_set1_ps(S2));
        let ps = _mm256_fmadd_ps(z, ps, _mm256_set1_ps(S1));
        let sin = _mm256_fmadd_ps(_mm256_mul_ps(r, z), ps, r);
        let sin_sq = _mm256_mul_ps(sin, sin);
        // Odd quadrants: cos^2 = 1 - sin^2, in [1/2, 1], where the subtraction loses nothing
        // (one polynomial instead of two and a blend of them).
        let odd = _mm256_and_si256(_mm256_cvtps_epi32(j), _mm256_set1_epi32(1));
        let use_cos = _mm256_castsi256_ps(_mm256_cmpeq_epi32(odd, _mm256_set1_epi32(1)));
        let cos_sq = _mm256_sub_ps(_mm256_set1_ps(1.0), sin_sq);
        _mm256_blendv_ps(sin_sq, cos_sq, use_cos)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn snake_in_place(buf: &mut [f32], alpha: f32, inv: f32) {
        let (va, vinv) = (_mm256_set1_ps(alpha), _mm256_set1_ps(inv));
        let limit = _mm256_set1_ps(FAST_RANGE);
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            // SAFETY: the chunk holds exactly 8 floats.
            let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
            let a = _mm256_mul_ps(va, v);
            let far = _mm256_cmp_ps::<_CMP_NLE_UQ>(_mm256_and_ps(a, abs_mask), limit);
            if _mm256_movemask_ps(far) != 0 {
                // Huge arguments or NaN: libm for these 8.
                snake_scalar(chunk, alpha, inv);
            } else {
                // Same order as the reference: x + inv * sin^2 (no fused multiply-add here).
                let y = _mm256_add_ps(v, _mm256_mul_ps(vinv, sin_sq(a)));
                // SAFETY: as for the load.
                unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), y) };
            }
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            // Zero-padded to a full vector, so that the tail gets the same sine as the rest.
            let mut pad = [0f32; 8];
            pad[..rest.len()].copy_from_slice(rest);
            snake_in_place(&mut pad, alpha, inv);
            rest.copy_from_slice(&pad[..rest.len()]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::*;

    /// `sin(a)^2` for 16 lanes with |a| <= FAST_RANGE (as the AVX2 version).
    #[target_feature(enable = "avx512f")]
    fn sin_sq(a: __m512) -> __m512 {
        let j = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(a, _mm512_set1_ps(std::f32::consts::FRAC_2_PI)),
        );
        let r = _mm512_fnmadd_ps(j, _mm512_set1_ps(PIO2_1), a);
        let r = _mm512_fnmadd_ps(j, _mm512_set1_ps(PIO2_2), r);
        let r = _mm512_fnmadd_ps(j, _mm512_set1_ps(PIO2_3), r);
        let z = _mm512_mul_ps(r, r);
        let ps = _mm512_fmadd_ps(z, _mm512_set1_ps(S3), _mm512_set1_ps(S2));
        let ps = _mm512_fmadd_ps(z, ps, _mm512_set1_ps(S1));
        let sin = _mm512_fmadd_ps(_mm512_mul_ps(r, z), ps, r);
        let sin_sq = _mm512_mul_ps(sin, sin);
        // Odd quadrants: cos^2 = 1 - sin^2, in [1/2, 1], where the subtraction loses nothing.
        let odd = _mm512_and_si512(_mm512_cvtps_epi32(j), _mm512_set1_epi32(1));
        let use_cos = _mm512_cmpeq_epi32_mask(odd, _mm512_set1_epi32(1));
        _mm512_mask_sub_ps(sin_sq, use_cos, _mm512_set1_ps(1.0), sin_sq)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn snake_in_place(buf: &mut [f32], alpha: f32, inv: f32) {
        let (va, vinv) = (_mm512_set1_ps(alpha), _mm512_set1_ps(inv));
        let n = buf.len();
        let mut i = 0;
        while i < n {
            let lanes = (n - i).min(16);
            snake16(&mut buf[i..i + lanes], (va, vinv), |_| (alpha, inv));
            i += lanes;
        }
    }

    /// `o = snake(x)` over the shorter of the two, with the bits of [`snake_in_place`]: a
    /// conv's input fill activates as it copies, instead of copying and then activating.
    #[target_feature(enable = "avx512f")]
    pub(super) fn snake_into(o: &mut [f32], x: &[f32], alpha: f32, inv: f32) {
        let (va, vinv) = (_mm512_set1_ps(alpha), _mm512_set1_ps(inv));
        let n = o.len().min(x.len());
        let mut i = 0;
        while i < n {
            let lanes = (n - i).min(16);
            let mask: __mmask16 = if lanes == 16 { !0 } else { (1u16 << lanes) - 1 };
            // SAFETY: the mask limits the accesses to [i..i + lanes], inside both slices.
            let v = unsafe { _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i)) };
            let a = _mm512_mul_ps(va, v);
            let near =
                _mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_abs_ps(a), _mm512_set1_ps(FAST_RANGE));
            let y = _mm512_add_ps(v, _mm512_mul_ps(vinv, sin_sq(a)));
            // SAFETY: as for the load.
            unsafe { _mm512_mask_storeu_ps(o.as_mut_ptr().add(i), mask & near, y) };
            let far = mask & !near;
            if far != 0 {
                for j in 0..lanes {
                    if far & (1 << j) != 0 {
                        o[i + j] = x[i + j];
                        snake_scalar(&mut o[i + j..i + j + 1], alpha, inv);
                    }
                }
            }
            i += lanes;
        }
    }

    /// [`snake_in_place`] along a time step's channels: element `c` with `alpha[c]`,
    /// `inv[c]`, the same bits as channel `c`'s samples get there.
    #[target_feature(enable = "avx512f")]
    pub(super) fn snake_channels_in_place(buf: &mut [f32], alpha: &[f32], inv: &[f32]) {
        let n = buf.len();
        assert!(
            alpha.len() >= n && inv.len() >= n,
            "snake: parameters per channel"
        );
        let mut i = 0;
        while i < n {
            let lanes = (n - i).min(16);
            let mask: __mmask16 = if lanes == 16 { !0 } else { (1u16 << lanes) - 1 };
            // SAFETY: the mask limits the accesses to [i..i + lanes], inside both (asserted).
            let params = unsafe {
                (
                    _mm512_maskz_loadu_ps(mask, alpha.as_ptr().add(i)),
                    _mm512_maskz_loadu_ps(mask, inv.as_ptr().add(i)),
                )
            };
            snake16(&mut buf[i..i + lanes], params, |j| {
                (alpha[i + j], inv[i + j])
            });
            i += lanes;
        }
    }

    /// [`super::snake_channel_rows_in_place`] on AVX-512.
    #[target_feature(enable = "avx512f")]
    pub(super) fn snake_channel_rows_in_place(
        buf: &mut [f32],
        width: usize,
        channels: usize,
        alpha: &[f32],
        inv: &[f32],
    ) {
        for row in buf.chunks_exact_mut(width) {
            snake_channels_in_place(&mut row[..channels], alpha, inv);
        }
    }

    /// Up to 16 values with their lanes' parameters (`scalar(j)` for lane `j`). A lane whose
    /// |alpha * x| is beyond the fast range (or NaN) goes through libm alone, so that every
    /// value's bits depend only on its own value and parameters, not on its neighbours.
    #[target_feature(enable = "avx512f")]
    fn snake16(
        buf: &mut [f32],
        (va, vinv): (__m512, __m512),
        scalar: impl Fn(usize) -> (f32, f32),
    ) {
        let lanes = buf.len();
        let mask: __mmask16 = if lanes == 16 { !0 } else { (1u16 << lanes) - 1 };
        // SAFETY: the mask limits the access to buf[..lanes].
        let v = unsafe { _mm512_maskz_loadu_ps(mask, buf.as_ptr()) };
        let a = _mm512_mul_ps(va, v);
        // Not (|a| <= limit): huge or NaN.
        let near = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_abs_ps(a), _mm512_set1_ps(FAST_RANGE));
        // Same order as the reference: x + inv * sin^2 (no fused multiply-add here).
        let y = _mm512_add_ps(v, _mm512_mul_ps(vinv, sin_sq(a)));
        // SAFETY: as for the load.
        unsafe { _mm512_mask_storeu_ps(buf.as_mut_ptr(), mask & near, y) };
        let far = mask & !near;
        if far != 0 {
            for (j, x) in buf.iter_mut().enumerate() {
                if far & (1 << j) != 0 {
                    let (alpha, inv) = scalar(j);
                    snake_scalar(std::slice::from_mut(x), alpha, inv);
                }
            }
        }
    }
}

/// [`snake_channels_in_place`] over each of the rows of `width` values in `buf` (the first
/// `channels` of each), dispatched once for the whole block: per 64-value row the dispatch and
/// the call cost about as much as the sines.
pub(crate) fn snake_channel_rows_in_place(
    buf: &mut [f32],
    width: usize,
    channels: usize,
    alpha: &[f32],
    inv: &[f32],
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        unsafe { avx512::snake_channel_rows_in_place(buf, width, channels, alpha, inv) };
        return;
    }
    for row in buf.chunks_exact_mut(width) {
        snake_channels_in_place(&mut row[..channels], alpha, inv);
    }
}

/// `buf[c] = snake(buf[c])` with channel `c`'s parameters: one time step of a time-major
/// signal, the same bits as [`snake_in_place`] gives channel `c`'s samples on AVX-512 (the only
/// CPUs that run time-major signals, those with AMX).
pub(crate) fn snake_channels_in_place(buf: &mut [f32], alpha: &[f32], inv: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        unsafe { avx512::snake_channels_in_place(buf, alpha, inv) };
        return;
    }
    for ((v, &a), &i) in buf.iter_mut().zip(alpha).zip(inv) {
        snake_scalar(std::slice::from_mut(v), a, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector sine against f64 over a wide range of arguments.
    #[test]
    fn vector_sine_is_accurate() {
        let n = 200_003;
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f32 / n as f32;
                // Dense near 0, then out to beyond the fast range (libm path).
                (t * t * 9000.0) * if i % 2 == 0 { 1.0 } else { -1.0 }
            })
            .collect();
        type Kernel = fn(&mut [f32], f32, f32);
        let mut paths: Vec<(&str, Kernel)> = vec![("dispatch", snake_in_place)];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                paths.push(("avx512", |b, a, i| unsafe {
                    avx512::snake_in_place(b, a, i)
                }));
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                paths.push(("avx2", |b, a, i| unsafe { avx2::snake_in_place(b, a, i) }));
            }
        }
        for ((path, f), alpha) in paths
            .iter()
            .flat_map(|p| [0.37f32, 1.0, 3.1].map(|a| (*p, a)))
        {
            let inv = 1.0 / (alpha + 1e-9);
            let mut o = x.clone();
            // Odd lengths exercise the tails.
            for chunk in o.chunks_mut(1021) {
                f(chunk, alpha, inv);
            }
            let mut worst = 0f64;
            for (&v, &y) in x.iter().zip(&o) {
                let s = ((alpha * v) as f64).sin();
                let want = v as f64 + inv as f64 * s * s;
                // 2 ulp of sin on the sin^2 term, plus the final rounding of y.
                let tol = 4.8e-7 * inv as f64 + 1.2e-7 * want.abs();
                worst = worst.max((y as f64 - want).abs() / tol);
            }
            assert!(
                worst <= 1.0,
                "{path}, alpha {alpha}: error {worst} x the tolerance"
            );
        }
        let mut o = vec![0f32; 9];
        snake_row(&mut o, &[f32::NAN; 9], 1.0, 1.0);
        assert!(o.iter().all(|v| v.is_nan()));
    }

    /// Along channels, each value gets the bits its channel's row gets, a huge value among
    /// ordinary ones included.
    #[test]
    fn channels_give_the_rows_bits() {
        let (steps, channels) = (37, 45);
        let alpha: Vec<f32> = (0..channels).map(|c| 0.2 + 0.13 * c as f32).collect();
        let inv: Vec<f32> = alpha.iter().map(|a| 1.0 / (a + 1e-9)).collect();
        let mut x: Vec<f32> = (0..steps * channels)
            .map(|i| ((i as f32) * 0.61).sin() * 3.0)
            .collect();
        x[5 * channels + 7] = 1e6;
        x[9 * channels + 40] = f32::NAN;
        let mut rows = vec![0f32; steps * channels];
        for c in 0..channels {
            let mut row: Vec<f32> = (0..steps).map(|t| x[t * channels + c]).collect();
            snake_in_place(&mut row, alpha[c], inv[c]);
            for t in 0..steps {
                rows[t * channels + c] = row[t];
            }
        }
        let mut steps_major = x.clone();
        for step in steps_major.chunks_mut(channels) {
            snake_channels_in_place(step, &alpha, &inv);
        }
        for (a, b) in rows.iter().zip(&steps_major) {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{a} vs {b}"
            );
        }
    }
}
