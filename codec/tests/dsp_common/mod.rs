//! Reading the DSP fixtures written by scripts/reference/dsp.py.

#![allow(dead_code)]

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use tessera_codec::dsp::{
    LogScale, MelConfig, MelConvention, MelNorm, MelScale, PadMode, StftConfig, Window,
    WindowPrecision,
};

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dsp")
}

pub fn manifest() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("dsp.json")).expect("read dsp.json");
    serde_json::from_str(&text).expect("parse dsp.json")
}

/// One safetensors fixture file, loaded whole.
pub struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn open(name: &str) -> Self {
        let path = fixture_dir().join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Fixture { bytes }
    }

    fn view(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("valid safetensors")
    }

    /// A tensor's values and shape.
    pub fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let view = self.view();
        let tensor = view
            .tensor(name)
            .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
        assert_eq!(tensor.dtype(), Dtype::F32, "{name}");
        let values = tensor
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (values, tensor.shape().to_vec())
    }

    pub fn i32(&self, name: &str) -> Vec<i32> {
        let view = self.view();
        let tensor = view
            .tensor(name)
            .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
        assert_eq!(tensor.dtype(), Dtype::I32, "{name}");
        tensor
            .data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

pub fn signal(name: &str) -> Vec<f32> {
    Fixture::open("signals.safetensors").f32(name).0
}

pub fn as_usize(v: &Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or_else(|| panic!("{key}: {v}")) as usize
}

pub fn as_f64(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key}: {v}"))
}

pub fn as_bool(v: &Value, key: &str) -> bool {
    v[key].as_bool().unwrap_or_else(|| panic!("{key}: {v}"))
}

pub fn as_str<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key}: {v}"))
}

pub fn window_kind(name: &str) -> Window {
    Window::from_name(name).unwrap_or_else(|| panic!("window {name}"))
}

pub fn stft_config(case: &Value) -> StftConfig {
    StftConfig::new(as_usize(case, "n_fft"), as_usize(case, "hop_length"))
        .with_win_length(as_usize(case, "win_length"))
        .with_window(
            window_kind(case["window"].as_str().unwrap_or("hann")),
            case["periodic"].as_bool().unwrap_or(true),
        )
        .with_center(
            as_bool(case, "center"),
            PadMode::from_name(as_str(case, "pad_mode")).expect("pad mode"),
        )
        .with_window_precision(match case["window_precision"].as_str() {
            None | Some("torch") => WindowPrecision::Torch,
            Some("f64") => WindowPrecision::F64,
            Some(other) => panic!("window precision {other}"),
        })
        .with_normalized(case["normalized"].as_bool().unwrap_or(false))
        .with_onesided(case["onesided"].as_bool().unwrap_or(true))
}

pub fn mel_config(case: &Value) -> MelConfig {
    let scale = match as_str(case, "scale") {
        "htk" => MelScale::Htk,
        "slaney" => MelScale::Slaney,
        other => panic!("scale {other}"),
    };
    let norm = match case["norm"].as_str() {
        None => MelNorm::None,
        Some("slaney") => MelNorm::Slaney,
        Some(other) => panic!("norm {other}"),
    };
    let convention = match case["convention"]
        .as_str()
        .or_else(|| case["source"].as_str())
    {
        Some("torchaudio") => MelConvention::Torchaudio,
        Some("librosa") => MelConvention::Librosa,
        other => panic!("convention {other:?}"),
    };
    MelConfig::new(
        as_usize(case, "sample_rate") as u32,
        as_usize(case, "n_fft"),
        as_usize(case, "n_mels"),
    )
    .with_range(as_f64(case, "f_min"), case["f_max"].as_f64())
    .with_scale(scale, norm)
    .with_convention(convention)
}

pub fn log_scale(log: &Value) -> LogScale {
    match as_str(log, "kind") {
        "none" => LogScale::None,
        "ln" => LogScale::Ln {
            floor: as_f64(log, "floor") as f32,
        },
        "db" => LogScale::Db {
            multiplier: as_f64(log, "multiplier") as f32,
            amin: as_f64(log, "amin") as f32,
            reference: 1.0,
            top_db: log["top_db"].as_f64().map(|v| v as f32),
        },
        "whisper" => LogScale::Whisper,
        other => panic!("log kind {other}"),
    }
}

/// Largest `|a - b|`.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Largest `|a - b| / max(|b|, 1)`: relative for large values, absolute below 1.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}
