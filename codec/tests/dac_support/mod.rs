//! Shared helpers of the DAC tests: fixture paths, the reference's tensors, comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use tessera_codec::dac::Dac;

pub const FIXTURES: &[&str] = &["tiny_odd", "tiny_even", "tiny_custom"];

pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dac")
        .join(name)
}

pub fn load_model(name: &str) -> Dac {
    Dac::load(fixture_dir(name), &Device::Cpu).unwrap()
}

/// The reference's inputs and outputs (see scripts/reference/dac_fixtures.py).
pub struct Io {
    tensors: HashMap<String, Tensor>,
}

impl Io {
    pub fn load(name: &str) -> Io {
        Self::from_file(fixture_dir(name).join("io.safetensors"))
    }

    pub fn from_file(path: PathBuf) -> Io {
        Io {
            tensors: candle_core::safetensors::load(path, &Device::Cpu).unwrap(),
        }
    }

    pub fn n_clips(&self) -> usize {
        (0..)
            .take_while(|i| self.tensors.contains_key(&format!("audio.{i}")))
            .count()
    }

    /// Clip `i`, `[1, 1, T]`.
    pub fn audio(&self, i: usize) -> Tensor {
        self.tensors[&format!("audio.{i}")].clone()
    }

    /// All codebooks, `[1, n_codebooks, F]` u32.
    pub fn codes(&self, i: usize) -> Tensor {
        self.tensors[&format!("codes.{i}")]
            .to_dtype(DType::U32)
            .unwrap()
    }

    /// The first `n_q()` codebooks.
    pub fn codes_nq(&self, i: usize) -> Tensor {
        self.tensors[&format!("codes_nq.{i}")]
            .to_dtype(DType::U32)
            .unwrap()
    }

    pub fn n_q(&self) -> usize {
        self.tensors["n_q"].to_vec1::<i64>().unwrap()[0] as usize
    }

    /// `DacModel.decode(audio_codes=codes.i)`, `[1, T']`.
    pub fn decoded(&self, i: usize) -> Tensor {
        self.tensors[&format!("decoded.{i}")].clone()
    }

    pub fn decoded_nq(&self, i: usize) -> Tensor {
        self.tensors[&format!("decoded_nq.{i}")].clone()
    }
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

pub fn as_u32(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<u32>().unwrap()
}

/// Number of positions where two code tensors of one shape differ.
pub fn count_code_diffs(a: &Tensor, b: &Tensor) -> usize {
    assert_eq!(a.dims(), b.dims(), "code shapes differ");
    as_u32(a)
        .iter()
        .zip(as_u32(b))
        .filter(|(x, y)| **x != *y)
        .count()
}

/// A deterministic test signal (partials and a little hash noise) `[1, 1, n]`.
pub fn signal(n: usize, sample_rate: u32, seed: u64) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let sr = sample_rate as f32;
    let partials: Vec<(f32, f32, f32)> = (0..4)
        .map(|k| {
            let f = 50.0 + (noise() + 0.5) * sr / 4.0;
            (f, 0.05 + 0.1 * k as f32, noise() * 6.0)
        })
        .collect();
    let v: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f32 / sr;
            let tone: f32 = partials
                .iter()
                .map(|&(f, a, ph)| a * (std::f32::consts::TAU * f * t + ph).sin())
                .sum();
            // A slow swell so that windows differ from each other.
            let env = 0.6 + 0.4 * (std::f32::consts::TAU * 0.7 * t).sin();
            env * tone + 0.1 * noise()
        })
        .collect();
    Tensor::from_vec(v, (1, 1, n), &Device::Cpu).unwrap()
}
