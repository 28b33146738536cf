//! Bad inputs to SNAC give clear errors, never panics: audio, codes, weights and configs.

mod snac_support;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use snac_support::*;
use tessera_codec::codec::{
    AudioCodec, DecodeOptions, EncodeOptions, Noise, decode_codes, encode_batch, encode_to_codes,
};
use tessera_codec::snac::Snac;
use tessera_core::{Codes, CodesMeta};

fn err_text<T: std::fmt::Debug>(r: tessera_core::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn assert_mentions(e: &str, needles: &[&str]) {
    for n in needles {
        assert!(e.contains(n), "error '{e}' does not mention '{n}'");
    }
}

#[test]
fn bad_audio_is_refused() {
    let model = load_model("tiny_24k");
    let sr = model.sample_rate();
    let opts = EncodeOptions::default();
    let mono = Tensor::zeros((1, 100), DType::F32, &Device::Cpu).unwrap();
    assert_mentions(
        &err_text(encode_to_codes(&model, &mono, 44100, &opts)),
        &["44100", "resample"],
    );
    let stereo = Tensor::zeros((2, 100), DType::F32, &Device::Cpu).unwrap();
    assert_mentions(
        &err_text(encode_to_codes(&model, &stereo, sr, &opts)),
        &["channel"],
    );
    assert_mentions(
        &err_text(model.encode(&stereo.unsqueeze(0).unwrap())),
        &["channel"],
    );
    let empty = Tensor::zeros((1, 1, 0), DType::F32, &Device::Cpu).unwrap();
    assert_mentions(&err_text(model.encode(&empty)), &["empty"]);
    let flat = Tensor::zeros(100, DType::F32, &Device::Cpu).unwrap();
    assert_mentions(&err_text(model.encode(&flat)), &["shape"]);
    let ints = Tensor::zeros((1, 1, 100), DType::U32, &Device::Cpu).unwrap();
    assert_mentions(&err_text(model.encode(&ints)), &["float"]);
    for bad in [f32::NAN, f32::INFINITY] {
        let mut v = vec![0.1f32; 300];
        v[123] = bad;
        let x = Tensor::from_vec(v, (1, 1, 300), &Device::Cpu).unwrap();
        assert_mentions(&err_text(model.encode(&x)), &["NaN or infinite"]);
    }
    let n_q = EncodeOptions { n_q: Some(2) };
    assert_mentions(
        &err_text(encode_to_codes(&model, &mono, sr, &n_q)),
        &["n_q"],
    );
    let empty_clip = Tensor::zeros((1, 0), DType::F32, &Device::Cpu).unwrap();
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
    let model = load_model("tiny_attn");
    let io = Io::load("tiny_attn");
    let codes = io.codes(0);
    // Wrong level count.
    assert_mentions(
        &err_text(model.decode(&codes[..2], Noise::Off)),
        &["3 code levels, got 2"],
    );
    // Out of range.
    let mut big = codes.clone();
    big[1] = (big[1].clone() + 1000.0).unwrap();
    assert_mentions(
        &err_text(model.decode(&big, Noise::Off)),
        &["level 1", "out of range"],
    );
    // Levels that cover different durations.
    let mut short = codes.clone();
    short[2] = short[2].narrow(1, 0, short[2].dims()[1] - 2).unwrap();
    assert_mentions(
        &err_text(model.decode(&short, Noise::Off)),
        &["level 2", "frames"],
    );
    // A duration the attention window cannot split (window 6, strides [4, 2, 1]: 4 latent frames).
    let four: Vec<Tensor> = [1usize, 2, 4]
        .iter()
        .map(|&n| Tensor::zeros((1, n), DType::U32, &Device::Cpu).unwrap())
        .collect();
    assert_mentions(
        &err_text(model.decode(&four, Noise::Off)),
        &["multiple of 6"],
    );
    // Wrong dtype and rank.
    let mut float = codes.clone();
    float[0] = float[0].to_dtype(DType::F32).unwrap();
    assert_mentions(&err_text(model.decode(&float, Noise::Off)), &["dtype"]);
    let mut rank3 = codes.clone();
    rank3[0] = rank3[0].unsqueeze(0).unwrap();
    assert_mentions(&err_text(model.decode(&rank3, Noise::Off)), &["shape"]);
    // Through the trait: [B, n_q, T] levels with n_q above the level's depth.
    let deep: Vec<Tensor> = codes
        .iter()
        .map(|c| Tensor::cat(&[c, c], 0).unwrap().unsqueeze(0).unwrap())
        .collect();
    let e = err_text(AudioCodec::decode(&model, &deep, &DecodeOptions::default()));
    assert_mentions(&e, &["2 codebooks"]);
}

#[test]
fn codes_of_another_tokenizer_are_refused() {
    let model = load_model("tiny_attn");
    let io = Io::load("tiny_attn");
    let levels: Vec<Tensor> = io
        .codes(0)
        .iter()
        .map(|c| c.squeeze(0).unwrap().unsqueeze(0).unwrap())
        .collect();
    let meta = |tokenizer: &str, sr: u32, size: u32| CodesMeta {
        tokenizer: tokenizer.into(),
        tokenizer_version: String::new(),
        sample_rate: Some(sr),
        n_samples: Some(1728),
        image_size: None,
        frame_rates: (0..3).map(|k| model.levels()[k].frame_rate).collect(),
        codebook_sizes: vec![size; 3],
        extra: Default::default(),
    };
    let opts = DecodeOptions { noise: Noise::Off };
    let other = Codes::new(levels.clone(), meta("mimi", 12000, 128)).unwrap();
    assert_mentions(
        &err_text(decode_codes(&model, &other, &opts)),
        &["'mimi'", "'tiny_attn'"],
    );
    let rate = Codes::new(levels.clone(), meta("tiny_attn", 24000, 128)).unwrap();
    assert_mentions(&err_text(decode_codes(&model, &rate, &opts)), &["24000 Hz"]);
    let sizes = Codes::new(levels.clone(), meta("tiny_attn", 12000, 4096)).unwrap();
    assert_mentions(
        &err_text(decode_codes(&model, &sizes, &opts)),
        &["codebook sizes"],
    );
    let ok = Codes::new(levels, meta("tiny_attn", 12000, 128)).unwrap();
    assert_eq!(decode_codes(&model, &ok, &opts).unwrap().dims(), [1, 1728]);
}

/// A copy of a fixture checkpoint as model.safetensors, with `edit` applied to its tensors and
/// `config` (when given) as its config.json.
fn edited_checkpoint(
    name: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
    config: Option<&str>,
) -> tempfile::TempDir {
    let src = fixture_dir(name);
    let dir = tempfile::tempdir().unwrap();
    let mut tensors: HashMap<String, Tensor> =
        candle_core::pickle::read_all(src.join("pytorch_model.bin"))
            .unwrap()
            .into_iter()
            .collect();
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
    err_text(Snac::load(dir, &Device::Cpu))
}

#[test]
fn edited_copy_loads_and_matches() {
    // The harness itself: an unedited copy must load and reproduce the fixture.
    let dir = edited_checkpoint("tiny_attn", |_| {}, None);
    let model = Snac::load(dir.path(), &Device::Cpu).unwrap();
    let io = Io::load("tiny_attn");
    let codes = model.encode(&io.audio(0)).unwrap();
    assert_eq!(as_u32(&codes[2]), as_u32(&io.codes(0)[2]));
}

#[test]
fn mismatched_weights_name_the_key_and_file() {
    let key = "decoder.model.0.bias";
    let dir = edited_checkpoint(
        "tiny_attn",
        |t| {
            t.remove(key);
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &[key, "model.safetensors", "missing"],
    );

    let key = "quantizer.quantizers.1.codebook.weight";
    let dir = edited_checkpoint(
        "tiny_attn",
        |t| {
            t.insert(
                key.into(),
                Tensor::zeros((128, 9), DType::F32, &Device::Cpu).unwrap(),
            );
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &[key, "model.safetensors", "[128, 9]"],
    );

    // A weight-normed conv whose magnitude does not fit its direction.
    let key = "encoder.block.0.parametrizations.weight.original0";
    let dir = edited_checkpoint(
        "tiny_attn",
        |t| {
            t.insert(
                key.into(),
                Tensor::ones((3, 1, 1), DType::F32, &Device::Cpu).unwrap(),
            );
        },
        None,
    );
    assert_mentions(
        &load_err(dir.path()),
        &["encoder.block.0.weight", "model.safetensors"],
    );

    let dir = edited_checkpoint(
        "tiny_attn",
        |t| {
            t.insert(
                "encoder.extra.weight".into(),
                Tensor::ones(3, DType::F32, &Device::Cpu).unwrap(),
            );
        },
        None,
    );
    assert_mentions(&load_err(dir.path()), &["encoder.extra.weight", "disagree"]);
}

#[test]
fn config_and_checkpoint_must_agree() {
    // noise = false but the checkpoint has NoiseBlock weights (so the residual units that follow
    // sit one index further than the config implies).
    let text = std::fs::read_to_string(fixture_dir("tiny_24k").join("config.json")).unwrap();
    let no_noise = text.replace("\"noise\": true", "\"noise\": false");
    assert_ne!(text, no_noise);
    let dir = edited_checkpoint("tiny_24k", |_| {}, Some(&no_noise));
    assert_mentions(
        &load_err(dir.path()),
        &["decoder.model.2.block.2", "model.safetensors"],
    );
    // A wider decoder than the weights.
    let wide = text.replace("\"decoder_dim\": 32", "\"decoder_dim\": 64");
    assert_ne!(text, wide);
    let dir = edited_checkpoint("tiny_24k", |_| {}, Some(&wide));
    assert_mentions(&load_err(dir.path()), &["decoder.model", "shape"]);
}

#[test]
fn absurd_configs_are_refused_before_loading() {
    for (config, needles) in [
        (
            r#"{"encoder_rates": [0, 4]}"#,
            &["config.json", "encoder_rates[0]"][..],
        ),
        (
            r#"{"encoder_dim": 100000000000}"#,
            &["config.json", "encoder_dim"],
        ),
        (
            r#"{"codebook_size": -3}"#,
            &["config.json", "codebook_size"],
        ),
        (r#"{"vq_strides": []}"#, &["config.json", "vq_strides"]),
        (
            r#"{"attn_window_size": 100000}"#,
            &["config.json", "attn_window_size"],
        ),
        (
            r#"{"sampling_rate": 24000, "frobnicate": 1}"#,
            &["config.json", "frobnicate"],
        ),
        ("not json", &["config.json", "JSON"]),
    ] {
        let dir = edited_checkpoint("tiny_24k", |_| {}, Some(config));
        assert_mentions(&load_err(dir.path()), needles);
    }
    assert_mentions(
        &load_err(Path::new("/nonexistent/snac")),
        &["/nonexistent/snac"],
    );
}
