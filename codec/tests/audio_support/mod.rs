//! Helpers shared by the audio tests: fixture paths, test signals and signal measurements.
#![allow(dead_code)]

use std::f64::consts::PI;
use std::path::PathBuf;

use tessera_core::Error;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

pub fn sine(freq: f64, rate: u32, n: usize, amplitude: f64) -> Vec<f32> {
    (0..n)
        .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

/// The central half of a signal, away from codec priming and filter edges.
pub fn middle(x: &[f32]) -> &[f32] {
    &x[x.len() / 4..x.len() * 3 / 4]
}

/// Frequency from the upward zero crossings (linearly interpolated) of a clean tone.
pub fn zero_crossing_freq(x: &[f32], rate: u32) -> f64 {
    let mut crossings = Vec::new();
    for i in 1..x.len() {
        let (a, b) = (f64::from(x[i - 1]), f64::from(x[i]));
        if a < 0.0 && b >= 0.0 {
            crossings.push((i - 1) as f64 + a / (a - b));
        }
    }
    assert!(
        crossings.len() >= 3,
        "too few zero crossings to measure a frequency"
    );
    let span = crossings[crossings.len() - 1] - crossings[0];
    (crossings.len() - 1) as f64 / span * f64::from(rate)
}

pub fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

pub fn mean(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64
}

/// Level of a sine relative to an amplitude, in dB, from its RMS.
pub fn sine_level_db(x: &[f32], amplitude: f64) -> f64 {
    20.0 * (rms(x) * 2f64.sqrt() / amplitude).log10()
}

/// Least-squares fit of `a sin(wt) + b cos(wt) + c` at `freq` (t = i / rate + t0); returns
/// (amplitude, phase in radians, offset, residual RMS).
pub fn fit_sine(x: &[f32], freq: f64, rate: u32, first_index: usize) -> (f64, f64, f64, f64) {
    let basis = |i: usize| {
        let t = (first_index + i) as f64 / f64::from(rate);
        let w = 2.0 * PI * freq * t;
        [w.sin(), w.cos(), 1.0]
    };
    let mut ata = [[0.0f64; 3]; 3];
    let mut aty = [0.0f64; 3];
    for (i, &y) in x.iter().enumerate() {
        let row = basis(i);
        for ((ata_r, aty_r), &ri) in ata.iter_mut().zip(aty.iter_mut()).zip(&row) {
            for (a, &rj) in ata_r.iter_mut().zip(&row) {
                *a += ri * rj;
            }
            *aty_r += ri * f64::from(y);
        }
    }
    let coef = solve3(ata, aty);
    let residual = (x
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let row = basis(i);
            let fit = coef[0] * row[0] + coef[1] * row[1] + coef[2] * row[2];
            (f64::from(y) - fit).powi(2)
        })
        .sum::<f64>()
        / x.len() as f64)
        .sqrt();
    let amplitude = coef[0].hypot(coef[1]);
    (amplitude, coef[1].atan2(coef[0]), coef[2], residual)
}

fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> [f64; 3] {
    for col in 0..3 {
        let pivot = (col..3)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap();
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (pivot_row, pivot_b) = (a[col], b[col]);
        for row in col + 1..3 {
            let f = a[row][col] / pivot_row[col];
            for (x, p) in a[row].iter_mut().zip(pivot_row).skip(col) {
                *x -= f * p;
            }
            b[row] -= f * pivot_b;
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let s: f64 = (row + 1..3).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

/// Asserts that `result` failed with `Error::File` about `path`, with a one-line reason;
/// returns the reason.
pub fn file_error<T: std::fmt::Debug>(
    result: tessera_core::Result<T>,
    path: &std::path::Path,
) -> String {
    match result {
        Err(Error::File { path: p, reason }) => {
            assert_eq!(p, path, "the error names another path");
            assert!(!reason.is_empty(), "empty reason");
            assert!(!reason.contains('\n'), "reason spans lines: {reason:?}");
            reason
        }
        other => panic!("expected Error::File for {}, got {other:?}", path.display()),
    }
}
