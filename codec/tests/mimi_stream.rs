//! Mimi chunk by chunk: codes identical to whole-signal encoding for random chunk sizes
//! (multiples of the frame size, and any sizes at all), audio equal to whole-signal decoding.

mod mimi_support;

use candle_core::Tensor;
use mimi_support::*;
use tessera_codec::mimi::{MimiStreamingDecoder, MimiStreamingEncoder};

fn stream_encode(
    enc: &mut MimiStreamingEncoder,
    audio: &Tensor,
    mut size: impl FnMut() -> usize,
) -> Tensor {
    let n = audio.dims()[2];
    let mut parts = Vec::new();
    let mut at = 0;
    while at < n {
        let len = size().min(n - at);
        parts.extend(enc.step(&audio.narrow(2, at, len).unwrap()).unwrap());
        at += len;
    }
    parts.extend(enc.finish().unwrap());
    Tensor::cat(&parts, 2).unwrap()
}

#[test]
fn streamed_codes_equal_whole_signal_codes() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        let frame = model.config().frame_size();
        let n_q = model.config().num_quantizers;
        let mut rng = Sizes(0xC0DE);
        let mut enc = MimiStreamingEncoder::new(&model, n_q).unwrap();
        for i in 0..io.n_clips() {
            let audio = io.audio(i);
            let whole = io.codes(i);
            // Multiples of the frame size, as a real-time caller sends them.
            for max_frames in [1, 3, 40] {
                let streamed = stream_encode(&mut enc, &audio, || frame * rng.next(max_frames));
                let diffs = code_diffs(&streamed, &whole);
                assert!(
                    diffs.is_empty(),
                    "{name} clip {i}, up to {max_frames} frames: {diffs:?}"
                );
            }
            // Any sizes.
            for max in [1, 17, 500] {
                let streamed = stream_encode(&mut enc, &audio, || rng.next(max));
                let diffs = code_diffs(&streamed, &whole);
                assert!(
                    diffs.is_empty(),
                    "{name} clip {i}, chunks up to {max}: {diffs:?}"
                );
            }
        }
    }
}

/// Each whole frame of audio comes out as soon as it is complete.
#[test]
fn frame_multiples_give_their_codes_at_once() {
    let model = load_model("tiny");
    let io = Io::load("tiny");
    let audio = io.audio(1);
    let frame = model.config().frame_size();
    let mut enc = MimiStreamingEncoder::new(&model, 2).unwrap();
    let codes = enc
        .step(&audio.narrow(2, 0, 3 * frame).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(codes.dims(), [1, 2, 3]);
    let codes = enc
        .step(&audio.narrow(2, 3 * frame, frame).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(codes.dims(), [1, 2, 1]);
}

#[test]
fn streamed_audio_equals_whole_signal_audio() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        let frame = model.config().frame_size();
        let mut rng = Sizes(99);
        let mut dec = MimiStreamingDecoder::new(&model).unwrap();
        for i in 0..io.n_clips() {
            let codes = io.codes(i);
            let frames = codes.dims()[2];
            for max in [1, 4, 200] {
                let mut parts = Vec::new();
                let mut at = 0;
                while at < frames {
                    let len = rng.next(max).min(frames - at);
                    let out = dec
                        .step(&codes.narrow(2, at, len).unwrap())
                        .unwrap()
                        .unwrap();
                    assert_eq!(
                        out.dims()[2],
                        len * frame,
                        "one frame of codes, one frame of audio"
                    );
                    parts.push(out);
                    at += len;
                }
                assert!(dec.finish().unwrap().is_none());
                let streamed = Tensor::cat(&parts, 2).unwrap();
                let err = max_abs_diff(&streamed, &io.decoded(i));
                assert!(err < 1e-4, "{name} clip {i}, chunks up to {max}: {err}");
            }
        }
    }
}

#[test]
fn reset_forgets_the_past() {
    let model = load_model("tiny");
    let io = Io::load("tiny");
    let mut enc = MimiStreamingEncoder::new(&model, 6).unwrap();
    enc.step(&io.audio(1)).unwrap();
    enc.reset();
    let streamed = stream_encode(&mut enc, &io.audio(0), || 96);
    assert!(code_diffs(&streamed, &io.codes(0)).is_empty());
    let mut dec = MimiStreamingDecoder::new(&model).unwrap();
    dec.step(&io.codes(1)).unwrap();
    dec.reset();
    let out = dec.step(&io.codes(0)).unwrap().unwrap();
    assert!(max_abs_diff(&out, &io.decoded(0)) < 1e-4);
}
