//! DAC against transformers' DacModel on tiny models of the real architectures: codes identical
//! (all codebooks and a reduced n_q), decoded audio within 1e-4, through the model and the
//! codec trait, single clips and batches.

mod dac_support;

use candle_core::Tensor;
use dac_support::*;
use tessera_codec::codec::{
    AudioCodec, DecodeOptions, EncodeOptions, decode_codes, encode_batch, encode_to_codes,
};

const TOL: f32 = 1e-4;

#[test]
fn codes_match_the_reference() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        assert!(io.n_clips() >= 3, "{name}: fixture has too few clips");
        for i in 0..io.n_clips() {
            let ours = model.encode(&io.audio(i), None).unwrap();
            let diffs = count_code_diffs(&ours, &io.codes(i));
            assert_eq!(diffs, 0, "{name} clip {i}: {diffs} codes differ");
            let ours = model.encode(&io.audio(i), Some(io.n_q())).unwrap();
            assert_eq!(
                as_u32(&ours),
                as_u32(&io.codes_nq(i)),
                "{name} clip {i} n_q"
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
            let ours = model.decode(&io.codes(i)).unwrap().squeeze(1).unwrap();
            let err = max_abs_diff(&ours, &io.decoded(i));
            eprintln!("{name} clip {i}: max |decoded - reference| = {err:.3e}");
            assert!(err < TOL, "{name} clip {i}: decoded audio differs by {err}");
            let ours = model.decode(&io.codes_nq(i)).unwrap().squeeze(1).unwrap();
            let err = max_abs_diff(&ours, &io.decoded_nq(i));
            assert!(
                err < TOL,
                "{name} clip {i} n_q: decoded audio differs by {err}"
            );
        }
    }
}

/// The fixtures must exercise what they claim: lengths off the hop, and (for odd strides)
/// decoded audio shorter than the padded input.
#[test]
fn fixtures_cover_padding_and_odd_strides() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        let hop = model.config().hop_length();
        let n: Vec<usize> = (0..io.n_clips()).map(|i| io.audio(i).dims()[2]).collect();
        assert!(n.iter().any(|n| n % hop != 0), "{name}: {n:?}");
        for (i, &len) in n.iter().enumerate() {
            let frames = io.codes(i).dims()[2];
            assert_eq!(frames, len.div_ceil(hop));
            assert_eq!(io.decoded(i).dims()[1], model.config().decoded_len(frames));
        }
    }
    let odd = load_model("tiny_odd");
    assert!(odd.config().decoded_len(5) < 5 * odd.config().hop_length());
}

/// Through the codec trait: one clip to `Codes` with metadata and back, trimmed to its length.
#[test]
fn codes_round_trip_through_the_trait() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        let cfg = model.config().clone();
        for i in 0..io.n_clips() {
            let audio = io.audio(i).squeeze(0).unwrap();
            let n = audio.dims()[1];
            for (n_q, want) in [(None, io.codes(i)), (Some(io.n_q()), io.codes_nq(i))] {
                let codes =
                    encode_to_codes(&model, &audio, cfg.sampling_rate, &EncodeOptions { n_q })
                        .unwrap();
                let meta = codes.meta();
                assert_eq!(meta.tokenizer, *name);
                assert_eq!(meta.n_samples, Some(n as u64));
                assert_eq!(meta.codebook_sizes, vec![cfg.codebook_size as u32]);
                assert_eq!(meta.frame_rates, vec![cfg.frame_rate()]);
                assert_eq!(codes.levels().len(), 1);
                assert_eq!(as_u32(&codes.levels()[0]), as_u32(&want));
                let back = decode_codes(&model, &codes, &DecodeOptions::default()).unwrap();
                assert_eq!(back.dims(), [1, n]);
                // The reference's samples, then zeros where odd strides lost the last ones.
                let reference = if n_q.is_some() {
                    io.decoded_nq(i)
                } else {
                    io.decoded(i)
                };
                let have = reference.dims()[1].min(n);
                let err = max_abs_diff(
                    &back.narrow(1, 0, have).unwrap(),
                    &reference.narrow(1, 0, have).unwrap(),
                );
                assert!(err < TOL, "{name} clip {i}: {err}");
                let tail = back.narrow(1, have, n - have).unwrap();
                assert_eq!(
                    tail.abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap(),
                    0.0
                );
                let file = tessera_core::Codes::from_bytes(&codes.to_bytes().unwrap()).unwrap();
                let again = decode_codes(&model, &file, &DecodeOptions::default()).unwrap();
                assert_eq!(max_abs_diff(&again, &back), 0.0);
            }
        }
    }
}

#[test]
fn trait_decode_spans_the_padded_input() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        let codes = io.codes(1);
        let frames = codes.dims()[2];
        let audio = AudioCodec::decode(&model, &[codes], &DecodeOptions::default()).unwrap();
        assert_eq!(audio.dims(), [1, 1, frames * model.config().hop_length()]);
    }
}

/// Clips of different lengths in batches: each gets exactly the codes it gets alone (and the
/// reference's), including clips that share a padded length and batches split by max_batch.
#[test]
fn batches_give_every_clip_its_own_codes() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        let sr = model.config().sampling_rate;
        let hop = model.config().hop_length();
        let mut clips: Vec<Tensor> = (0..io.n_clips())
            .map(|i| io.audio(i).squeeze(0).unwrap())
            .collect();
        // Cuts of the fixture clips land in the same padding bucket as their parent or in new
        // ones; a repeated clip checks that rows of one batch do not interact.
        for i in 0..io.n_clips() {
            let n = clips[i].dims()[1];
            for cut in [
                n.saturating_sub(hop / 3),
                n.saturating_sub(hop + 1),
                n / 2,
                1,
            ] {
                if cut > 0 {
                    clips.push(clips[i].narrow(1, 0, cut).unwrap());
                }
            }
        }
        clips.push(clips[0].clone());
        for opts in [
            EncodeOptions::default(),
            EncodeOptions {
                n_q: Some(io.n_q()),
            },
        ] {
            let alone: Vec<_> = clips
                .iter()
                .map(|c| encode_to_codes(&model, c, sr, &opts).unwrap())
                .collect();
            for max_batch in [1, 3, 64] {
                let batched = encode_batch(&model, &clips, sr, &opts, max_batch).unwrap();
                assert_eq!(batched.len(), clips.len());
                for (j, (a, b)) in alone.iter().zip(&batched).enumerate() {
                    assert_eq!(a.meta(), b.meta(), "{name} clip {j}");
                    let d = count_code_diffs(&a.levels()[0], &b.levels()[0]);
                    assert_eq!(d, 0, "{name} clip {j} (max_batch {max_batch})");
                }
            }
            for (i, codes) in alone.iter().take(io.n_clips()).enumerate() {
                let want = if opts.n_q.is_some() {
                    io.codes_nq(i)
                } else {
                    io.codes(i)
                };
                assert_eq!(as_u32(&codes.levels()[0]), as_u32(&want));
            }
        }
    }
}

/// A local directory in the descript/dac_* layout is recognised as DAC by the registry.
#[test]
fn registry_detects_dac_directories() {
    let codec =
        tessera_codec::registry::load_dir(&fixture_dir("tiny_even"), &candle_core::Device::Cpu)
            .unwrap();
    assert_eq!(codec.id(), "tiny_even");
    let io = Io::load("tiny_even");
    let codes = codec
        .encode(&io.audio(2), &EncodeOptions::default())
        .unwrap();
    assert_eq!(as_u32(&codes[0]), as_u32(&io.codes(2)));
}
