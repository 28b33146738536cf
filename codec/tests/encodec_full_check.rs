//! The real EnCodec configs (full size, random weights) against transformers, written by
//! scripts/reference/encodec_full_check.py outside the repository. Ignored by default (it needs
//! that script's output); run with
//! `TESSERA_ENCODEC_FULL=/tmp/encodec_full cargo test --release -p tessera-codec --test encodec_full_check -- --ignored --nocapture`.

mod encodec_support;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor};
use encodec_support::*;
use tessera_codec::encodec::{Encodec, EncodecFrames, EncodecStreamingEncoder};

fn full_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("TESSERA_ENCODEC_FULL").unwrap_or_else(|_| "/tmp/encodec_full".into()),
    )
}

#[test]
#[ignore = "needs the output of scripts/reference/encodec_full_check.py"]
fn full_size_models_match_the_reference() {
    let mut checked = 0;
    let only = std::env::var("TESSERA_ENCODEC_ONLY").ok();
    for name in ["encodec_24khz", "encodec_48khz"] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let dir = full_dir().join(name);
        if !dir.join("io.safetensors").is_file() {
            eprintln!("{name}: no reference output in {}, skipped", dir.display());
            continue;
        }
        let model = Encodec::load(&dir, &Device::Cpu).unwrap();
        let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
        let bandwidths: Vec<f64> = io["bandwidths"].to_vec1().unwrap();
        for i in 0.. {
            let Some(audio) = io.get(&format!("audio.{i}")) else {
                break;
            };
            let secs = audio.dims()[2] as f64 / model.config().sampling_rate as f64;
            for (j, &bw) in bandwidths.iter().enumerate() {
                let n_q = model.n_q_for_bandwidth(bw).unwrap();
                let t0 = Instant::now();
                let ours = model.encode(audio, n_q).unwrap();
                let t_enc = t0.elapsed().as_secs_f64();
                let theirs_all = io[&format!("codes.{i}.{j}")].to_dtype(DType::U32).unwrap();
                let pad = io[&format!("last_pad.{i}.{j}")].to_vec1::<i64>().unwrap()[0] as usize;
                let chunks = theirs_all.dims()[0];
                let theirs: Vec<Tensor> = (0..chunks)
                    .map(|c| {
                        let t = theirs_all.i(c).unwrap();
                        let n = t.dims()[2];
                        let keep = if c + 1 == chunks { n - pad } else { n };
                        t.narrow(2, 0, keep).unwrap()
                    })
                    .collect();
                let (mut differing, mut total) = (0, 0);
                for (a, b) in ours.codes.iter().zip(&theirs) {
                    differing += code_diffs(a, b).len();
                    total += a.elem_count();
                }
                let scales = io.get(&format!("scales.{i}.{j}")).map(|s| {
                    (0..s.dims()[0])
                        .map(|c| s.i(c).unwrap())
                        .collect::<Vec<_>>()
                });
                let frames = EncodecFrames {
                    codes: theirs.clone(),
                    scales,
                };
                let t0 = Instant::now();
                let decoded = model.decode(&frames).unwrap();
                let t_dec = t0.elapsed().as_secs_f64();
                let err = max_abs_diff(&decoded, &io[&format!("decoded.{i}.{j}")]);
                eprintln!(
                    "{name} clip {i} ({secs:.2} s) at {bw} kbps ({n_q} codebooks): {differing} of \
                     {total} codes differ, max |decoded - reference| = {err:.2e}; encode \
                     {t_enc:.2} s, decode {t_dec:.2} s"
                );
                if chunks == 1 && model.config().use_causal_conv {
                    let mut enc = EncodecStreamingEncoder::new(&model, n_q).unwrap();
                    let mut parts = Vec::new();
                    let n = audio.dims()[2];
                    let mut at = 0;
                    while at < n {
                        let len = 24_000.min(n - at);
                        parts.extend(enc.step(&audio.narrow(2, at, len).unwrap()).unwrap());
                        at += len;
                    }
                    parts.extend(enc.finish().unwrap());
                    let streamed = Tensor::cat(&parts, 2).unwrap();
                    let d = code_diffs(&streamed, &theirs[0]).len();
                    eprintln!("{name} clip {i}: streamed in 1 s chunks, {d} codes differ");
                    assert_eq!(d, 0);
                }
                assert_eq!(differing, 0, "{name} clip {i}: codes differ");
                assert!(
                    err < 1e-4,
                    "{name} clip {i}: decoded audio differs by {err}"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0,
        "no reference output found under {}",
        full_dir().display()
    );
}
