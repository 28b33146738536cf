//! Shared helpers of the SNAC tests: fixture paths, the reference's tensors, comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use tessera_codec::snac::Snac;

pub const FIXTURES: &[&str] = &["tiny_24k", "tiny_attn", "tiny_dense"];

pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/snac")
        .join(name)
}

pub fn load_model(name: &str) -> Snac {
    Snac::load(fixture_dir(name), &Device::Cpu).unwrap()
}

/// The reference's inputs and outputs (see scripts/reference/snac_fixtures.py).
pub struct Io {
    tensors: HashMap<String, Tensor>,
}

impl Io {
    pub fn load(name: &str) -> Io {
        let path = fixture_dir(name).join("io.safetensors");
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

    /// Codes of clip `i`, one `[1, T_k]` u32 tensor per level.
    pub fn codes(&self, i: usize) -> Vec<Tensor> {
        (0..)
            .map_while(|k| self.tensors.get(&format!("codes.{i}.{k}")))
            .map(|t| t.to_dtype(DType::U32).unwrap())
            .collect()
    }

    pub fn decoded(&self, i: usize) -> Tensor {
        self.tensors[&format!("decoded.{i}")].clone()
    }

    pub fn decoded_noise(&self, i: usize) -> Option<Tensor> {
        self.tensors.get(&format!("decoded_noise.{i}")).cloned()
    }

    pub fn noise_seed(&self) -> u64 {
        self.tensors["noise_seed"].to_vec1::<i64>().unwrap()[0] as u64
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
