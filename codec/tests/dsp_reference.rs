//! The DSP against torch / torchaudio / librosa outputs (fixtures from scripts/reference/dsp.py).
//!
//! Run with `--nocapture` to see the measured error of every case.

mod dsp_common;

use dsp_common::*;
use tessera_codec::dsp::{
    LogScale, MelFilterbank, MelSpectrogram, MelSpectrogramConfig, Spectrogram, Stft,
    WindowPrecision, window,
};

const TOL: f32 = 1e-4;

#[test]
fn windows_match_torch() {
    let manifest = manifest();
    let fixture = Fixture::open("windows.safetensors");
    let mut worst = 0.0f32;
    for case in manifest["windows"].as_array().expect("windows") {
        let (expected, _) = fixture.f32(as_str(case, "name"));
        let ours = window(
            window_kind(as_str(case, "kind")),
            as_usize(case, "len"),
            as_bool(case, "periodic"),
        );
        let err = max_abs_diff(&ours, &expected);
        // torch evaluates the cosines in f32; ours are f64 rounded once.
        assert!(err < 1e-6, "{}: {err}", case["name"]);
        worst = worst.max(err);
    }
    println!("windows: max abs error {worst:e}");
}

#[test]
fn stft_matches_torch() {
    let manifest = manifest();
    let fixture = Fixture::open("stft.safetensors");
    for case in manifest["stft"].as_array().expect("stft") {
        let name = as_str(case, "name");
        let signal = signal(as_str(case, "signal"));
        let signal = &signal[..as_usize(case, "n")];
        let stft = Stft::new(stft_config(case)).expect("config");
        let spec = stft.process(signal).expect("stft");
        let (re, shape) = fixture.f32(as_str(case, "re"));
        let (im, _) = fixture.f32(as_str(case, "im"));
        assert_eq!(
            [spec.n_freqs(), spec.n_frames()],
            [shape[0], shape[1]],
            "{name}: shape"
        );
        let err_re = max_abs_diff(&spec.real(), &re);
        let err_im = max_abs_diff(&spec.imag(), &im);
        let peak = re.iter().chain(&im).fold(0.0f32, |m, v| m.max(v.abs()));
        println!("stft {name}: max abs error re {err_re:e} im {err_im:e} (peak |value| {peak})");
        assert!(err_re < TOL && err_im < TOL, "{name}: {err_re} {err_im}");
    }
}

#[test]
fn istft_matches_torch() {
    let manifest = manifest();
    let fixture = Fixture::open("stft.safetensors");
    for case in manifest["stft"].as_array().expect("stft") {
        let name = as_str(case, "name");
        let (re, shape) = fixture.f32(as_str(case, "re"));
        let (im, _) = fixture.f32(as_str(case, "im"));
        // Invert torch's own spectrogram so that only the inverse is under test.
        let spec = Spectrogram::from_parts(shape[0], shape[1], &re, &im).expect("spectrogram");
        let stft = Stft::new(stft_config(case)).expect("config");
        let length = case["istft_length"].as_u64().map(|l| l as usize);
        let ours = stft.inverse(&spec, length).expect("istft");
        let (expected, _) = fixture.f32(as_str(case, "istft"));
        let err = max_abs_diff(&ours, &expected);
        println!("istft {name}: max abs error {err:e}");
        assert!(err < TOL, "{name}: {err}");
    }
}

#[test]
fn filterbanks_match_torchaudio_and_librosa() {
    let manifest = manifest();
    let fixture = Fixture::open("mel.safetensors");
    for case in manifest["fbanks"].as_array().expect("fbanks") {
        let name = as_str(case, "name");
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|v| v.as_u64().expect("dim") as usize)
            .collect();
        let mut expected = vec![0.0f32; shape[0] * shape[1]];
        let index = fixture.i32(as_str(case, "index"));
        let (value, _) = fixture.f32(as_str(case, "value"));
        for (&i, &v) in index.iter().zip(&value) {
            expected[i as usize] = v;
        }
        let bank = MelFilterbank::new(&mel_config(case)).expect("config");
        assert_eq!([bank.n_mels(), bank.n_freqs()], [shape[0], shape[1]]);
        let ours = bank.to_dense();
        let err = max_abs_diff(&ours, &expected);
        let peak = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        println!("fbank {name}: max abs error {err:e} (peak {peak:e})");
        assert!(err < TOL, "{name}: {err}");
        // Relative to the filters' scale too, since Slaney-normalised weights are small.
        assert!(err <= TOL * peak, "{name}: {err} vs peak {peak}");
    }
}

#[test]
fn mel_spectrograms_match_references() {
    let manifest = manifest();
    let fixture = Fixture::open("mel.safetensors");
    for case in manifest["mel"].as_array().expect("mel") {
        let name = as_str(case, "name");
        let signal = signal(as_str(case, "signal"));
        let signal = &signal[..as_usize(case, "n")];
        let log = log_scale(&case["log"]);
        let config = MelSpectrogramConfig {
            stft: stft_config(case),
            mel: mel_config(case),
            power: as_f64(case, "power") as f32,
            log,
        };
        let ours = MelSpectrogram::new(config.clone())
            .expect("config")
            .compute(signal)
            .expect("mel");
        let (expected, shape) = fixture.f32(as_str(case, "output"));
        assert_eq!([ours.n_mels, ours.n_frames], [shape[0], shape[1]], "{name}");
        let raw = matches!(log, LogScale::None);
        // Raw energies reach thousands, where f32 itself only holds ~1e-4 absolute.
        let error = |ours: &[f32], reference: &[f32]| {
            if raw {
                max_rel_diff(ours, reference)
            } else {
                max_abs_diff(ours, reference)
            }
        };
        let kind = if raw { "rel" } else { "abs" };
        let err = error(&ours.data, &expected);
        let Some(exact_name) = case["output_f64"].as_str() else {
            println!("mel {name}: max {kind} error {err:e}");
            assert!(err < TOL, "{name}: {err}");
            continue;
        };
        // The float64 reference evaluates windows in f64 too.
        let mut exact_config = config;
        exact_config.stft.window_precision = WindowPrecision::F64;
        let ours_exact = MelSpectrogram::new(exact_config)
            .expect("config")
            .compute(signal)
            .expect("mel");
        let err_exact = error(&ours_exact.data, &fixture.f32(exact_name).0);
        let own = as_f64(case, "reference_f32_error") as f32;
        println!(
            "mel {name}: max {kind} error {err:e} vs float32 reference, {err_exact:e} vs float64 \
             reference (float32 reference itself vs float64: {own:e})"
        );
        assert!(err_exact < TOL, "{name}: {err_exact} vs float64 reference");
        assert!(err < TOL + own, "{name}: {err} vs float32 reference");
    }
}

#[test]
fn presets_are_the_reference_recipes() {
    let manifest = manifest();
    let fixture = Fixture::open("mel.safetensors");
    let presets = [
        ("whisper80", MelSpectrogramConfig::whisper(80)),
        ("whisper128", MelSpectrogramConfig::whisper(128)),
        ("vocos", MelSpectrogramConfig::vocos_24khz()),
        (
            "ta16k_power_raw",
            MelSpectrogramConfig::torchaudio(16_000, 400, 160, 80),
        ),
    ];
    for (name, preset) in presets {
        let case = manifest["mel"]
            .as_array()
            .expect("mel")
            .iter()
            .find(|c| c["name"] == name)
            .expect("case");
        let signal = signal(as_str(case, "signal"));
        let ours = MelSpectrogram::new(preset)
            .expect("preset")
            .compute(&signal[..as_usize(case, "n")])
            .expect("mel");
        let (expected, _) = fixture.f32(as_str(case, "output"));
        let err = max_rel_diff(&ours.data, &expected);
        assert!(err < TOL, "{name}: {err}");
    }
}
