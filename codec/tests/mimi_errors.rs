//! Bad inputs to Mimi give clear errors, never panics: audio, depths, codes, weights and
//! configs.

mod mimi_support;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use mimi_support::*;
use tessera_codec::codec::{AudioCodec, DecodeOptions, EncodeOptions, encode_to_codes};
use tessera_codec::mimi::{Mimi, MimiStreamingDecoder, MimiStreamingEncoder};

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
    let model = load_model("tiny");
    let opts = EncodeOptions::default();
    assert_mentions(
        &err_text(encode_to_codes(
            &model,
            &zeros(&[1, 100], DType::F32),
            24000,
            &opts,
        )),
        &["24000", "resample"],
    );
    let stereo = zeros(&[1, 2, 100], DType::F32);
    assert_mentions(&err_text(model.encode(&stereo, 2)), &["channel"]);
    assert_mentions(
        &err_text(model.encode(&zeros(&[1, 1, 0], DType::F32), 2)),
        &["empty"],
    );
    assert_mentions(
        &err_text(model.encode(&zeros(&[1, 1, 100], DType::I64), 2)),
        &["float"],
    );
    let mut v = vec![0.1f32; 300];
    v[7] = f32::NAN;
    let x = Tensor::from_vec(v, (1, 1, 300), &Device::Cpu).unwrap();
    assert_mentions(&err_text(model.encode(&x, 2)), &["NaN or infinite"]);
    let mut enc = MimiStreamingEncoder::new(&model, 2).unwrap();
    assert_mentions(&err_text(enc.step(&x)), &["NaN or infinite"]);
    assert_mentions(&err_text(enc.step(&stereo)), &["channel"]);
}

#[test]
fn bad_depths_are_refused() {
    let model = load_model("tiny");
    let x = zeros(&[1, 1, 96], DType::F32);
    for n_q in [0, 7] {
        assert_mentions(&err_text(model.encode(&x, n_q)), &["n_q", "1..=6"]);
        let opts = EncodeOptions { n_q: Some(n_q) };
        assert_mentions(&err_text(AudioCodec::encode(&model, &x, &opts)), &["n_q"]);
        assert!(MimiStreamingEncoder::new(&model, n_q).is_err());
    }
    // Two semantic codebooks: fewer than both is not a Mimi code.
    let model = load_model("tiny_gqa");
    let x = zeros(&[1, 2, 60], DType::F32);
    assert_mentions(&err_text(model.encode(&x, 1)), &["2..=4"]);
}

#[test]
fn bad_codes_are_refused() {
    let model = load_model("tiny");
    let opts = DecodeOptions::default();
    let mut v = vec![3u32; 2 * 10];
    v[11] = 64;
    let out_of_range = Tensor::from_vec(v, (1, 2, 10), &Device::Cpu).unwrap();
    assert_mentions(
        &err_text(model.decode(&out_of_range)),
        &["64", "codebook size 64"],
    );
    let mut dec = MimiStreamingDecoder::new(&model).unwrap();
    assert_mentions(&err_text(dec.step(&out_of_range)), &["64"]);
    assert_mentions(
        &err_text(model.decode(&zeros(&[1, 7, 10], DType::U32))),
        &["7 codebooks"],
    );
    assert_mentions(
        &err_text(model.decode(&zeros(&[1, 2, 10], DType::I64))),
        &["u32"],
    );
    assert_mentions(
        &err_text(model.decode(&zeros(&[2, 10], DType::U32))),
        &["shape"],
    );
    assert_mentions(
        &err_text(model.decode(&zeros(&[1, 2, 0], DType::U32))),
        &["no codes"],
    );
    assert_mentions(
        &err_text(AudioCodec::decode(&model, &[], &opts)),
        &["1 code levels, got 0"],
    );
}

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
    err_text(Mimi::load(dir, &Device::Cpu))
}

#[test]
fn edited_copy_loads_and_matches() {
    let dir = edited_checkpoint("tiny", |_| {}, None);
    let model = Mimi::load(dir.path(), &Device::Cpu).unwrap();
    let io = Io::load("tiny");
    let codes = model.encode(&io.audio(1), 6).unwrap();
    assert!(code_diffs(&codes, &io.codes(1)).is_empty());
}

#[test]
fn mismatched_weights_name_the_key_and_file() {
    let key = "encoder_transformer.layers.1.self_attn.k_proj.weight";
    let dir = edited_checkpoint(
        "tiny",
        |t| {
            t.remove(key);
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &[key, "model.safetensors", "missing"],
    );

    let key = "quantizer.acoustic_residual_vector_quantizer.layers.3.codebook.embed_sum";
    let dir = edited_checkpoint(
        "tiny",
        |t| {
            t.insert(key.into(), zeros(&[64, 9], DType::F32));
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &[key, "model.safetensors", "[64, 9]"],
    );

    let key = "upsample.conv.weight";
    let dir = edited_checkpoint(
        "tiny",
        |t| {
            t.insert(key.into(), zeros(&[16, 2, 4], DType::F32));
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &[key, "model.safetensors", "[16, 2, 4]"],
    );

    let key = "quantizer.semantic_residual_vector_quantizer.input_proj.weight";
    let dir = edited_checkpoint(
        "tiny",
        |t| {
            t.remove(key);
        },
        None,
    );
    assert_mentions(&load_err(dir.path()), &[key, "missing"]);

    let dir = edited_checkpoint(
        "tiny",
        |t| {
            t.insert("decoder.extra.weight".into(), zeros(&[3], DType::F32));
        },
        None,
    );
    assert_mentions(&load_err(dir.path()), &["decoder.extra.weight", "disagree"]);

    // The `initialized` flags are not needed.
    let dir = edited_checkpoint(
        "tiny",
        |t| t.retain(|k, _| !k.ends_with(".initialized")),
        None,
    );
    Mimi::load(dir.path(), &Device::Cpu).unwrap();
}

#[test]
fn config_and_checkpoint_must_agree() {
    let text = std::fs::read_to_string(fixture_dir("tiny").join("config.json")).unwrap();
    let deeper = text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    assert_ne!(text, deeper);
    let dir = edited_checkpoint("tiny", |_| {}, Some(&deeper));
    assert_mentions(
        &load_err(dir.path()),
        &["encoder_transformer.layers.2", "missing"],
    );
    let shallower = text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1");
    let dir = edited_checkpoint("tiny", |_| {}, Some(&shallower));
    assert_mentions(&load_err(dir.path()), &["transformer.layers.1", "disagree"]);
    let more = text.replace("\"num_quantizers\": 6", "\"num_quantizers\": 7");
    assert_ne!(text, more);
    let dir = edited_checkpoint("tiny", |_| {}, Some(&more));
    assert_mentions(
        &load_err(dir.path()),
        &["acoustic_residual_vector_quantizer.layers.5"],
    );
    let rate = text.replace("\"frame_rate\": 50", "\"frame_rate\": 25");
    assert_ne!(text, rate);
    let dir = edited_checkpoint("tiny", |_| {}, Some(&rate));
    assert_mentions(&load_err(dir.path()), &["downsample.conv.weight", "shape"]);
}

#[test]
fn absurd_configs_are_refused_before_loading() {
    for (config, needles) in [
        (
            r#"{"upsampling_ratios": [0, 4]}"#,
            &["config.json", "upsampling_ratios[0]"][..],
        ),
        (
            r#"{"hidden_size": 100000000000}"#,
            &["config.json", "hidden_size"],
        ),
        (
            r#"{"num_quantizers": -1}"#,
            &["config.json", "num_quantizers"],
        ),
        (
            r#"{"num_semantic_quantizers": 40}"#,
            &["config.json", "num_semantic_quantizers"],
        ),
        (
            r#"{"sliding_window": 0}"#,
            &["config.json", "sliding_window"],
        ),
        (
            r#"{"sliding_window": null}"#,
            &["config.json", "sliding_window"],
        ),
        (r#"{"frame_rate": 25}"#, &["config.json", "frame_rate = 25"]),
        (r#"{"hidden_act": "mish"}"#, &["config.json", "mish"]),
        (
            r#"{"num_attention_heads": 0}"#,
            &["config.json", "num_attention_heads"],
        ),
        (
            r#"{"model_type": "encodec"}"#,
            &["config.json", "model_type"],
        ),
        ("[]", &["config.json", "object"]),
    ] {
        let dir = edited_checkpoint("tiny", |_| {}, Some(config));
        assert_mentions(&load_err(dir.path()), needles);
    }
    assert_mentions(
        &err_text(Mimi::load("/nonexistent/mimi", &Device::Cpu)),
        &["/nonexistent/mimi"],
    );
}
