//! EnCodec 24 kHz-style models chunk by chunk: codes and audio identical to whole-signal
//! processing for any chunk sizes (including single samples), and models that cannot stream
//! say so.

mod encodec_support;

use candle_core::Tensor;
use encodec_support::*;
use tessera_codec::codec::AudioCodec;
use tessera_codec::encodec::{EncodecStreamingDecoder, EncodecStreamingEncoder};

/// A small deterministic generator for chunk sizes (xorshift64*).
struct Sizes(u64);

impl Sizes {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 33) as usize % max + 1
    }
}

fn cat(parts: Vec<Tensor>) -> Tensor {
    Tensor::cat(&parts, 2).unwrap()
}

fn stream_encode(
    enc: &mut EncodecStreamingEncoder,
    audio: &Tensor,
    sizes: &mut dyn FnMut() -> usize,
) -> Tensor {
    let n = audio.dims()[2];
    let mut parts = Vec::new();
    let mut at = 0;
    while at < n {
        let len = sizes().min(n - at);
        parts.extend(enc.step(&audio.narrow(2, at, len).unwrap()).unwrap());
        at += len;
    }
    parts.extend(enc.finish().unwrap());
    cat(parts)
}

#[test]
fn streamed_codes_equal_whole_signal_codes() {
    let model = load_model("tiny_24k");
    assert!(model.capabilities().streaming);
    let io = Io::load("tiny_24k");
    let n_q = model.levels()[0].n_q;
    let mut rng = Sizes(0x5eed);
    for i in 0..io.n_clips() {
        let audio = io.audio(i);
        let whole = model.encode(&audio, n_q).unwrap().codes.remove(0);
        let mut enc = EncodecStreamingEncoder::new(&model, n_q).unwrap();
        for max_chunk in [1, 7, 12, 100, 5000] {
            let streamed = stream_encode(&mut enc, &audio, &mut || rng.next(max_chunk));
            assert_eq!(
                streamed.dims(),
                whole.dims(),
                "clip {i}, chunks up to {max_chunk}"
            );
            let diffs = code_diffs(&streamed, &whole);
            assert!(
                diffs.is_empty(),
                "clip {i}, chunks up to {max_chunk}: {diffs:?}"
            );
        }
        // And the reference's codes, for good measure.
        let theirs = io.frames(i, io.bandwidths().len() - 1).codes.remove(0);
        assert!(code_diffs(&whole, &theirs).is_empty());
    }
}

#[test]
fn streamed_audio_equals_whole_signal_audio() {
    let model = load_model("tiny_24k");
    let io = Io::load("tiny_24k");
    let mut rng = Sizes(77);
    for i in 0..io.n_clips() {
        let frames = io.frames(i, 2);
        let codes = &frames.codes[0];
        let whole = model.decode(&frames).unwrap();
        let mut dec = EncodecStreamingDecoder::new(&model).unwrap();
        for max_chunk in [1, 3, 50] {
            let n = codes.dims()[2];
            let mut parts = Vec::new();
            let mut at = 0;
            while at < n {
                let len = rng.next(max_chunk).min(n - at);
                parts.extend(dec.step(&codes.narrow(2, at, len).unwrap()).unwrap());
                at += len;
            }
            parts.extend(dec.finish().unwrap());
            let streamed = cat(parts);
            let err = max_abs_diff(&streamed, &whole);
            assert!(err < 1e-5, "clip {i}, chunks up to {max_chunk}: {err}");
            assert!(max_abs_diff(&streamed, &io.decoded(i, 2)) < 1e-4);
        }
    }
}

#[test]
fn reset_forgets_the_past() {
    let model = load_model("tiny_24k");
    let io = Io::load("tiny_24k");
    let a = io.audio(0);
    let mut enc = EncodecStreamingEncoder::new(&model, 2).unwrap();
    enc.step(&io.audio(1)).unwrap();
    enc.reset();
    let streamed = stream_encode(&mut enc, &a, &mut || 64);
    let whole = model.encode(&a, 2).unwrap().codes.remove(0);
    assert!(code_diffs(&streamed, &whole).is_empty());
}

#[test]
fn models_that_cannot_stream_say_so() {
    for name in ["tiny_48k", "tiny_plain"] {
        let model = load_model(name);
        assert!(!model.capabilities().streaming, "{name}");
        let e = EncodecStreamingEncoder::new(&model, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("does not stream"), "{e}");
        assert!(EncodecStreamingDecoder::new(&model).is_err());
    }
}
