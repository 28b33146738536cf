//! Mimi against transformers' MimiModel on tiny models of the real architecture (and of other
//! knobs: grouped-query attention, biases, grouped upsampling, stereo, batches): codes identical
//! with all and with few codebooks, decoded audio within 1e-4.

mod mimi_support;

use mimi_support::*;
use tessera_codec::codec::{
    AudioCodec, DecodeOptions, EncodeOptions, decode_codes, encode_to_codes,
};

const TOL: f32 = 1e-4;

#[test]
fn codes_match_the_reference() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        assert!(io.n_clips() >= 2, "{name}: fixture has too few clips");
        let all = model.config().num_quantizers;
        for i in 0..io.n_clips() {
            let ours = model.encode(&io.audio(i), all).unwrap();
            let diffs = code_diffs(&ours, &io.codes(i));
            assert!(
                diffs.is_empty(),
                "{name} clip {i}: codes differ at {diffs:?}"
            );
            let ours = model.encode(&io.audio(i), io.few()).unwrap();
            let diffs = code_diffs(&ours, &io.codes_few(i));
            assert!(
                diffs.is_empty(),
                "{name} clip {i}, few: codes differ at {diffs:?}"
            );
        }
    }
}

#[test]
fn decoded_audio_matches_the_reference() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        for i in 0..io.n_clips() {
            let ours = model.decode(&io.codes(i)).unwrap();
            let err = max_abs_diff(&ours, &io.decoded(i));
            eprintln!("{name} clip {i}: max |decoded - reference| = {err:.3e}");
            assert!(err < TOL, "{name} clip {i}: decoded audio differs by {err}");
            if let Some(want) = io.decoded_few(i) {
                let ours = model.decode(&io.codes_few(i)).unwrap();
                let err = max_abs_diff(&ours, &want);
                eprintln!("{name} clip {i}, few codebooks: max |decoded - reference| = {err:.3e}");
                assert!(err < TOL, "{name} clip {i}: decoded audio differs by {err}");
            }
        }
    }
}

/// Through the codec trait: `n_q: None` keeps 8 codebooks (all of these tiny models' when they
/// have fewer); one clip to `Codes` with metadata and back, trimmed.
#[test]
fn codes_round_trip_through_the_trait() {
    let model = load_model("tiny");
    let io = Io::load("tiny");
    for i in 0..io.n_clips() {
        let audio = io.audio(i).squeeze(0).unwrap();
        let n = audio.dims()[1];
        let codes = encode_to_codes(
            &model,
            &audio,
            model.sample_rate(),
            &EncodeOptions::default(),
        )
        .unwrap();
        assert_eq!(codes.meta().n_samples, Some(n as u64));
        assert_eq!(codes.meta().frame_rates, [50.0]);
        assert_eq!(as_u32(&codes.levels()[0]), as_u32(&io.codes(i)));
        let back = decode_codes(&model, &codes, &DecodeOptions::default()).unwrap();
        let want = io.decoded(i).squeeze(0).unwrap().narrow(1, 0, n).unwrap();
        assert!(max_abs_diff(&back, &want) < TOL, "clip {i}");
        let few = EncodeOptions {
            n_q: Some(io.few()),
        };
        let codes = AudioCodec::encode(&model, &io.audio(i), &few).unwrap();
        assert_eq!(as_u32(&codes[0]), as_u32(&io.codes_few(i)));
    }
}

#[test]
fn levels_describe_the_model() {
    let model = load_model("tiny");
    let levels = model.levels();
    assert_eq!(levels.len(), 1);
    assert_eq!(levels[0].n_q, 6);
    assert_eq!(levels[0].codebook_size, 64);
    assert_eq!(levels[0].frame_rate, 50.0);
    assert_eq!(model.config().frame_size(), 48);
    assert!(model.capabilities().streaming);
    let model = load_model("tiny_gqa");
    assert_eq!(model.channels(), 2);
    assert_eq!(model.levels()[0].frame_rate, 100.0);
}

/// A checkpoint directory loads through the registry, which detects the family.
#[test]
fn registry_loads_the_directory() {
    let codec =
        tessera_codec::registry::load_dir(&fixture_dir("tiny"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(codec.id(), "tiny");
    let io = Io::load("tiny");
    let codes = codec
        .encode(&io.audio(0), &EncodeOptions { n_q: Some(6) })
        .unwrap();
    assert_eq!(as_u32(&codes[0]), as_u32(&io.codes(0)));
}
