//! Bad inputs to EnCodec give clear errors, never panics: audio, options, codes, weights and
//! configs.

mod encodec_support;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use encodec_support::*;
use tessera_codec::codec::{
    AudioCodec, DecodeOptions, EncodeOptions, decode_codes, encode_to_codes,
};
use tessera_codec::encodec::{Encodec, EncodecFrames, EncodecStreamingEncoder};
use tessera_core::{Codes, CodesMeta};

fn err_text<T>(r: tessera_core::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(e: &str, needles: &[&str]) {
    for n in needles {
        assert!(e.contains(n), "error '{e}' does not mention '{n}'");
    }
}

fn zeros(shape: &[usize], dtype: DType) -> Tensor {
    Tensor::zeros(shape, dtype, &Device::Cpu).unwrap()
}

#[test]
fn bad_audio_is_refused() {
    let model = load_model("tiny_24k");
    let opts = EncodeOptions::default();
    let mono = zeros(&[1, 100], DType::F32);
    assert_mentions(
        &err_text(encode_to_codes(&model, &mono, 44100, &opts)),
        &["44100", "resample"],
    );
    let stereo = zeros(&[1, 2, 100], DType::F32);
    assert_mentions(&err_text(model.encode(&stereo, 1)), &["channel"]);
    assert_mentions(
        &err_text(load_model("tiny_48k").encode(&zeros(&[1, 1, 100], DType::F32), 1)),
        &["2 channel"],
    );
    assert_mentions(
        &err_text(model.encode(&zeros(&[1, 1, 0], DType::F32), 1)),
        &["empty"],
    );
    assert_mentions(
        &err_text(model.encode(&zeros(&[100], DType::F32), 1)),
        &["shape"],
    );
    assert_mentions(
        &err_text(model.encode(&zeros(&[1, 1, 100], DType::U32), 1)),
        &["float"],
    );
    for bad in [f32::NAN, f32::NEG_INFINITY] {
        let mut v = vec![0.1f32; 300];
        v[123] = bad;
        let x = Tensor::from_vec(v, (1, 1, 300), &Device::Cpu).unwrap();
        assert_mentions(&err_text(model.encode(&x, 1)), &["NaN or infinite"]);
        let mut enc = EncodecStreamingEncoder::new(&model, 1).unwrap();
        assert_mentions(&err_text(enc.step(&x)), &["NaN or infinite"]);
    }
    let mut enc = EncodecStreamingEncoder::new(&model, 1).unwrap();
    assert_mentions(&err_text(enc.step(&stereo)), &["channel"]);
}

#[test]
fn bad_depths_and_bandwidths_are_refused() {
    let model = load_model("tiny_24k");
    let x = zeros(&[1, 1, 100], DType::F32);
    for n_q in [0, 5] {
        assert_mentions(&err_text(model.encode(&x, n_q)), &["n_q", "1..=4"]);
        let opts = EncodeOptions { n_q: Some(n_q) };
        assert_mentions(&err_text(AudioCodec::encode(&model, &x, &opts)), &["n_q"]);
        assert!(EncodecStreamingEncoder::new(&model, n_q).is_err());
    }
    assert_mentions(
        &err_text(model.n_q_for_bandwidth(6.0)),
        &["6 kbps", "[1.2, 2.4, 4.8]"],
    );
    assert_eq!(model.n_q_for_bandwidth(4.8).unwrap(), 4);
}

#[test]
fn bad_codes_are_refused() {
    let model = load_model("tiny_24k");
    let opts = DecodeOptions::default();
    let dec = |codes: Tensor| err_text(AudioCodec::decode(&model, &[codes], &opts));
    let mut v = vec![3u32; 2 * 10];
    v[7] = 64;
    let out_of_range = Tensor::from_vec(v, (1, 2, 10), &Device::Cpu).unwrap();
    assert_mentions(&dec(out_of_range.clone()), &["64", "codebook size 64"]);
    assert_mentions(
        &err_text(model.decode(&EncodecFrames {
            codes: vec![out_of_range],
            scales: None,
        })),
        &["64"],
    );
    assert_mentions(&dec(zeros(&[1, 5, 10], DType::U32)), &["5 codebooks"]);
    assert_mentions(&dec(zeros(&[1, 2, 10], DType::F32)), &["u32"]);
    assert_mentions(&dec(zeros(&[2, 10], DType::U32)), &["shape"]);
    assert_mentions(&dec(zeros(&[1, 2, 0], DType::U32)), &["no codes"]);
    assert_mentions(
        &err_text(AudioCodec::decode(&model, &[], &opts)),
        &["1 code levels, got 0"],
    );
    assert_mentions(
        &err_text(model.decode(&EncodecFrames {
            codes: vec![],
            scales: None,
        })),
        &["no codes"],
    );
}

#[test]
fn codes_of_another_tokenizer_are_refused() {
    let model = load_model("tiny_24k");
    let level = zeros(&[2, 10], DType::U32);
    let meta = |tokenizer: &str, sr: u32, cb: u32| CodesMeta {
        tokenizer: tokenizer.into(),
        tokenizer_version: String::new(),
        sample_rate: Some(sr),
        n_samples: None,
        image_size: None,
        frame_rates: vec![200.0],
        codebook_sizes: vec![cb],
        extra: Default::default(),
    };
    let opts = DecodeOptions::default();
    let other = Codes::new(vec![level.clone()], meta("snac_24khz", 2400, 64)).unwrap();
    assert_mentions(
        &err_text(decode_codes(&model, &other, &opts)),
        &["snac_24khz"],
    );
    let rate = Codes::new(vec![level.clone()], meta("tiny_24k", 24000, 64)).unwrap();
    assert_mentions(&err_text(decode_codes(&model, &rate, &opts)), &["24000 Hz"]);
    let books = Codes::new(vec![level.clone()], meta("tiny_24k", 2400, 1024)).unwrap();
    assert_mentions(&err_text(decode_codes(&model, &books, &opts)), &["1024"]);
    let ok = Codes::new(vec![level], meta("tiny_24k", 2400, 64)).unwrap();
    assert_eq!(decode_codes(&model, &ok, &opts).unwrap().dims(), [1, 120]);
}

#[test]
fn normalising_models_need_their_scales() {
    let model = load_model("tiny_48k");
    let x = zeros(&[1, 2, 100], DType::F32);
    assert_mentions(
        &err_text(AudioCodec::encode(&model, &x, &EncodeOptions::default())),
        &["scales"],
    );
    let io = Io::load("tiny_48k");
    let mut frames = io.frames(1, 0);
    frames.scales = None;
    assert_mentions(&err_text(model.decode(&frames)), &["scales"]);
    let mut frames = io.frames(0, 0);
    frames.scales.as_mut().unwrap().pop();
    assert_mentions(&err_text(model.decode(&frames)), &["scales"]);
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
    err_text(Encodec::load(dir, &Device::Cpu))
}

#[test]
fn edited_copy_loads_and_matches() {
    let dir = edited_checkpoint("tiny_24k", |_| {}, None);
    let model = Encodec::load(dir.path(), &Device::Cpu).unwrap();
    let io = Io::load("tiny_24k");
    let codes = model.encode(&io.audio(1), 4).unwrap();
    assert!(code_diffs(&codes.codes[0], &io.frames(1, 2).codes[0]).is_empty());
}

#[test]
fn mismatched_weights_name_the_key_and_file() {
    let key = "decoder.layers.0.conv.bias";
    let dir = edited_checkpoint(
        "tiny_24k",
        |t| {
            t.remove(key);
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &[key, "model.safetensors", "missing"],
    );

    let key = "quantizer.layers.2.codebook.embed";
    let dir = edited_checkpoint(
        "tiny_24k",
        |t| {
            t.insert(key.into(), zeros(&[64, 9], DType::F32));
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &[key, "model.safetensors", "[64, 9]"],
    );

    let key = "encoder.layers.10.lstm.weight_hh_l1";
    let dir = edited_checkpoint(
        "tiny_24k",
        |t| {
            t.insert(key.into(), zeros(&[32, 15], DType::F32));
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &[key, "model.safetensors", "[32, 15]"],
    );

    // A weight-normed conv whose magnitude does not fit its direction.
    let key = "encoder.layers.0.conv.weight_g";
    let dir = edited_checkpoint(
        "tiny_24k",
        |t| {
            t.insert(key.into(), zeros(&[3, 1, 1], DType::F32));
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &["encoder.layers.0.conv.weight", "model.safetensors"],
    );

    let dir = edited_checkpoint(
        "tiny_24k",
        |t| {
            t.insert("encoder.extra.weight".into(), zeros(&[3], DType::F32));
        },
        None,
    );
    assert_mentions(&load_err(dir.path()), &["encoder.extra.weight", "disagree"]);

    // Codebook training buffers are not needed.
    let dir = edited_checkpoint(
        "tiny_24k",
        |t| t.retain(|k, _| !k.ends_with(".embed_avg") && !k.ends_with(".cluster_size")),
        None,
    );
    Encodec::load(dir.path(), &Device::Cpu).unwrap();
}

#[test]
fn config_and_checkpoint_must_agree() {
    let text = std::fs::read_to_string(fixture_dir("tiny_24k").join("config.json")).unwrap();
    // One more codebook than the checkpoint has.
    let more = text.replace("4.8\n", "6.0\n");
    assert_ne!(text, more);
    let dir = edited_checkpoint("tiny_24k", |_| {}, Some(&more));
    assert_mentions(&load_err(dir.path()), &["quantizer.layers.4", "missing"]);
    // A wider encoder than the weights.
    let wide = text.replace("\"num_filters\": 2", "\"num_filters\": 4");
    assert_ne!(text, wide);
    let dir = edited_checkpoint("tiny_24k", |_| {}, Some(&wide));
    assert_mentions(
        &load_err(dir.path()),
        &["encoder.layers.0.conv.weight", "shape"],
    );
    // No LSTM in the config's count of layers: the weights sit at other indices.
    let fewer = text.replace("\"num_lstm_layers\": 2", "\"num_lstm_layers\": 1");
    assert_ne!(text, fewer);
    let dir = edited_checkpoint("tiny_24k", |_| {}, Some(&fewer));
    assert_mentions(&load_err(dir.path()), &["lstm", "disagree"]);
}

#[test]
fn absurd_configs_are_refused_before_loading() {
    for (config, needles) in [
        (
            r#"{"upsampling_ratios": [0, 4]}"#,
            &["config.json", "upsampling_ratios[0]"][..],
        ),
        (
            r#"{"num_filters": 100000000000}"#,
            &["config.json", "num_filters"],
        ),
        (
            r#"{"codebook_size": -3}"#,
            &["config.json", "codebook_size"],
        ),
        (r#"{"codebook_size": 1000}"#, &["config.json", "power of 2"]),
        (
            r#"{"target_bandwidths": [1e300]}"#,
            &["config.json", "target_bandwidths[0]"],
        ),
        (
            r#"{"target_bandwidths": []}"#,
            &["config.json", "target_bandwidths"],
        ),
        (
            r#"{"audio_channels": 0}"#,
            &["config.json", "audio_channels"],
        ),
        (r#"{"pad_mode": "circular"}"#, &["config.json", "circular"]),
        (
            r#"{"chunk_length_s": 1e9}"#,
            &["config.json", "chunk_length_s"],
        ),
        (r#"{"model_type": "mimi"}"#, &["config.json", "model_type"]),
        ("not json", &["config.json", "JSON"]),
    ] {
        let dir = edited_checkpoint("tiny_24k", |_| {}, Some(config));
        assert_mentions(&load_err(dir.path()), needles);
    }
    assert_mentions(
        &err_text(Encodec::load("/nonexistent/encodec", &Device::Cpu)),
        &["/nonexistent/encodec"],
    );
}
