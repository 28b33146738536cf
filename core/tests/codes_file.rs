//! The codes file: round trips, and every way a file can be wrong.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor};
use tessera_core::{Codes, CodesMeta, Error};

fn snac_like() -> Codes {
    // Three levels at 12, 24, 47 Hz-ish over 1.5 s of 24 kHz audio, as SNAC 24 kHz produces.
    let dev = Device::Cpu;
    let lvl = |t: usize, k: u32| {
        let v: Vec<u32> = (0..t as u32).map(|i| (i * 7 + k) % 4096).collect();
        Tensor::from_vec(v, (1, t), &dev).unwrap()
    };
    let meta = CodesMeta {
        tokenizer: "snac_24khz".into(),
        tokenizer_version: "1".into(),
        sample_rate: Some(24_000),
        n_samples: Some(36_000),
        image_size: None,
        frame_rates: vec![11.71875, 23.4375, 46.875],
        codebook_sizes: vec![4096, 4096, 4096],
        extra: BTreeMap::from([("source".to_string(), "clip.wav".to_string())]),
    };
    Codes::new(vec![lvl(18, 1), lvl(36, 2), lvl(72, 3)], meta).unwrap()
}

fn values(t: &Tensor) -> Vec<Vec<u32>> {
    t.to_vec2::<u32>().unwrap()
}

#[test]
fn round_trip_keeps_levels_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    let codes = snac_like();
    codes.save(&path).unwrap();
    let back = Codes::load(&path).unwrap();
    assert_eq!(back.meta(), codes.meta());
    assert_eq!(back.shapes(), vec![[1, 18], [1, 36], [1, 72]]);
    for (a, b) in codes.levels().iter().zip(back.levels()) {
        assert_eq!(values(a), values(b));
    }
    assert_eq!(back.meta().extra.get("source").unwrap(), "clip.wav");
    assert!((back.duration_s().unwrap() - 1.5).abs() < 1e-12);
    // No temporary file is left beside the output.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn multi_codebook_level_round_trips() {
    let codes_v: Vec<u32> = (0..8 * 25).map(|i| (i * 13) % 2048).collect();
    let t = Tensor::from_vec(codes_v.clone(), (8, 25), &Device::Cpu).unwrap();
    let meta = CodesMeta {
        tokenizer: "mimi".into(),
        tokenizer_version: String::new(),
        sample_rate: Some(24_000),
        n_samples: Some(48_000),
        image_size: None,
        frame_rates: vec![12.5],
        codebook_sizes: vec![2048],
        extra: BTreeMap::new(),
    };
    let codes = Codes::new(vec![t], meta).unwrap();
    let back = Codes::from_bytes(&codes.to_bytes().unwrap()).unwrap();
    let flat: Vec<u32> = back.levels()[0].flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(flat, codes_v);
}

fn raw_file(tensors: Vec<(&str, Tensor)>, md: HashMap<String, String>) -> Vec<u8> {
    safetensors::tensor::serialize(tensors, Some(md)).unwrap()
}

fn good_metadata() -> HashMap<String, String> {
    HashMap::from([
        ("format".into(), "tessera.codes".into()),
        ("format_version".into(), "1".into()),
        ("tokenizer".into(), "mimi".into()),
        ("tokenizer_version".into(), "".into()),
        ("sample_rate".into(), "24000".into()),
        ("n_samples".into(), "24000".into()),
        ("n_levels".into(), "1".into()),
        ("frame_rates".into(), "[12.5]".into()),
        ("codebook_sizes".into(), "[2048]".into()),
        ("shapes".into(), "[[2,13]]".into()),
    ])
}

fn level(n_q: usize, t: usize, fill: u32) -> Tensor {
    Tensor::from_vec(vec![fill; n_q * t], (n_q, t), &Device::Cpu).unwrap()
}

fn load_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, bytes).unwrap();
    match Codes::load(&path) {
        Ok(_) => panic!("a bad codes file was accepted"),
        Err(e) => {
            assert!(matches!(e, Error::File { .. }), "error without a path: {e}");
            let msg = e.to_string();
            assert!(msg.contains("bad.safetensors"), "{msg}");
            assert!(!msg.contains('\n'), "error is not one line: {msg}");
            msg
        }
    }
}

#[test]
fn the_good_raw_file_loads() {
    let bytes = raw_file(vec![("codes.0", level(2, 13, 5))], good_metadata());
    let c = Codes::from_bytes(&bytes).unwrap();
    assert_eq!(c.shapes(), vec![[2, 13]]);
}

#[test]
fn empty_file_is_refused() {
    assert!(load_err(&[]).contains("empty"));
}

#[test]
fn missing_file_is_refused() {
    let e = Codes::load("/nonexistent/dir/x.safetensors").unwrap_err();
    assert!(e.to_string().contains("no such file"), "{e}");
}

#[test]
fn truncated_and_corrupt_files_are_refused() {
    let bytes = raw_file(vec![("codes.0", level(2, 13, 5))], good_metadata());
    assert!(load_err(&bytes[..bytes.len() - 7]).contains("not a codes file"));
    assert!(load_err(&bytes[..5]).contains("not a codes file"));
    let mut garbage = bytes.clone();
    garbage[0] = 0xff;
    garbage[3] = 0x7f;
    assert!(load_err(&garbage).contains("not a codes file"));
    assert!(load_err(b"hello, this is text").contains("not a codes file"));
}

#[test]
fn a_weights_file_is_not_a_codes_file() {
    let w = Tensor::zeros((4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let bytes = safetensors::tensor::serialize(vec![("conv.weight", w)], None).unwrap();
    assert!(load_err(&bytes).contains("no metadata"));
    let mut md = good_metadata();
    md.remove("format");
    let bytes = raw_file(vec![("codes.0", level(2, 13, 5))], md);
    assert!(load_err(&bytes).contains("format"));
}

#[test]
fn shape_disagreeing_with_metadata_is_refused() {
    let bytes = raw_file(vec![("codes.0", level(3, 13, 5))], good_metadata());
    assert!(load_err(&bytes).contains("shape"));
}

#[test]
fn codes_out_of_range_are_refused() {
    let bytes = raw_file(vec![("codes.0", level(2, 13, 2048))], good_metadata());
    let msg = load_err(&bytes);
    assert!(
        msg.contains("out of range") && msg.contains("2048"),
        "{msg}"
    );
}

#[test]
fn level_count_disagreement_is_refused() {
    let mut md = good_metadata();
    md.insert("n_levels".into(), "2".into());
    let bytes = raw_file(vec![("codes.0", level(2, 13, 5))], md);
    assert!(load_err(&bytes).contains("levels"));
    let mut md = good_metadata();
    md.insert("frame_rates".into(), "[12.5, 25]".into());
    let bytes = raw_file(vec![("codes.0", level(2, 13, 5))], md);
    assert!(load_err(&bytes).contains("frame rates"));
}

#[test]
fn wrong_dtype_is_refused() {
    let t = Tensor::zeros((2, 13), candle_core::DType::F32, &Device::Cpu).unwrap();
    let bytes = raw_file(vec![("codes.0", t)], good_metadata());
    assert!(load_err(&bytes).contains("dtype"));
}

#[test]
fn duration_disagreeing_with_frames_is_refused() {
    // 13 frames at 12.5 Hz cover 1.04 s; claim the audio is 10 s long.
    let mut md = good_metadata();
    md.insert("n_samples".into(), "240000".into());
    let bytes = raw_file(vec![("codes.0", level(2, 13, 5))], md);
    assert!(load_err(&bytes).contains("long"));
}

#[test]
fn bad_metadata_values_are_refused() {
    for (key, value, needle) in [
        ("sample_rate", "0", "sample rate"),
        ("sample_rate", "fast", "sample_rate"),
        ("frame_rates", "[-1]", "frame rate"),
        ("codebook_sizes", "[0]", "codebook size"),
        ("format_version", "99", "newer"),
        ("shapes", "{", "shapes"),
    ] {
        let mut md = good_metadata();
        md.insert(key.into(), value.into());
        let bytes = raw_file(vec![("codes.0", level(2, 13, 5))], md);
        let msg = load_err(&bytes);
        assert!(msg.contains(needle), "{key}={value}: {msg}");
    }
}

#[test]
fn constructing_inconsistent_codes_fails() {
    let meta = CodesMeta {
        tokenizer: "x".into(),
        tokenizer_version: String::new(),
        sample_rate: None,
        n_samples: None,
        image_size: Some((256, 256)),
        frame_rates: vec![16.0],
        codebook_sizes: vec![16384],
        extra: BTreeMap::new(),
    };
    let f = Tensor::zeros((1, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(Codes::new(vec![f], meta.clone()).is_err());
    assert!(Codes::new(vec![], meta.clone()).is_err());
    let ok = Codes::new(vec![level(1, 256, 3)], meta).unwrap();
    assert_eq!(ok.meta().image_size, Some((256, 256)));
    let back = Codes::from_bytes(&ok.to_bytes().unwrap()).unwrap();
    assert_eq!(back.meta().image_size, Some((256, 256)));
}
