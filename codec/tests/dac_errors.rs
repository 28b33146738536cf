//! Bad inputs to DAC give clear errors, never panics: audio, codes, weights and configs.

mod dac_support;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dac_support::*;
use tessera_codec::codec::{
    AudioCodec, DecodeOptions, EncodeOptions, decode_codes, encode_batch, encode_to_codes,
};
use tessera_codec::dac::Dac;
use tessera_core::{Codes, CodesMeta};

fn err_text<T: std::fmt::Debug>(r: tessera_core::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn assert_mentions(e: &str, needles: &[&str]) {
    eprintln!("ERR {e}");
    for n in needles {
        assert!(e.contains(n), "error '{e}' does not mention '{n}'");
    }
    assert!(!e.contains('\n'), "error '{e}' is not one line");
}

#[test]
fn bad_audio_is_refused() {
    let model = load_model("tiny_odd");
    let sr = model.sample_rate();
    let opts = EncodeOptions::default();
    let dev = Device::Cpu;
    let mono = Tensor::zeros((1, 100), DType::F32, &dev).unwrap();
    assert_mentions(
        &err_text(encode_to_codes(&model, &mono, 44100, &opts)),
        &["44100", "resample"],
    );
    let stereo = Tensor::zeros((2, 100), DType::F32, &dev).unwrap();
    assert_mentions(
        &err_text(encode_to_codes(&model, &stereo, sr, &opts)),
        &["channel"],
    );
    assert_mentions(
        &err_text(model.encode(&stereo.unsqueeze(0).unwrap(), None)),
        &["channel"],
    );
    let empty = Tensor::zeros((1, 1, 0), DType::F32, &dev).unwrap();
    assert_mentions(&err_text(model.encode(&empty, None)), &["empty"]);
    let flat = Tensor::zeros(100, DType::F32, &dev).unwrap();
    assert_mentions(&err_text(model.encode(&flat, None)), &["shape"]);
    let ints = Tensor::zeros((1, 1, 100), DType::U32, &dev).unwrap();
    assert_mentions(&err_text(model.encode(&ints, None)), &["float"]);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut v = vec![0.1f32; 300];
        v[123] = bad;
        let x = Tensor::from_vec(v, (1, 1, 300), &dev).unwrap();
        assert_mentions(&err_text(model.encode(&x, None)), &["NaN or infinite"]);
        let chunked = model.encode_chunked(&x, None, &Default::default());
        assert_mentions(&err_text(chunked), &["NaN or infinite"]);
    }
    for n_q in [0, 5, usize::MAX] {
        let o = EncodeOptions { n_q: Some(n_q) };
        assert_mentions(
            &err_text(encode_to_codes(&model, &mono, sr, &o)),
            &["n_q", "1..=4"],
        );
    }
    let empty_clip = Tensor::zeros((1, 0), DType::F32, &dev).unwrap();
    assert_mentions(
        &err_text(encode_batch(
            &model,
            &[mono.clone(), empty_clip],
            sr,
            &opts,
            4,
        )),
        &["clip 1", "empty"],
    );
    assert!(encode_batch(&model, &[mono], sr, &opts, 0).is_err());
}

#[test]
fn bad_codes_are_refused() {
    let model = load_model("tiny_odd");
    let io = Io::load("tiny_odd");
    let codes = io.codes(0);
    let big = (codes.clone() + 1000.0).unwrap();
    assert_mentions(&err_text(model.decode(&big)), &["out of range", "64"]);
    let deep = Tensor::cat(&[&codes, &codes], 1).unwrap();
    assert_mentions(&err_text(model.decode(&deep)), &["8 codebooks", "1..=4"]);
    let float = codes.to_dtype(DType::F32).unwrap();
    assert_mentions(&err_text(model.decode(&float)), &["dtype"]);
    assert_mentions(
        &err_text(model.decode(&codes.squeeze(0).unwrap())),
        &["shape"],
    );
    let none = codes.narrow(2, 0, 0).unwrap();
    assert_mentions(&err_text(model.decode(&none)), &["no codes"]);
    let levels = [codes.clone(), codes.clone()];
    assert_mentions(
        &err_text(AudioCodec::decode(
            &model,
            &levels,
            &DecodeOptions::default(),
        )),
        &["1 code levels, got 2"],
    );
    assert_mentions(
        &err_text(model.decode_chunked(&big, &Default::default())),
        &["out of range"],
    );
}

#[test]
fn codes_of_another_tokenizer_are_refused() {
    let model = load_model("tiny_even");
    let io = Io::load("tiny_even");
    let level = io.codes(0).squeeze(0).unwrap();
    let meta = |tokenizer: &str, sr: u32, size: u32| CodesMeta {
        tokenizer: tokenizer.into(),
        tokenizer_version: String::new(),
        sample_rate: Some(sr),
        n_samples: Some(160),
        image_size: None,
        frame_rates: vec![model.levels()[0].frame_rate],
        codebook_sizes: vec![size],
        extra: Default::default(),
    };
    let opts = DecodeOptions::default();
    let other = Codes::new(vec![level.clone()], meta("mimi", 11025, 32)).unwrap();
    assert_mentions(
        &err_text(decode_codes(&model, &other, &opts)),
        &["'mimi'", "'tiny_even'"],
    );
    let rate = Codes::new(vec![level.clone()], meta("tiny_even", 24000, 32)).unwrap();
    assert_mentions(&err_text(decode_codes(&model, &rate, &opts)), &["24000 Hz"]);
    let sizes = Codes::new(vec![level.clone()], meta("tiny_even", 11025, 1024)).unwrap();
    assert_mentions(
        &err_text(decode_codes(&model, &sizes, &opts)),
        &["codebook sizes"],
    );
    let ok = Codes::new(vec![level], meta("tiny_even", 11025, 32)).unwrap();
    assert_eq!(decode_codes(&model, &ok, &opts).unwrap().dims(), [1, 160]);
}

/// A copy of a fixture checkpoint with `edit` applied to its tensors and `config` (when given)
/// as its config.json.
fn edited_checkpoint(
    name: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
    config: Option<&str>,
) -> tempfile::TempDir {
    let src = fixture_dir(name);
    let dir = tempfile::tempdir().unwrap();
    let mut tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let cfg = match config {
        Some(c) => c.to_string(),
        None => std::fs::read_to_string(src.join("config.json")).unwrap(),
    };
    std::fs::write(dir.path().join("config.json"), cfg).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    let e = err_text(Dac::load(dir, &Device::Cpu));
    eprintln!("LOADERR {e}");
    assert!(!e.contains('\n'), "error '{e}' is not one line");
    e
}

#[test]
fn edited_copy_loads_and_matches() {
    // The harness itself: an unedited copy must load and reproduce the fixture.
    let dir = edited_checkpoint("tiny_even", |_| {}, None);
    let model = Dac::load(dir.path(), &Device::Cpu).unwrap();
    let io = Io::load("tiny_even");
    let codes = model.encode(&io.audio(1), None).unwrap();
    assert_eq!(as_u32(&codes), as_u32(&io.codes(1)));
}

#[test]
fn mismatched_weights_name_the_key_and_file() {
    // A conv weight of the wrong shape.
    let key = "decoder.conv1.weight";
    let dir = edited_checkpoint(
        "tiny_odd",
        |t| {
            let w = t[key].narrow(2, 0, 5).unwrap();
            t.insert(key.into(), w);
        },
        None,
    );
    assert_mentions(&load_err(dir.path()), &[key, "model.safetensors", "shape"]);

    // A missing snake alpha.
    let key = "encoder.block.1.res_unit2.snake1.alpha";
    let dir = edited_checkpoint(
        "tiny_odd",
        |t| {
            t.remove(key);
        },
        None,
    );
    assert_mentions(&load_err(dir.path()), &[key]);

    // A codebook of the wrong size (the quantizer is checked against the config).
    let key = "quantizer.quantizers.2.codebook.weight";
    let dir = edited_checkpoint(
        "tiny_odd",
        |t| {
            let w = t[key].narrow(0, 0, 32).unwrap();
            t.insert(key.into(), w);
        },
        None,
    );
    assert_mentions(&load_err(dir.path()), &[key, "shape"]);

    // A missing half of a weight norm.
    let key = "encoder.conv1.parametrizations.weight.original0";
    let dir = edited_checkpoint(
        "tiny_even",
        |t| {
            t.remove(key);
        },
        None,
    );
    assert_mentions(&load_err(dir.path()), &["encoder.conv1"]);

    // A weight the model does not have.
    let dir = edited_checkpoint(
        "tiny_odd",
        |t| {
            let extra = t["encoder.conv1.bias"].clone();
            t.insert("encoder.conv3.bias".into(), extra);
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &["encoder.conv3.bias", "model.safetensors", "config.json"],
    );

    // A config that asks for more codebooks than the checkpoint has.
    let cfg = std::fs::read_to_string(fixture_dir("tiny_odd").join("config.json"))
        .unwrap()
        .replace("\"n_codebooks\": 4", "\"n_codebooks\": 6");
    let dir = edited_checkpoint("tiny_odd", |_| {}, Some(&cfg));
    assert_mentions(&load_err(dir.path()), &["quantizer.quantizers.4"]);
}

#[test]
fn bad_configs_name_the_file_and_field() {
    let base = std::fs::read_to_string(fixture_dir("tiny_odd").join("config.json")).unwrap();
    for (from, to, needle) in [
        (
            "\"codebook_size\": 64",
            "\"codebook_size\": 1000",
            "power of 2",
        ),
        (
            "\"codebook_size\": 64",
            "\"codebook_size\": -1",
            "codebook_size",
        ),
        (
            "\"n_codebooks\": 4",
            "\"n_codebooks\": 100000",
            "n_codebooks",
        ),
        (
            "\"sampling_rate\": 8000",
            "\"sampling_rate\": 0",
            "sampling_rate",
        ),
        (
            "\"model_type\": \"dac\"",
            "\"model_type\": \"mimi\"",
            "not a DAC",
        ),
        (
            "\"encoder_hidden_size\": 4",
            "\"encoder_hidden_size\": 1099511627776",
            "encoder_hidden_size",
        ),
        (
            "\"upsampling_ratios\": [\n    5,\n    2\n  ]",
            "\"upsampling_ratios\": [5, 4]",
            "multiply",
        ),
        (
            "\"downsampling_ratios\": [\n    2,\n    5\n  ]",
            "\"downsampling_ratios\": \"2, 5\"",
            "downsampling_ratios",
        ),
    ] {
        assert!(base.contains(from), "fixture config lacks {from}");
        let dir = edited_checkpoint("tiny_odd", |_| {}, Some(&base.replace(from, to)));
        assert_mentions(&load_err(dir.path()), &["config.json", needle]);
    }
    let dir = edited_checkpoint("tiny_odd", |_| {}, Some("{\"n_codebooks\": 4,"));
    assert_mentions(&load_err(dir.path()), &["config.json", "JSON"]);
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    assert_mentions(&load_err(&dir.path().join("nope")), &["nope"]);
    assert_mentions(&load_err(dir.path()), &["config.json"]);
    std::fs::copy(
        fixture_dir("tiny_odd").join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    assert_mentions(&load_err(dir.path()), &["model.safetensors"]);
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    assert_mentions(&load_err(dir.path()), &["model.safetensors"]);
}
