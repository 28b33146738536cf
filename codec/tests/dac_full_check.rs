//! The real DAC configs (full size, random weights) against transformers, written by
//! scripts/reference/dac_full_check.py outside the repository. Ignored by default (it needs that
//! script's output, about 900 MB); run with
//! `TESSERA_DAC_FULL=/tmp/dac_full cargo test --release -p tessera-codec --test dac_full_check -- --ignored --nocapture`.

mod dac_support;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use dac_support::*;
use tessera_codec::dac::{ChunkPolicy, Dac, DacConfig};

fn full_dir() -> PathBuf {
    PathBuf::from(std::env::var("TESSERA_DAC_FULL").unwrap_or_else(|_| "/tmp/dac_full".into()))
}

#[test]
#[ignore = "needs the output of scripts/reference/dac_full_check.py"]
fn full_size_models_match_the_reference() {
    let mut checked = 0;
    let presets = [
        ("dac_16khz", DacConfig::dac_16khz()),
        ("dac_24khz", DacConfig::dac_24khz()),
        ("dac_44khz", DacConfig::dac_44khz()),
    ];
    for (name, preset) in presets {
        let dir = full_dir().join(name);
        if !dir.join("io.safetensors").is_file() {
            eprintln!("{name}: no reference output in {}, skipped", dir.display());
            continue;
        }
        let model = Dac::load(&dir, &Device::Cpu).unwrap();
        assert_eq!(
            model.config(),
            &preset,
            "{name}: config.json is not the preset"
        );
        let io = Io::from_file(dir.join("io.safetensors"));
        for i in 0..io.n_clips() {
            let audio = io.audio(i);
            let t0 = Instant::now();
            let ours = model.encode(&audio, None).unwrap();
            let t_enc = t0.elapsed().as_secs_f64();
            let differing = count_code_diffs(&ours, &io.codes(i));
            let differing_nq = count_code_diffs(
                &model.encode(&audio, Some(io.n_q())).unwrap(),
                &io.codes_nq(i),
            );
            let t0 = Instant::now();
            let decoded = model.decode(&io.codes(i)).unwrap().squeeze(1).unwrap();
            let t_dec = t0.elapsed().as_secs_f64();
            let err = max_abs_diff(&decoded, &io.decoded(i));
            let decoded_nq = model.decode(&io.codes_nq(i)).unwrap().squeeze(1).unwrap();
            let err_nq = max_abs_diff(&decoded_nq, &io.decoded_nq(i));
            let secs = audio.dims()[2] as f64 / model.config().sampling_rate as f64;
            eprintln!(
                "{name} clip {i} ({secs:.2} s): {differing} of {} codes differ ({differing_nq} \
                 with n_q {}), max |decoded - reference| = {err:.2e} ({err_nq:.2e} with n_q); \
                 encode {t_enc:.2} s, decode {t_dec:.2} s",
                ours.elem_count(),
                io.n_q()
            );
            // Chunked, with windows far shorter than the clip: identical to whole-clip results.
            let policy = ChunkPolicy {
                window_frames: 40,
                margin_frames: None,
            };
            let chunked = model.encode_chunked(&audio, None, &policy).unwrap();
            assert_eq!(
                count_code_diffs(&chunked, &ours),
                0,
                "{name} clip {i}: chunked"
            );
            let chunked = model.decode_chunked(&io.codes(i), &policy).unwrap();
            assert_eq!(max_abs_diff(&chunked.squeeze(1).unwrap(), &decoded), 0.0);
            if i == 0 {
                margin_sweep(&model, &audio, &ours, &decoded);
            }
            assert_eq!(differing + differing_nq, 0, "{name} clip {i}: codes differ");
            assert!(
                err < 1e-4 && err_nq < 1e-4,
                "{name} clip {i}: {err} {err_nq}"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no reference output found under {}",
        full_dir().display()
    );
}

/// What margins below the receptive field cost on a real-size model (printed for the docs).
fn margin_sweep(model: &Dac, audio: &Tensor, codes: &Tensor, decoded: &Tensor) {
    let enc = model.encoder_context();
    let dec = model.decoder_context();
    let top = enc.left_frames.max(dec.left_frames);
    for margin in [0, 1, 2, 4, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20]
        .into_iter()
        .filter(|&m| m <= top)
    {
        let policy = ChunkPolicy {
            window_frames: 25,
            margin_frames: Some(margin),
        };
        let chunked = model.encode_chunked(audio, None, &policy).unwrap();
        let differing = count_code_diffs(&chunked, codes);
        let back = model
            .decode_chunked(codes, &policy)
            .unwrap()
            .squeeze(1)
            .unwrap();
        let err = max_abs_diff(&back, decoded);
        eprintln!(
            "  window 25, margin {margin}: {differing} of {} codes differ, max |audio diff| {err:.2e}",
            codes.elem_count()
        );
    }
}
