//! Shared helpers of the Mimi tests: fixture paths and the reference's tensors.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use tessera_codec::mimi::Mimi;

pub const FIXTURES: &[&str] = &["tiny", "tiny_gqa"];

pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mimi")
        .join(name)
}

pub fn load_model(name: &str) -> Mimi {
    Mimi::load(fixture_dir(name), &Device::Cpu).unwrap()
}

/// The reference's inputs and outputs (see scripts/reference/mimi_fixtures.py).
pub struct Io {
    tensors: HashMap<String, Tensor>,
}

impl Io {
    pub fn load(name: &str) -> Io {
        Self::load_path(fixture_dir(name).join("io.safetensors"))
    }

    pub fn load_path(path: PathBuf) -> Io {
        Io {
            tensors: candle_core::safetensors::load(path, &Device::Cpu).unwrap(),
        }
    }

    pub fn n_clips(&self) -> usize {
        (0..)
            .take_while(|i| self.tensors.contains_key(&format!("audio.{i}")))
            .count()
    }

    pub fn audio(&self, i: usize) -> Tensor {
        self.tensors[&format!("audio.{i}")].clone()
    }

    /// Codes with every codebook, `[B, n_q, F]` u32.
    pub fn codes(&self, i: usize) -> Tensor {
        self.tensors[&format!("codes.{i}")]
            .to_dtype(DType::U32)
            .unwrap()
    }

    pub fn few(&self) -> usize {
        self.tensors["few"].to_vec1::<i64>().unwrap()[0] as usize
    }

    /// Codes with the first [`Self::few`] codebooks.
    pub fn codes_few(&self, i: usize) -> Tensor {
        self.tensors[&format!("codes_few.{i}")]
            .to_dtype(DType::U32)
            .unwrap()
    }

    pub fn decoded(&self, i: usize) -> Tensor {
        self.tensors[&format!("decoded.{i}")].clone()
    }

    pub fn decoded_few(&self, i: usize) -> Option<Tensor> {
        self.tensors.get(&format!("decoded_few.{i}")).cloned()
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

/// Indices where two code tensors differ (empty when identical).
pub fn code_diffs(a: &Tensor, b: &Tensor) -> Vec<usize> {
    assert_eq!(a.dims(), b.dims(), "code shapes differ");
    as_u32(a)
        .iter()
        .zip(as_u32(b))
        .enumerate()
        .filter(|(_, (x, y))| **x != *y)
        .map(|(i, _)| i)
        .collect()
}

/// A small deterministic generator of chunk sizes (xorshift64*).
pub struct Sizes(pub u64);

impl Sizes {
    pub fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 33) as usize % max + 1
    }
}
