//! Chunked DAC encode/decode against whole-signal processing: with margins of the receptive
//! field the results are identical; the measured cost of smaller margins; bounded buffers.

mod dac_support;

use candle_core::{IndexOp, Tensor};
use dac_support::*;
use tessera_codec::dac::{ChunkPolicy, ChunkedDecoder, ChunkedEncoder, Dac};

fn policy(window_frames: usize, margin_frames: Option<usize>) -> ChunkPolicy {
    ChunkPolicy {
        window_frames,
        margin_frames,
    }
}

/// A signal of `frames` frames plus a partial one, so that the end needs padding.
fn long_signal(model: &Dac, frames: usize, seed: u64) -> Tensor {
    let cfg = model.config();
    signal(
        frames * cfg.hop_length() + cfg.hop_length() / 3 + 1,
        cfg.sampling_rate,
        seed,
    )
}

#[test]
fn exact_margins_give_identical_codes_and_audio() {
    for name in FIXTURES {
        let model = load_model(name);
        let audio = long_signal(&model, 150, 7);
        let whole = model.encode(&audio, None).unwrap();
        let decoded = model.decode(&whole).unwrap();
        for window in [1, 5, 32, 149, 150, 151, 400] {
            let p = policy(window, None);
            let codes = model.encode_chunked(&audio, None, &p).unwrap();
            assert_eq!(
                count_code_diffs(&codes, &whole),
                0,
                "{name}: window {window}"
            );
            let audio_back = model.decode_chunked(&whole, &p).unwrap();
            // Same inputs, same arithmetic: equal to the last bit.
            assert_eq!(
                max_abs_diff(&audio_back, &decoded),
                0.0,
                "{name}: window {window}"
            );
        }
        let nq = model
            .encode_chunked(&audio, Some(2), &policy(9, None))
            .unwrap();
        assert_eq!(as_u32(&nq), as_u32(&whole.narrow(1, 0, 2).unwrap()));
    }
}

/// How many codes (and how much audio) differ from whole-signal processing as the margin
/// shrinks below the receptive field. The exact margin must give none; no margin at all must
/// give some, or the test would show nothing.
#[test]
fn measured_cost_of_smaller_margins() {
    for name in FIXTURES {
        let model = load_model(name);
        let enc = model.encoder_context();
        let dec = model.decoder_context();
        let audio = long_signal(&model, 240, 11);
        let whole = model.encode(&audio, None).unwrap();
        let decoded = model.decode(&whole).unwrap();
        let window = 8;
        eprintln!("{name}: encoder context {enc:?}, decoder context {dec:?}, window {window}");
        let max_margin = enc
            .left_frames
            .max(enc.right_frames)
            .max(dec.left_frames)
            .max(dec.right_frames);
        let mut at_zero = (0, 0.0f32);
        for margin in 0..=max_margin {
            let p = policy(window, Some(margin));
            let codes = model.encode_chunked(&audio, None, &p).unwrap();
            let differing = count_code_diffs(&codes, &whole);
            let err = max_abs_diff(&model.decode_chunked(&whole, &p).unwrap(), &decoded);
            eprintln!(
                "  margin {margin}: {differing} of {} codes differ, max |audio diff| {err:.2e}",
                whole.elem_count()
            );
            if margin == 0 {
                at_zero = (differing, err);
            }
            if margin >= enc.left_frames.max(enc.right_frames) {
                assert_eq!(differing, 0, "{name}: margin {margin}");
            }
            if margin >= dec.left_frames.max(dec.right_frames) {
                assert_eq!(err, 0.0, "{name}: margin {margin}");
            }
        }
        assert!(
            at_zero.0 > 0,
            "{name}: windows without margins changed no code"
        );
        assert!(
            at_zero.1 > 1e-3,
            "{name}: windows without margins changed no sample"
        );
    }
}

#[test]
fn pushing_in_odd_pieces_changes_nothing() {
    let model = load_model("tiny_odd");
    let audio = long_signal(&model, 120, 3);
    let whole = model.encode(&audio, None).unwrap().i(0).unwrap();
    let samples: Vec<f32> = audio.flatten_all().unwrap().to_vec1().unwrap();
    let hop = model.config().hop_length();
    let p = policy(6, None);
    let ctx = model.encoder_context();
    let bound = (6 + ctx.left_frames + ctx.right_frames) * hop;
    let mut enc = ChunkedEncoder::new(&model, None, &p).unwrap();
    let mut parts = Vec::new();
    let mut at = 0;
    for (k, size) in [1usize, 7, 333, 0, 2, 50].iter().cycle().enumerate() {
        if at >= samples.len() {
            break;
        }
        let end = (at + size).min(samples.len());
        parts.extend(enc.push(&samples[at..end]).unwrap());
        at = end;
        assert!(
            enc.buffered_samples() <= bound,
            "push {k}: {} samples buffered",
            enc.buffered_samples()
        );
    }
    // Only the last window (and the frames its right margin waits for) is left to `finish`.
    let done = enc.frames_done();
    assert!(
        done + 6 + ctx.right_frames + 1 >= 121 && done > 60,
        "codes must come out before the end ({done} frames)"
    );
    parts.extend(enc.finish().unwrap());
    let codes = Tensor::cat(&parts, 1).unwrap();
    assert_eq!(as_u32(&codes), as_u32(&whole));

    let decoded = model
        .decode(&whole.unsqueeze(0).unwrap())
        .unwrap()
        .i(0)
        .unwrap();
    let dctx = model.decoder_context();
    let mut dec = ChunkedDecoder::new(&model, &p).unwrap();
    let mut audio_parts = Vec::new();
    let frames = whole.dims()[1];
    let mut at = 0;
    for size in [1usize, 4, 13, 2].iter().cycle() {
        if at >= frames {
            break;
        }
        let n = (*size).min(frames - at);
        audio_parts.extend(dec.push(&whole.narrow(1, at, n).unwrap()).unwrap());
        at += n;
        assert!(dec.buffered_frames() <= 6 + dctx.left_frames + dctx.right_frames);
    }
    audio_parts.extend(dec.finish().unwrap());
    let back = Tensor::cat(&audio_parts, 1).unwrap();
    assert_eq!(max_abs_diff(&back, &decoded), 0.0);
}

#[test]
fn chunked_errors_are_clear() {
    let model = load_model("tiny_odd");
    let p = ChunkPolicy::default();
    let e = ChunkedEncoder::new(&model, None, &p)
        .unwrap()
        .finish()
        .unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let mut enc = ChunkedEncoder::new(&model, None, &p).unwrap();
    let e = enc.push(&[0.0, f32::NAN]).unwrap_err().to_string();
    assert!(e.contains("NaN") && e.contains("sample 1"), "{e}");
    assert!(ChunkedEncoder::new(&model, Some(99), &p).is_err());
    assert!(ChunkedEncoder::new(&model, None, &policy(0, None)).is_err());

    let mut dec = ChunkedDecoder::new(&model, &p).unwrap();
    let codes = Tensor::zeros((4, 3), candle_core::DType::U32, &candle_core::Device::Cpu).unwrap();
    assert!(dec.push(&codes).unwrap().is_none());
    assert!(dec.push(&codes.narrow(1, 0, 0).unwrap()).unwrap().is_none());
    let e = dec
        .push(&codes.narrow(0, 0, 2).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 codebooks"), "{e}");
    let e = dec
        .push(&(codes.clone() + 64.0).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of range"), "{e}");
    let e = dec
        .push(&codes.unsqueeze(0).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("shape"), "{e}");
    assert_eq!(dec.finish().unwrap().unwrap().dims()[0], 1);
    let e = ChunkedDecoder::new(&model, &p)
        .unwrap()
        .finish()
        .unwrap_err();
    assert!(e.to_string().contains("no codes"), "{e}");
}

/// Signals that end exactly on a window boundary, with and without margins: the last window
/// must still end like the whole signal (no padding frame, the odd-stride tail).
#[test]
fn signals_ending_on_a_window_boundary() {
    for name in FIXTURES {
        let model = load_model(name);
        let hop = model.config().hop_length();
        let audio = signal(40 * hop, model.config().sampling_rate, 5);
        let whole = model.encode(&audio, None).unwrap();
        let decoded = model.decode(&whole).unwrap();
        for margin in [Some(0), Some(1), None] {
            let p = policy(10, margin);
            let codes = model.encode_chunked(&audio, None, &p).unwrap();
            assert_eq!(codes.dims(), whole.dims(), "{name} {margin:?}");
            let back = model.decode_chunked(&whole, &p).unwrap();
            assert_eq!(back.dims(), decoded.dims(), "{name} {margin:?}");
            if margin.is_none() {
                assert_eq!(count_code_diffs(&codes, &whole), 0);
                assert_eq!(max_abs_diff(&back, &decoded), 0.0);
            }
        }
    }
}

/// Peak memory of a long encode -> decode pipeline through the chunked coders, for the docs:
/// run once with 1 and once with 60 minutes (separate processes) and compare the peaks.
/// `TESSERA_DAC_RSS_MINUTES=60 cargo test --release -p tessera-codec --test dac_chunked -- --ignored --nocapture`;
/// `TESSERA_DAC_RSS_MODEL=DIR` runs another checkpoint (e.g. a full-size one) instead of tiny_odd.
#[test]
#[ignore = "a measurement (minutes of audio); see the doc comment"]
fn peak_rss_of_a_long_pipeline() {
    let minutes: f64 = std::env::var("TESSERA_DAC_RSS_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let model = match std::env::var("TESSERA_DAC_RSS_MODEL") {
        Ok(dir) => Dac::load(dir, &candle_core::Device::Cpu).unwrap(),
        Err(_) => load_model("tiny_odd"),
    };
    let sr = model.config().sampling_rate as usize;
    let total = (minutes * 60.0 * sr as f64) as usize;
    let p = ChunkPolicy::default();
    let mut enc = ChunkedEncoder::new(&model, None, &p).unwrap();
    let mut dec = ChunkedDecoder::new(&model, &p).unwrap();
    let (mut samples_out, mut at) = (0usize, 0usize);
    let mut step = |codes: Option<Tensor>, dec: &mut ChunkedDecoder| {
        if let Some(c) = codes
            && let Some(a) = dec.push(&c).unwrap()
        {
            samples_out += a.dims()[1];
        }
    };
    while at < total {
        // One second at a time, generated on the fly: the input is never held whole.
        let n = sr.min(total - at);
        let piece: Vec<f32> = signal(n, sr as u32, at as u64)
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let codes = enc.push(&piece).unwrap();
        step(codes, &mut dec);
        at += n;
    }
    let frames = enc.frames_done();
    let last = enc.finish().unwrap();
    step(last, &mut dec);
    let tail = dec.finish().unwrap().map_or(0, |a| a.dims()[1]);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: unknown");
    eprintln!(
        "{minutes} min at {sr} Hz: {} frames, {} samples decoded; peak RSS {peak}",
        frames.max(1),
        samples_out + tail
    );
    assert_eq!(
        samples_out + tail,
        model
            .config()
            .decoded_len(total.div_ceil(model.config().hop_length()))
    );
}

/// Long inputs to `encode`/`decode` take the chunked path on their own; a window longer than the
/// signal is one whole-signal pass, so the two must agree exactly.
#[test]
fn long_inputs_are_chunked_transparently() {
    use tessera_codec::dac::AUTO_CHUNK_FRAMES;
    let model = load_model("tiny_custom");
    let frames = AUTO_CHUNK_FRAMES + 300;
    let audio = signal(frames * model.config().hop_length() - 2, 6000, 9);
    let batch = Tensor::cat(&[&audio, &audio.affine(0.5, 0.0).unwrap()], 0).unwrap();
    let one_pass = policy(frames + 10, None);
    let auto = model.encode(&batch, Some(3)).unwrap();
    assert_eq!(auto.dims(), [2, 3, frames]);
    let whole = model.encode_chunked(&batch, Some(3), &one_pass).unwrap();
    assert_eq!(count_code_diffs(&auto, &whole), 0);
    let auto_audio = model.decode(&auto).unwrap();
    let whole_audio = model.decode_chunked(&auto, &one_pass).unwrap();
    assert_eq!(
        auto_audio.dims(),
        [2, 1, model.config().decoded_len(frames)]
    );
    assert_eq!(max_abs_diff(&auto_audio, &whole_audio), 0.0);
}
