//! SNAC against the reference package (snac 1.2.1) on tiny models of the real architectures:
//! codes identical, decoded audio within 1e-4, with the decoder noise off and seeded.

mod snac_support;

use candle_core::Tensor;
use snac_support::*;
use tessera_codec::codec::AudioCodec;
use tessera_codec::codec::{
    DecodeOptions, EncodeOptions, Noise, decode_codes, encode_batch, encode_to_codes,
};

const TOL: f32 = 1e-4;

#[test]
fn codes_match_the_reference() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        assert!(io.n_clips() >= 2, "{name}: fixture has too few clips");
        for i in 0..io.n_clips() {
            let ours = model.encode(&io.audio(i)).unwrap();
            let theirs = io.codes(i);
            assert_eq!(ours.len(), theirs.len(), "{name} clip {i}: level count");
            for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let diffs = code_diffs(a, b);
                assert!(
                    diffs.is_empty(),
                    "{name} clip {i} level {k}: codes differ at {diffs:?}"
                );
            }
        }
    }
}

#[test]
fn decoded_audio_matches_the_reference_without_noise() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        for i in 0..io.n_clips() {
            let ours = model.decode(&io.codes(i), Noise::Off).unwrap();
            let err = max_abs_diff(&ours, &io.decoded(i));
            eprintln!("{name} clip {i}: max |decoded - reference| = {err:.3e}");
            assert!(err < TOL, "{name} clip {i}: decoded audio differs by {err}");
        }
    }
}

/// The reference run with tessera's seeded noise stream in its NoiseBlocks: checks the noise
/// path (projection, broadcast over channels, draw order) and not just its absence.
#[test]
fn seeded_noise_matches_the_reference() {
    let mut checked = 0;
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        for i in 0..io.n_clips() {
            let Some(want) = io.decoded_noise(i) else {
                continue;
            };
            let codes = io.codes(i);
            let ours = model
                .decode(&codes, Noise::Seeded(io.noise_seed()))
                .unwrap();
            let err = max_abs_diff(&ours, &want);
            eprintln!("{name} clip {i}: seeded noise, max |decoded - reference| = {err:.3e}");
            assert!(err < TOL, "{name} clip {i}: noisy decode differs by {err}");
            // The noise must matter, and a seed must repeat.
            assert!(
                max_abs_diff(&ours, &io.decoded(i)) > 1e-3,
                "{name}: noise had no effect"
            );
            let again = model
                .decode(&codes, Noise::Seeded(io.noise_seed()))
                .unwrap();
            assert_eq!(max_abs_diff(&ours, &again), 0.0);
            let other = model
                .decode(&codes, Noise::Seeded(io.noise_seed() + 1))
                .unwrap();
            assert!(max_abs_diff(&ours, &other) > 1e-4);
            checked += 1;
        }
    }
    assert!(checked >= 2, "the fixtures must hold noisy decodes");
}

#[test]
fn models_without_noise_blocks_ignore_the_noise_option() {
    let model = load_model("tiny_dense");
    let io = Io::load("tiny_dense");
    let a = model.decode(&io.codes(0), Noise::Random).unwrap();
    assert!(max_abs_diff(&a, &io.decoded(0)) < TOL);
}

/// Through the codec trait: one clip to `Codes` with metadata and back, trimmed.
#[test]
fn codes_round_trip_through_the_trait() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
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
            let meta = codes.meta();
            assert_eq!(meta.tokenizer, *name);
            assert_eq!(meta.n_samples, Some(n as u64));
            assert_eq!(meta.sample_rate, Some(model.sample_rate()));
            assert_eq!(meta.codebook_sizes.len(), model.config().vq_strides.len());
            for (k, level) in codes.levels().iter().enumerate() {
                assert_eq!(
                    as_u32(level),
                    as_u32(&io.codes(i)[k]),
                    "{name} clip {i} level {k}"
                );
                let frames = level.dims()[1] as f64;
                let rate = meta.frame_rates[k];
                assert!(
                    (frames / rate
                        - model.config().padded_len(n) as f64 / model.sample_rate() as f64)
                        .abs()
                        < 1e-9
                );
            }
            let opts = DecodeOptions { noise: Noise::Off };
            let audio_back = decode_codes(&model, &codes, &opts).unwrap();
            assert_eq!(audio_back.dims(), [1, n]);
            let want = io.decoded(i).squeeze(0).unwrap().narrow(1, 0, n).unwrap();
            assert!(max_abs_diff(&audio_back, &want) < TOL);
            // And through a codes file.
            let back = tessera_core::Codes::from_bytes(&codes.to_bytes().unwrap()).unwrap();
            let again = decode_codes(&model, &back, &opts).unwrap();
            assert_eq!(max_abs_diff(&again, &audio_back), 0.0);
        }
    }
}

/// Clips of different lengths in batches: each gets exactly the codes it gets alone (and the
/// reference's), including clips that share a padded length and batches split by max_batch.
#[test]
fn batches_give_every_clip_its_own_codes() {
    for name in FIXTURES {
        let model = load_model(name);
        let io = Io::load(name);
        let mut clips: Vec<Tensor> = (0..io.n_clips())
            .map(|i| io.audio(i).squeeze(0).unwrap())
            .collect();
        // Shorter cuts of the fixture clips land in the same padding bucket as their parent
        // or in a new one; a repeated clip checks that rows do not interact.
        let pad = model.config().pad_multiple();
        for i in 0..io.n_clips() {
            let n = clips[i].dims()[1];
            for cut in [n.saturating_sub(pad / 3), n.saturating_sub(pad + 1), n / 2] {
                if cut > 0 {
                    clips.push(clips[i].narrow(1, 0, cut).unwrap());
                }
            }
        }
        clips.push(clips[0].clone());
        let alone: Vec<_> = clips
            .iter()
            .map(|c| {
                encode_to_codes(&model, c, model.sample_rate(), &EncodeOptions::default()).unwrap()
            })
            .collect();
        for max_batch in [1, 2, 64] {
            let batched = encode_batch(
                &model,
                &clips,
                model.sample_rate(),
                &EncodeOptions::default(),
                max_batch,
            )
            .unwrap();
            assert_eq!(batched.len(), clips.len());
            for (j, (a, b)) in alone.iter().zip(&batched).enumerate() {
                assert_eq!(a.meta(), b.meta(), "{name} clip {j}");
                for (k, (x, y)) in a.levels().iter().zip(b.levels()).enumerate() {
                    assert!(
                        code_diffs(x, y).is_empty(),
                        "{name} clip {j} level {k} (max_batch {max_batch})"
                    );
                }
            }
        }
        for (i, codes) in alone.iter().take(io.n_clips()).enumerate() {
            for (k, want) in io.codes(i).iter().enumerate() {
                assert_eq!(as_u32(&codes.levels()[k]), as_u32(want));
            }
        }
    }
}
