//! The resampler's filter settings and its time alignment, chosen per rate pair.
//!
//! Where rubato's sinc resampler puts its outputs (read from rubato 5.0.1, confirmed by the
//! phase tests in codec/tests/audio_resample.rs): with ratio `r = to / from`, sinc length `N`
//! and `F` tabulated sinc phases, output `k` (counting from 0) is the band-limited input at time
//! `(k + 1) / r - N / 2 + 1 / F` input frames. We feed `z` zeros first and drop the first `D`
//! outputs so that output `j` lands on time `j / r` of the real input; that needs
//! `D = r (N/2 + z - 1/F) - 1` to be a whole number.
//!
//! - Exact plan: with `r = L / M` in lowest terms and `F = L` phases, every output time is a
//!   multiple of `1/L` input frames, so the nearest tabulated phase is the exact one (no
//!   interpolation at all: a plain polyphase filter) and `z` can solve
//!   `L (N/2 + z) = 1 (mod M)`, making `D` whole. Used when the table (`N * L` points) is small,
//!   which covers every pair of the usual rates (8, 11.025, 16, 22.05, 24, 32, 44.1, 48, 88.2,
//!   96 kHz ...).
//! - Interpolated plan, for ratios like 44100 -> 44101: 256 phases with cubic interpolation
//!   between them, and the `z` below `min(M, 4096)` that brings `D` closest to a whole number;
//!   the alignment error is then at most `r/256` output frames plus that rounding.

use rubato::{SincInterpolationType, WindowFunction};

/// Sinc length (taps at the input rate) when upsampling. When downsampling it grows by
/// `from / to` so that the transition band, measured at the output rate, stays as narrow.
pub const SINC_LEN: usize = 256;
/// Cap on the grown sinc length (reached only beyond 8x downsampling).
pub const MAX_SINC_LEN: usize = 2048;
/// The window of the sinc. The squared Blackman-Harris has very low side lobes.
pub const WINDOW: WindowFunction = WindowFunction::BlackmanHarris2;
/// Largest sinc table (`N * L` f32 values, 4 MiB) for the exact plan.
const MAX_EXACT_TABLE: u64 = 1 << 20;
/// Tabulated phases of the interpolated plan.
const INTERPOLATED_PHASES: usize = 256;
/// Longest run of leading zeros the interpolated plan tries.
const MAX_ALIGN_ZEROS: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    /// Sinc length, a multiple of 8 (rubato rounds up to one).
    pub sinc_len: usize,
    pub phases: usize,
    pub interpolation: SincInterpolationType,
    pub lead_zeros: usize,
    pub delay: usize,
}

pub(crate) fn plan(from: u32, to: u32) -> Plan {
    let ratio = f64::from(to) / f64::from(from);
    let sinc_len = sinc_len_for(ratio).next_multiple_of(8);
    let g = gcd(from, to);
    let (l, m) = (u64::from(to / g), u64::from(from / g));
    if l * sinc_len as u64 <= MAX_EXACT_TABLE {
        let half = (sinc_len / 2) as u64;
        let z = (mod_inverse(l % m, m) + m - half % m) % m;
        let delay = (l * (half + z) - 1) / m - 1;
        Plan {
            sinc_len,
            phases: l as usize,
            interpolation: SincInterpolationType::Nearest,
            lead_zeros: z as usize,
            delay: delay as usize,
        }
    } else {
        let delay_for = |z: u64| {
            ratio * (sinc_len as f64 / 2.0 + z as f64 - 1.0 / INTERPOLATED_PHASES as f64) - 1.0
        };
        let mut best = (0u64, f64::INFINITY);
        for z in 0..m.min(MAX_ALIGN_ZEROS) {
            let d = delay_for(z);
            let miss = (d - d.round()).abs();
            if miss < best.1 - 1e-9 {
                best = (z, miss);
            }
        }
        Plan {
            sinc_len,
            phases: INTERPOLATED_PHASES,
            interpolation: SincInterpolationType::Cubic,
            lead_zeros: best.0 as usize,
            delay: delay_for(best.0).round().max(0.0) as usize,
        }
    }
}

fn sinc_len_for(ratio: f64) -> usize {
    if ratio >= 1.0 {
        SINC_LEN
    } else {
        ((SINC_LEN as f64 / ratio).ceil() as usize).min(MAX_SINC_LEN)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// `a^-1 mod m` for coprime `a` and `m` (0 when `m` is 1).
fn mod_inverse(a: u64, m: u64) -> u64 {
    if m == 1 {
        return 0;
    }
    let (mut old_r, mut r) = (a as i128, m as i128);
    let (mut old_s, mut s) = (1i128, 0i128);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    old_s.rem_euclid(m as i128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exact_plan_makes_the_delay_whole() {
        for (from, to) in [
            (44_100, 24_000),
            (16_000, 48_000),
            (48_000, 16_000),
            (22_050, 24_000),
            (96_000, 11_025),
        ] {
            let p = plan(from, to);
            assert_eq!(p.interpolation, SincInterpolationType::Nearest);
            let g = gcd(from, to);
            let (l, m) = (u64::from(to / g), u64::from(from / g));
            assert_eq!(p.phases as u64, l);
            let lhs = l * (p.sinc_len as u64 / 2 + p.lead_zeros as u64) - 1;
            assert_eq!(lhs % m, 0);
            assert_eq!(lhs / m - 1, p.delay as u64);
            assert!((p.lead_zeros as u64) < m);
        }
    }

    #[test]
    fn odd_ratios_fall_back_to_interpolation() {
        let p = plan(44_100, 44_101);
        assert_eq!(p.interpolation, SincInterpolationType::Cubic);
        assert_eq!(p.phases, INTERPOLATED_PHASES);
    }

    #[test]
    fn sinc_grows_when_downsampling() {
        assert_eq!(plan(16_000, 48_000).sinc_len, 256);
        assert_eq!(plan(48_000, 16_000).sinc_len, 768);
        assert_eq!(plan(768_000, 8_000).sinc_len, MAX_SINC_LEN);
    }

    #[test]
    fn modular_inverse() {
        for m in [2u64, 3, 147, 160, 1280] {
            for a in 1..m.min(50) {
                if gcd(a as u32, m as u32) == 1 {
                    assert_eq!(a * mod_inverse(a, m) % m, 1, "{a} mod {m}");
                }
            }
        }
    }
}
