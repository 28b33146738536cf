//! SNAC window by window against whole-signal processing on the tiny fixtures: identical codes
//! and decoded audio for any window size (including windows of one attention window), noise off
//! or seeded; bounded buffers; what holds for seeded noise when the length is not known.

mod snac_support;

use candle_core::{Device, Tensor};
use snac_support::*;
use tessera_codec::codec::Noise;
use tessera_codec::snac::{Snac, SnacChunkedDecoder, SnacChunkedEncoder};
use tessera_codec::stream::{DecodeStream, EncodeStream};

/// A noisy chirp of `n` samples, `[1, 1, n]`.
fn signal(n: usize, seed: u64) -> Tensor {
    let mut state = seed | 1;
    let v: Vec<f32> = (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let t = i as f32 / 1000.0;
            0.4 * (t * (3.0 + t)).sin() + 0.3 * noise
        })
        .collect();
    Tensor::from_vec(v, (1, 1, n), &Device::Cpu).unwrap()
}

/// Latent frames of a clip long enough for many windows, plus a partial frame.
fn long_clip(model: &Snac, latent_frames: usize) -> Tensor {
    let hop = model.config().hop_length();
    signal(latent_frames * hop + hop / 3 + 1, 5)
}

#[test]
fn windows_give_identical_codes() {
    for name in FIXTURES {
        let model = load_model(name);
        let audio = long_clip(&model, 150);
        let whole = model.encode(&audio).unwrap();
        for window in [1, 2, 5, 16, 64, 149, 400] {
            let chunked = model.encode_chunked(&audio, window).unwrap();
            assert_eq!(chunked.len(), whole.len());
            for (k, (c, w)) in chunked.iter().zip(&whole).enumerate() {
                assert_eq!(
                    code_diffs(c, w),
                    Vec::<usize>::new(),
                    "{name} window {window} level {k}"
                );
            }
        }
    }
}

#[test]
fn windows_give_identical_audio_without_and_with_seeded_noise() {
    for name in FIXTURES {
        let model = load_model(name);
        let codes = model.encode(&long_clip(&model, 150)).unwrap();
        let mut noises = vec![Noise::Off];
        if model.config().noise {
            noises.push(Noise::Seeded(17));
        }
        for noise in noises {
            let whole = model.decode(&codes, noise).unwrap();
            for window in [1, 3, 16, 100, 400] {
                let chunked = model.decode_chunked(&codes, noise, window).unwrap();
                // Same inputs, same arithmetic (and the same noise values): equal to the last bit.
                assert_eq!(
                    max_abs_diff(&chunked, &whole),
                    0.0,
                    "{name} {noise:?} window {window}"
                );
            }
        }
    }
}

/// Without the signal's length a stream cannot place the whole pass's noise; its noise is then
/// still a function of the seed and the position alone: the same for any window size, different
/// from no noise, of the same spread as the whole pass's.
#[test]
fn seeded_noise_without_the_length_is_window_independent() {
    for name in FIXTURES {
        let model = load_model(name);
        if !model.config().noise {
            continue;
        }
        let codes = model.encode(&long_clip(&model, 150)).unwrap();
        let decode = |window: usize| {
            let mut dec = SnacChunkedDecoder::new(&model, Noise::Seeded(4), None, window).unwrap();
            let levels: Vec<Tensor> = codes.iter().map(Clone::clone).collect();
            let mut parts: Vec<Tensor> = dec.push(&levels).unwrap().into_iter().collect();
            parts.extend(dec.finish().unwrap());
            Tensor::cat(&parts, 1).unwrap().unsqueeze(0).unwrap()
        };
        let a = decode(2);
        let b = decode(50);
        assert_eq!(max_abs_diff(&a, &b), 0.0, "{name}");
        let quiet = model.decode(&codes, Noise::Off).unwrap();
        let noisy = model.decode(&codes, Noise::Seeded(4)).unwrap();
        let spread = |x: &Tensor| {
            x.sub(&quiet)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .sqrt()
        };
        let (ours, whole) = (spread(&a), spread(&noisy));
        assert!(ours > 1e-4, "{name}: noise had no effect");
        assert!(
            ours / whole > 0.5 && ours / whole < 2.0,
            "{name}: noise rms {ours} vs whole-signal {whole}"
        );
    }
}

#[test]
fn buffers_stay_bounded() {
    for name in FIXTURES {
        let model = load_model(name);
        let hop = model.config().hop_length();
        let audio = long_clip(&model, 600).squeeze(0).unwrap();
        let mut enc = SnacChunkedEncoder::new(&model, 8).unwrap();
        let m = enc.margins();
        let bound = (8 + model.config().latent_multiple() + m.left + m.right + 1) * hop + 100;
        let n = audio.dims()[1];
        let mut at = 0;
        let mut most = 0;
        while at < n {
            let len = 100.min(n - at);
            enc.push(&audio.narrow(1, at, len).unwrap()).unwrap();
            most = most.max(enc.buffered_samples());
            at += len;
        }
        assert!(most <= bound, "{name}: held {most} samples (bound {bound})");
        enc.finish().unwrap();
    }
}

#[test]
fn uneven_levels_and_bad_codes() {
    let model = load_model("tiny_24k");
    let codes = model.encode(&long_clip(&model, 64)).unwrap();
    let whole = model.decode(&codes, Noise::Off).unwrap();
    // All of the fine levels first, the coarse level afterwards: nothing is final until the
    // coarse codes arrive, and the result is the same.
    let mut dec = SnacChunkedDecoder::new(&model, Noise::Off, None, 4).unwrap();
    let n0 = codes[0].dims()[1];
    let first: Vec<Tensor> = codes
        .iter()
        .enumerate()
        .map(|(k, c)| {
            if k == 0 {
                c.narrow(1, 0, 0).unwrap()
            } else {
                c.clone()
            }
        })
        .collect();
    assert!(dec.push(&first).unwrap().is_none());
    let rest: Vec<Tensor> = codes
        .iter()
        .enumerate()
        .map(|(k, c)| {
            if k == 0 {
                c.clone()
            } else {
                c.narrow(1, 0, 0).unwrap()
            }
        })
        .collect();
    let mut parts: Vec<Tensor> = dec.push(&rest).unwrap().into_iter().collect();
    parts.extend(dec.finish().unwrap());
    let got = Tensor::cat(&parts, 1).unwrap().unsqueeze(0).unwrap();
    assert_eq!(max_abs_diff(&got, &whole), 0.0);
    // Levels that end at different times are refused at the end, with the reason.
    let mut dec = SnacChunkedDecoder::new(&model, Noise::Off, None, 4).unwrap();
    let short: Vec<Tensor> = codes
        .iter()
        .enumerate()
        .map(|(k, c)| {
            if k == 0 {
                c.narrow(1, 0, n0 - 1).unwrap()
            } else {
                c.clone()
            }
        })
        .collect();
    dec.push(&short).unwrap();
    let err = dec.finish().unwrap_err().to_string();
    assert!(err.contains("same time"), "{err}");
    // Codes out of the codebook are refused when pushed.
    let mut dec = SnacChunkedDecoder::new(&model, Noise::Off, None, 4).unwrap();
    let mut bad: Vec<Tensor> = codes.clone();
    bad[1] = Tensor::full(1_000_000u32, bad[1].dims(), &Device::Cpu).unwrap();
    let err = dec.push(&bad).unwrap_err().to_string();
    assert!(err.contains("out of range"), "{err}");
}
