//! The real SNAC configs (full size, random weights) against the reference, written by
//! scripts/reference/snac_full_check.py outside the repository. Ignored by default (it needs that
//! script's output, about 500 MB); run with
//! `TESSERA_SNAC_FULL=/tmp/snac_full cargo test --release -p tessera-codec --test snac_full_check -- --ignored --nocapture`.

mod snac_support;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use snac_support::*;
use tessera_codec::codec::Noise;
use tessera_codec::snac::Snac;

fn full_dir() -> PathBuf {
    PathBuf::from(std::env::var("TESSERA_SNAC_FULL").unwrap_or_else(|_| "/tmp/snac_full".into()))
}

#[test]
#[ignore = "needs the output of scripts/reference/snac_full_check.py"]
fn full_size_models_match_the_reference() {
    let mut checked = 0;
    for name in ["snac_24khz", "snac_32khz", "snac_44khz"] {
        let dir = full_dir().join(name);
        if !dir.join("io.safetensors").is_file() {
            eprintln!("{name}: no reference output in {}, skipped", dir.display());
            continue;
        }
        let model = Snac::load(&dir, &Device::Cpu).unwrap();
        let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
        let seed = io["noise_seed"].to_vec1::<i64>().unwrap()[0] as u64;
        for i in 0.. {
            let Some(audio) = io.get(&format!("audio.{i}")) else {
                break;
            };
            let theirs: Vec<Tensor> = (0..)
                .map_while(|k| io.get(&format!("codes.{i}.{k}")))
                .map(|t| t.to_dtype(candle_core::DType::U32).unwrap())
                .collect();
            let t0 = Instant::now();
            let ours = model.encode(audio).unwrap();
            let t_enc = t0.elapsed().as_secs_f64();
            let (mut differing, mut total) = (0, 0);
            for (a, b) in ours.iter().zip(&theirs) {
                differing += code_diffs(a, b).len();
                total += a.elem_count();
            }
            let t0 = Instant::now();
            let decoded = model.decode(&theirs, Noise::Off).unwrap();
            let t_dec = t0.elapsed().as_secs_f64();
            let err = max_abs_diff(&decoded, &io[&format!("decoded.{i}")]);
            let secs = audio.dims()[2] as f64 / model.config().sampling_rate as f64;
            eprintln!(
                "{name} clip {i} ({secs:.2} s): {differing} of {total} codes differ, \
                 max |decoded - reference| = {err:.2e}; encode {t_enc:.2} s, decode {t_dec:.2} s"
            );
            if let Some(want) = io.get(&format!("decoded_noise.{i}")) {
                let noisy = model.decode(&theirs, Noise::Seeded(seed)).unwrap();
                let err = max_abs_diff(&noisy, want);
                eprintln!("{name} clip {i}: seeded noise, max |decoded - reference| = {err:.2e}");
                assert!(err < 1e-4);
            }
            if i == 0 {
                // Rows of a batch do not interact: the clip and a quieter copy, together.
                let pair = Tensor::cat(&[audio, &(audio * 0.5).unwrap()], 0).unwrap();
                let both = model.encode(&pair).unwrap();
                for (k, (b, a)) in both.iter().zip(&ours).enumerate() {
                    let row = b.get(0).unwrap().unsqueeze(0).unwrap();
                    assert!(
                        code_diffs(&row, a).is_empty(),
                        "{name}: batch row 0, level {k}"
                    );
                }
            }
            assert_eq!(differing, 0, "{name} clip {i}: codes differ");
            assert!(
                err < 1e-4,
                "{name} clip {i}: decoded audio differs by {err}"
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
