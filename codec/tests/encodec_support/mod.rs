//! Shared helpers of the EnCodec tests: fixture paths and the reference's tensors.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use tessera_codec::encodec::{Encodec, EncodecFrames};

pub const FIXTURES: &[&str] = &["tiny_24k", "tiny_48k", "tiny_plain"];

pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/encodec")
        .join(name)
}

pub fn load_model(name: &str) -> Encodec {
    Encodec::load(fixture_dir(name), &Device::Cpu).unwrap()
}

/// The reference's inputs and outputs (see scripts/reference/encodec_fixtures.py).
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

    pub fn bandwidths(&self) -> Vec<f64> {
        self.tensors["bandwidths"].to_vec1().unwrap()
    }

    pub fn audio(&self, i: usize) -> Tensor {
        self.tensors[&format!("audio.{i}")].clone()
    }

    /// The reference's codes of clip `i` at bandwidth `j`, as tessera returns them: one
    /// `[B, n_q, frames]` tensor per chunk, the last chunk without its padding.
    pub fn frames(&self, i: usize, j: usize) -> EncodecFrames {
        let codes = self.tensors[&format!("codes.{i}.{j}")]
            .to_dtype(DType::U32)
            .unwrap();
        let pad = self.tensors[&format!("last_pad.{i}.{j}")]
            .to_vec1::<i64>()
            .unwrap()[0] as usize;
        let chunks = codes.dims()[0];
        let codes: Vec<Tensor> = (0..chunks)
            .map(|c| {
                let t = codes.i(c).unwrap();
                if c + 1 == chunks && pad > 0 {
                    let n = t.dims()[2];
                    t.narrow(2, 0, n - pad).unwrap()
                } else {
                    t
                }
            })
            .collect();
        let scales = self.tensors.get(&format!("scales.{i}.{j}")).map(|s| {
            (0..s.dims()[0])
                .map(|c| s.i(c).unwrap())
                .collect::<Vec<_>>()
        });
        EncodecFrames { codes, scales }
    }

    pub fn decoded(&self, i: usize, j: usize) -> Tensor {
        self.tensors[&format!("decoded.{i}.{j}")].clone()
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
