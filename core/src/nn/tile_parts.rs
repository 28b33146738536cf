//! Between rows of samples and the `m` parts that minimal filtering's tiles read
//! (`conv_winograd::tile_sums`): with dilation `d`, part `a` holds samples `a d .. (a + 1) d` of
//! every block of `m d`, so that each tap of a run of tiles is a contiguous run of a part.
//!
//! Only copies, and one addition of the bias (and residual) per output, so every path gives
//! the same bits. With AVX-512, the common shapes avoid per-sample scalar moves: `m = 4, d = 1`
//! (the residual units' conv1, DAC's first unit of each block) by permutes, 64 samples at a
//! time, and `1 < d <= 16` (DAC's dilations 3 and 9) by one masked load and store per run of
//! `d`, where `copy_from_slice` called `memmove` for each run of 3 or 9 floats. In DAC's
//! 64-channel units (160k samples, 10 s at 16 kHz) the scalar splits, merges and copies were
//! 15% of the unit's time.

use std::mem::MaybeUninit;

/// An initialised row as one to be written: the functions here only write values into such a
/// row, never uninitialised memory, so it stays initialised.
pub(crate) fn as_uninit(row: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; writers of `MaybeUninit` slices here only store initialised floats.
    unsafe { &mut *(row as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// `row` (any length) into `m` parts of `part_len` (dilation 1), zero past the row's end.
pub(crate) fn split_padded(row: &[f32], dst: &mut [f32], m: usize, part_len: usize) {
    assert!(dst.len() >= m * part_len && row.len() <= m * part_len);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if m == 4 && std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked); bounds asserted above.
        done = unsafe { avx512::split4(row, dst, part_len) };
    }
    let whole = row.len() / m * m;
    for (q, block) in row[..whole].chunks_exact(m).enumerate().skip(done / m) {
        for (a, &v) in block.iter().enumerate() {
            dst[a * part_len + q] = v;
        }
    }
    for (i, &v) in row.iter().enumerate().skip(whole.max(done)) {
        dst[(i % m) * part_len + i / m] = v;
    }
    for a in 0..m {
        let first = row.len().saturating_sub(a).div_ceil(m);
        dst[a * part_len + first..(a + 1) * part_len].fill(0.0);
    }
}

/// A row of whole blocks of `m d` samples into its `m` parts (of `parts`, each `row.len() / m`
/// long).
pub(crate) fn split_parts(row: &[f32], parts: &mut [f32], m: usize, d: usize) {
    let part_len = row.len() / m;
    assert!(row.len().is_multiple_of(m * d) && parts.len() >= m * part_len);
    if d == 1 {
        return split_padded(row, parts, m, part_len);
    }
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if d <= 16 && std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked); bounds asserted above.
        done = unsafe { avx512::split_runs(row, parts, m, d) };
    }
    for (q, block) in row.chunks_exact(m * d).enumerate().skip(done) {
        for (a, src) in block.chunks_exact(d).enumerate() {
            parts[a * part_len + q * d..][..d].copy_from_slice(src);
        }
    }
}

/// The inverse of [`split_parts`] for whole blocks of outputs, adding the bias and the
/// residual: `y = (res + bias) + sum`, part `a` of the sums being `sums(a)`.
pub(crate) fn merge_parts<'a>(
    sums: &impl Fn(usize) -> &'a [f32],
    row: &mut [MaybeUninit<f32>],
    m: usize,
    d: usize,
    res: Option<&[f32]>,
    bias: f32,
) {
    assert!(row.len().is_multiple_of(m * d) && res.is_none_or(|r| r.len() >= row.len()));
    if d == 1 && res.is_none() {
        return merge(sums, row, m, bias);
    }
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if (2..=16).contains(&d) && std::is_x86_feature_detected!("avx512f") {
        let blocks = row.len() / (m * d);
        assert!((0..m).all(|a| sums(a).len() >= blocks * d));
        // SAFETY: the CPU has AVX-512F (checked); bounds asserted above.
        done = unsafe { avx512::merge_runs(sums, row, m, d, res, bias) };
    }
    for a in 0..m {
        let s = sums(a);
        for (q, block) in row.chunks_exact_mut(m * d).enumerate().skip(done) {
            let dst = &mut block[a * d..][..d];
            let src = &s[q * d..][..d];
            match res {
                Some(r) => {
                    let r = &r[q * m * d + a * d..][..d];
                    for ((y, &s), &rv) in dst.iter_mut().zip(src).zip(r) {
                        y.write((rv + bias) + s);
                    }
                }
                None => {
                    for (y, &s) in dst.iter_mut().zip(src) {
                        y.write(bias + s);
                    }
                }
            }
        }
    }
}

/// `row[m q + a] = bias + part(a)[q]` for every sample of `row` (dilation 1, any length).
pub(crate) fn merge<'a>(
    part: &impl Fn(usize) -> &'a [f32],
    row: &mut [MaybeUninit<f32>],
    m: usize,
    bias: f32,
) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if m == 4 && std::is_x86_feature_detected!("avx512f") {
        let parts = [part(0), part(1), part(2), part(3)];
        // SAFETY: the CPU has AVX-512F (checked); the function checks its bounds.
        done = unsafe { avx512::merge4(parts, row, bias) };
    }
    for a in 0..m {
        let Some(rest) = row.get_mut(done + a..) else {
            break;
        };
        for (y, &s) in rest.iter_mut().step_by(m).zip(&part(a)[done / m..]) {
            y.write(bias + s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// [`super::split_padded`] with `m = 4` of the row's whole blocks of 64 samples; returns
    /// how many samples it did.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn split4(row: &[f32], dst: &mut [f32], part_len: usize) -> usize {
        let blocks = row.len() / 64;
        assert!(blocks * 16 <= part_len && dst.len() >= 4 * part_len);
        // Part a of 16 samples (4 floats each) of a pair of vectors: indices 4 j + a, j < 8.
        let index = |a: i32| {
            _mm512_setr_epi32(
                a,
                4 + a,
                8 + a,
                12 + a,
                16 + a,
                20 + a,
                24 + a,
                28 + a,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            )
        };
        let idx = [index(0), index(1), index(2), index(3)];
        for k in 0..blocks {
            // SAFETY: 64 samples from 64 k are in the row (k < blocks); the stores write
            // 16 values from 16 k of each part, inside it (asserted).
            unsafe {
                let src = row.as_ptr().add(64 * k);
                let v = [0, 16, 32, 48].map(|o| _mm512_loadu_ps(src.add(o)));
                for (a, &ix) in idx.iter().enumerate() {
                    let lo = _mm512_permutex2var_ps(v[0], ix, v[1]);
                    let hi = _mm512_permutex2var_ps(v[2], ix, v[3]);
                    let out = _mm512_shuffle_f32x4::<0b01_00_01_00>(lo, hi);
                    _mm512_storeu_ps(dst.as_mut_ptr().add(a * part_len + 16 * k), out);
                }
            }
        }
        blocks * 64
    }

    /// [`super::merge`] with `m = 4` of the row's whole blocks of 64 samples; returns how many
    /// samples it did.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn merge4(
        parts: [&[f32]; 4],
        row: &mut [MaybeUninit<f32>],
        bias: f32,
    ) -> usize {
        let blocks = (row.len() / 64).min(parts.iter().map(|p| p.len() / 16).min().unwrap_or(0));
        // Output vector j of a block, lane 4 u + a: part a, element 4 j + u. `pair` picks parts
        // 0 and 1 into lanes 4 u and 4 u + 1 (and 2 and 3 into 4 u + 2 and 4 u + 3, the same
        // indices over the other pair); the blend takes the second pair's lanes.
        let pair = |j: i32| {
            let mut ix = [0i32; 16];
            for u in 0..4 {
                for a in 0..4 {
                    ix[(4 * u + a) as usize] = 4 * j + u + if a % 2 == 1 { 16 } else { 0 };
                }
            }
            // SAFETY: 16 indices.
            unsafe { _mm512_loadu_si512(ix.as_ptr().cast()) }
        };
        let idx = [pair(0), pair(1), pair(2), pair(3)];
        let b = _mm512_set1_ps(bias);
        let out = row.as_mut_ptr().cast::<f32>();
        for k in 0..blocks {
            // SAFETY: 16 values of each part from 16 k and 64 samples of the row from 64 k
            // (k < blocks).
            unsafe {
                let s = parts.map(|p| _mm512_loadu_ps(p.as_ptr().add(16 * k)));
                for (j, &ix) in idx.iter().enumerate() {
                    let p01 = _mm512_permutex2var_ps(s[0], ix, s[1]);
                    let p23 = _mm512_permutex2var_ps(s[2], ix, s[3]);
                    let v = _mm512_mask_blend_ps(0xCCCC, p01, p23);
                    _mm512_storeu_ps(out.add(64 * k + 16 * j), _mm512_add_ps(b, v));
                }
            }
        }
        blocks * 64
    }

    /// [`super::split_parts`] for `d <= 16`: each run of `d` by one masked load and store.
    /// Returns the blocks done (all of them).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn split_runs(row: &[f32], parts: &mut [f32], m: usize, d: usize) -> usize {
        let part_len = row.len() / m;
        let blocks = row.len() / (m * d);
        let mask = ((1u32 << d) - 1) as __mmask16;
        for q in 0..blocks {
            for a in 0..m {
                // SAFETY: the run's d samples are in the row (block q < blocks) and its
                // destination in part a (q d + d <= part_len); the mask covers exactly them.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(mask, row.as_ptr().add(q * m * d + a * d));
                    _mm512_mask_storeu_ps(parts.as_mut_ptr().add(a * part_len + q * d), mask, v);
                }
            }
        }
        blocks
    }

    /// [`super::merge_parts`] for `1 < d <= 16`, masked as [`split_runs`]. Returns the blocks
    /// done (all of them).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn merge_runs<'a>(
        sums: &impl Fn(usize) -> &'a [f32],
        row: &mut [MaybeUninit<f32>],
        m: usize,
        d: usize,
        res: Option<&[f32]>,
        bias: f32,
    ) -> usize {
        let blocks = row.len() / (m * d);
        let mask = ((1u32 << d) - 1) as __mmask16;
        let b = _mm512_set1_ps(bias);
        let out = row.as_mut_ptr().cast::<f32>();
        for a in 0..m {
            let s = sums(a).as_ptr();
            for q in 0..blocks {
                let at = q * m * d + a * d;
                // SAFETY: d sums from q d of part a and d outputs (and residuals) from `at`
                // are inside their slices (the caller checked the lengths); the mask covers
                // exactly them.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(mask, s.add(q * d));
                    let y = match res {
                        Some(r) => {
                            let rv = _mm512_maskz_loadu_ps(mask, r.as_ptr().add(at));
                            _mm512_add_ps(_mm512_add_ps(rv, b), v)
                        }
                        None => _mm512_add_ps(b, v),
                    };
                    _mm512_mask_storeu_ps(out.add(at), mask, y);
                }
            }
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_padded_and_merge_by_definition() {
        let m = 4;
        for len in [0usize, 3, 64, 65, 130, 386, 1001] {
            let row: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
            let part_len = len.div_ceil(m) + 2;
            let mut dst = vec![f32::NAN; m * part_len];
            split_padded(&row, &mut dst, m, part_len);
            for a in 0..m {
                for q in 0..part_len {
                    let want = row.get(m * q + a).copied().unwrap_or(0.0);
                    assert_eq!(
                        dst[a * part_len + q],
                        want,
                        "len {len} part {a} element {q}"
                    );
                }
            }
            let mut merged = vec![f32::NAN; len];
            let part = |a: usize| &dst[a * part_len..][..part_len];
            merge(&part, as_uninit(&mut merged), m, 0.25);
            let want: Vec<f32> = row.iter().map(|&v| 0.25 + v).collect();
            assert_eq!(merged, want, "len {len}");
        }
        // Other tile sizes take the plain loops.
        let row: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let mut dst = vec![f32::NAN; 3 * 8];
        split_padded(&row, &mut dst, 3, 8);
        assert_eq!(&dst[8..16], &[1., 4., 7., 10., 13., 16., 19., 0.]);
    }

    /// Every dilation (the masked runs up to 16, the copies beyond) and tile size splits and
    /// merges as the definition says, with and without a residual.
    #[test]
    fn split_parts_and_merge_parts_by_definition() {
        for (m, d, blocks) in [
            (4, 1, 37),
            (4, 3, 20),
            (4, 9, 7),
            (3, 2, 11),
            (4, 16, 3),
            (2, 17, 4),
        ] {
            let len = m * d * blocks;
            let row: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 7.0).collect();
            let part_len = len / m;
            let mut parts = vec![f32::NAN; m * part_len];
            split_parts(&row, &mut parts, m, d);
            for (i, &v) in row.iter().enumerate() {
                let (q, pos) = (i / (m * d), i % (m * d));
                let (a, r) = (pos / d, pos % d);
                assert_eq!(parts[a * part_len + q * d + r], v, "m {m} d {d} sample {i}");
            }
            let res: Vec<f32> = (0..len).map(|i| (i % 13) as f32).collect();
            let sums = |a: usize| &parts[a * part_len..][..part_len];
            for residual in [None, Some(&res[..])] {
                let mut out = vec![f32::NAN; len];
                merge_parts(&sums, as_uninit(&mut out), m, d, residual, 0.75);
                for (i, (&y, &x)) in out.iter().zip(&row).enumerate() {
                    let want = match residual {
                        Some(r) => (r[i] + 0.75) + x,
                        None => 0.75 + x,
                    };
                    assert_eq!(y, want, "m {m} d {d} sample {i}");
                }
            }
        }
    }
}
