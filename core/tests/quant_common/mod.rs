//! Helpers shared by the quantizer tests.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant")
}

pub fn load(dir: &Path, name: &str) -> HashMap<String, Tensor> {
    let path = dir.join(format!("{name}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn get<'a>(tensors: &'a HashMap<String, Tensor>, key: &str) -> &'a Tensor {
    tensors
        .get(key)
        .unwrap_or_else(|| panic!("fixture has no tensor {key}"))
}

/// The reference's int64 codes as the u32 codes that the quantizers take and return.
pub fn codes_u32(tensors: &HashMap<String, Tensor>, key: &str) -> Tensor {
    get(tensors, key).to_dtype(DType::U32).unwrap()
}

pub fn assert_codes_eq(ours: &Tensor, reference: &Tensor, what: &str) {
    assert_eq!(ours.dims(), reference.dims(), "{what}: shapes differ");
    assert_eq!(ours.dtype(), DType::U32, "{what}: codes must be u32");
    let ours = ours.flatten_all().unwrap().to_vec1::<u32>().unwrap();
    let reference = reference
        .to_dtype(DType::U32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    let mismatches: Vec<usize> = (0..ours.len())
        .filter(|&i| ours[i] != reference[i])
        .collect();
    assert!(
        mismatches.is_empty(),
        "{what}: {} of {} codes differ, first at flat index {}: {} vs reference {}",
        mismatches.len(),
        ours.len(),
        mismatches[0],
        ours[mismatches[0]],
        reference[mismatches[0]]
    );
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    (a - b)
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

/// Asserts that `ours` is within `tol` of `reference` everywhere; returns the largest difference.
pub fn assert_close(ours: &Tensor, reference: &Tensor, tol: f32, what: &str) -> f32 {
    let diff = max_abs_diff(ours, reference);
    assert!(diff <= tol, "{what}: max abs diff {diff} > {tol}");
    diff
}

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform values in [-scale, scale), as an f32 tensor of `shape` and as f64 in row-major order.
pub fn random(rng: &mut StdRng, shape: &[usize], scale: f32) -> (Tensor, Vec<f64>) {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect();
    let as_f64 = values.iter().map(|&v| f64::from(v)).collect();
    (
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap(),
        as_f64,
    )
}

pub fn random_codes(rng: &mut StdRng, shape: &[usize], size: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let codes: Vec<u32> = (0..n).map(|_| rng.random_range(0..size) as u32).collect();
    Tensor::from_vec(codes, shape, &Device::Cpu).unwrap()
}

pub fn to_u32s(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<u32>().unwrap()
}

pub fn to_f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}
