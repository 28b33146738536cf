//! ELU (alpha 1) in f32, as torch computes it (`expm1` for negative inputs): one value at a time
//! for loops that vectorise, and in place over a slice (the conv kernels apply it to their input
//! tiles while those are in cache, instead of a separate pass over the whole signal).

/// ELU of one value, branch-free so that the loop over a tensor vectorises: `expm1` from a
/// Cody-Waite reduction `x = k ln2 + r`, a degree-7 Taylor polynomial for `expm1(r)` on
/// `|r| <= ln2 / 2` (the next term is below 2e-8 of the value there), and
/// `expm1(x) = 2^k expm1(r) + (2^k - 1)` (exact scaling, one rounding). Within 2 ulp of the
/// exact value, like torch's vectorised `expm1` (1 ulp).
///
/// Every multiply-add is a fused `mul_add`, which the slice functions below compile to FMA
/// instructions: half the operations of separate multiplies and adds, and the same bits on
/// every path (a CPU without FMA computes the fused result in software, slowly but exactly).
#[inline(always)]
pub fn elu_f32(v: f32) -> f32 {
    const INV_LN2: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and removing 1.5 * 2^23 rounds to the nearest integer in plain arithmetic
    // (`round` would be a library call on baseline x86-64 and stop vectorisation).
    const ROUND: f32 = 12_582_912.0;
    let x = v.clamp(-88.0, 0.0);
    let shifted = x.mul_add(INV_LN2, ROUND);
    let k = shifted - ROUND;
    let r = (-k).mul_add(LN2_HI, x);
    let r = (-k).mul_add(LN2_LO, r);
    let q = r.mul_add(1.0 / 5040.0, 1.0 / 720.0);
    let q = q.mul_add(r, 1.0 / 120.0);
    let q = q.mul_add(r, 1.0 / 24.0);
    let q = q.mul_add(r, 1.0 / 6.0);
    let q = q.mul_add(r, 0.5);
    let p = (r * r).mul_add(q, r);
    // k sits in the low mantissa bits of `shifted`: 2^k without a float-to-int conversion
    // (which would not vectorise either).
    let k_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let scale = f32::from_bits((k_int.wrapping_add(127) << 23) as u32);
    let e = scale.mul_add(p, scale - 1.0);
    if v > 0.0 { v } else { e }
}

/// ELU of every element. On x86-64 the loop is compiled for AVX-512 or AVX2 (with FMA) as well
/// and the widest the CPU has runs: the same fused operations per element, so the same bits,
/// and many times the baseline throughput (which has no FMA instructions). At 32-64 channels over 240k samples the ELU
/// of a codec's outer layers costs about as much as the conv it feeds.
#[inline]
pub fn elu_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX-512F and FMA (checked).
            return unsafe { elu_avx512(x) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked).
            return unsafe { elu_avx2(x) };
        }
    }
    elu_loop(x);
}

/// `dst[i] = elu(src[i])` over the shorter of the two: the copy and the activation in one pass
/// (a conv's input tile is filled this way), with the bits of [`elu_in_place`].
#[inline]
pub fn elu_into(dst: &mut [f32], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX-512F and FMA (checked).
            return unsafe { elu_into_avx512(dst, src) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked).
            return unsafe { elu_into_avx2(dst, src) };
        }
    }
    elu_into_loop(dst, src);
}

/// ELU over `x`, inlined into the caller (which vectorises it for its own target features),
/// with the bits of [`elu_f32`].
#[inline(always)]
pub(crate) fn elu_slice(x: &mut [f32]) {
    elu_loop(x)
}

#[inline(always)]
fn elu_loop(x: &mut [f32]) {
    for v in x {
        *v = elu_f32(*v);
    }
}

#[inline(always)]
fn elu_into_loop(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = elu_f32(s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn elu_avx512(x: &mut [f32]) {
    elu_loop(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn elu_avx2(x: &mut [f32]) {
    elu_loop(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn elu_into_avx512(dst: &mut [f32], src: &[f32]) {
    elu_into_loop(dst, src)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn elu_into_avx2(dst: &mut [f32], src: &[f32]) {
    elu_into_loop(dst, src)
}

#[cfg(test)]
mod tests {
    use super::elu_f32;

    /// Within 2 ulp of `expm1` computed in f64, over the whole negative range.
    #[test]
    fn elu_is_accurate() {
        let mut worst = 0f64;
        let mut x = -100f32;
        while x < 0.0 {
            let want = (x as f64).exp_m1();
            let got = elu_f32(x) as f64;
            let ulp = (want.abs() as f32).max(f32::MIN_POSITIVE) as f64 * f32::EPSILON as f64;
            worst = worst.max((got - want).abs() / ulp);
            x = if x < -1e-3 {
                x * 0.999_9 + 1e-7
            } else {
                x * 0.99
            };
            if x > -1e-30 {
                break;
            }
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(elu_f32(0.0), 0.0);
        assert_eq!(elu_f32(2.5), 2.5);
        assert_eq!(elu_f32(-200.0), -1.0);
        assert!(elu_f32(f32::NAN).is_nan());
    }

    /// Every path (the widest vector code, its scalar tail, the plain loop) gives the same bits.
    #[test]
    fn vector_and_scalar_paths_agree() {
        let src: Vec<f32> = (0..4099)
            .map(|i| ((i * 7919) % 20011) as f32 * -0.004_4)
            .collect();
        let mut fast = src.clone();
        super::elu_in_place(&mut fast);
        for (i, (&x, &y)) in src.iter().zip(&fast).enumerate() {
            assert_eq!(y.to_bits(), elu_f32(x).to_bits(), "element {i}: {x}");
        }
    }

    /// The fused copy gives the bits of the in-place pass, tails included.
    #[test]
    fn elu_into_equals_elu_in_place() {
        let src: Vec<f32> = (0..1037)
            .map(|i| ((i * 37) % 101) as f32 * 0.13 - 9.0)
            .collect();
        let mut want = src.clone();
        super::elu_in_place(&mut want);
        let mut got = vec![f32::NAN; src.len()];
        super::elu_into(&mut got, &src);
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}
