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
