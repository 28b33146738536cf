//! The real Mimi config (full size, random weights) against transformers, written by
//! scripts/reference/mimi_full_check.py outside the repository. Ignored by default (it needs
//! that script's output); run with
//! `TESSERA_MIMI_FULL=/tmp/mimi_full cargo test --release -p tessera-codec --test mimi_full_check -- --ignored --nocapture`.

mod mimi_support;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use mimi_support::*;
use tessera_codec::mimi::{Mimi, MimiStreamingDecoder, MimiStreamingEncoder};

fn full_dir() -> PathBuf {
    PathBuf::from(std::env::var("TESSERA_MIMI_FULL").unwrap_or_else(|_| "/tmp/mimi_full".into()))
        .join("mimi")
}

#[test]
#[ignore = "needs the output of scripts/reference/mimi_full_check.py"]
fn full_size_model_matches_the_reference() {
    let dir = full_dir();
    assert!(
        dir.join("io.safetensors").is_file(),
        "no reference output in {}",
        dir.display()
    );
    let model = Mimi::load(&dir, &Device::Cpu).unwrap();
    let io = Io::load_path(dir.join("io.safetensors"));
    let frame = model.config().frame_size();
    let mut rng = Sizes(2024);
    for i in 0..io.n_clips() {
        let audio = io.audio(i);
        let secs = audio.dims()[2] as f64 / model.config().sampling_rate as f64;
        for (label, codes) in [("all", io.codes(i)), ("few", io.codes_few(i))] {
            let n_q = codes.dims()[1];
            let t0 = Instant::now();
            let ours = model.encode(&audio, n_q).unwrap();
            let t_enc = t0.elapsed().as_secs_f64();
            let differing = code_diffs(&ours, &codes).len();
            let t0 = Instant::now();
            let decoded = model.decode(&codes).unwrap();
            let t_dec = t0.elapsed().as_secs_f64();
            let want = if label == "all" {
                Some(io.decoded(i))
            } else {
                io.decoded_few(i)
            };
            let err = want.map(|w| max_abs_diff(&decoded, &w));
            let err_text = err.map_or("not stored".to_string(), |e| format!("{e:.2e}"));
            eprintln!(
                "mimi clip {i} ({secs:.2} s), {n_q} codebooks: {differing} of {} codes differ, \
                 max |decoded - reference| = {err_text}; encode {t_enc:.2} s, decode {t_dec:.2} s",
                codes.elem_count()
            );
            assert_eq!(differing, 0, "clip {i}: codes differ");
            if let Some(err) = err {
                assert!(err < 1e-4, "clip {i}: decoded audio differs by {err}");
            }
            // Streams of random multiples of the frame size.
            let mut enc = MimiStreamingEncoder::new(&model, n_q).unwrap();
            let n = audio.dims()[2];
            let (mut parts, mut at) = (Vec::new(), 0);
            while at < n {
                let len = (frame * rng.next(20)).min(n - at);
                parts.extend(enc.step(&audio.narrow(2, at, len).unwrap()).unwrap());
                at += len;
            }
            parts.extend(enc.finish().unwrap());
            let streamed = Tensor::cat(&parts, 2).unwrap();
            let d = code_diffs(&streamed, &codes).len();
            let mut dec = MimiStreamingDecoder::new(&model).unwrap();
            let frames = codes.dims()[2];
            let (mut parts, mut at) = (Vec::new(), 0);
            while at < frames {
                let len = rng.next(20).min(frames - at);
                parts.extend(dec.step(&codes.narrow(2, at, len).unwrap()).unwrap());
                at += len;
            }
            let audio_err = max_abs_diff(&Tensor::cat(&parts, 2).unwrap(), &decoded);
            eprintln!(
                "mimi clip {i}, {n_q} codebooks, streamed: {d} codes differ, max |audio - \
                 whole-signal audio| = {audio_err:.2e}"
            );
            assert_eq!(d, 0);
            assert!(audio_err < 1e-4);
        }
    }
}
