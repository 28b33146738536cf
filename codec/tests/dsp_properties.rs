//! Properties of the DSP that hold without a reference: exact window formulas, perfect
//! reconstruction, thread-count and batch invariance, tensor shapes.

use std::f64::consts::PI;

use candle_core::{Device, Tensor};
use tessera_codec::dsp::{
    LogScale, MelConfig, MelFilterbank, MelNorm, MelScale, MelSpectrogram, MelSpectrogramConfig,
    PadMode, Stft, StftConfig, Window, hz_to_mel, mel_to_hz, pad, window, window_f64,
};

/// A deterministic test signal: two tones and a little pseudo-random noise.
fn test_signal(len: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let t = i as f32 / 16_000.0;
            0.4 * (2.0 * std::f32::consts::PI * 330.0 * t).sin()
                + 0.2 * (2.0 * std::f32::consts::PI * 2_750.0 * t).sin()
                + 0.05 * noise
        })
        .collect()
}

#[test]
fn f64_windows_are_the_formulas() {
    for (len, periodic) in [(8usize, true), (8, false), (401, true), (400, false)] {
        let d = if periodic { len } else { len - 1 } as f64;
        for (kind, formula) in [
            (
                Window::Hann,
                Box::new(|n: f64| 0.5 - 0.5 * (2.0 * PI * n / d).cos()) as Box<dyn Fn(f64) -> f64>,
            ),
            (
                Window::Hamming,
                Box::new(|n: f64| 0.54 - 0.46 * (2.0 * PI * n / d).cos()),
            ),
            (
                Window::Blackman,
                Box::new(|n: f64| {
                    0.42 - 0.5 * (2.0 * PI * n / d).cos() + 0.08 * (4.0 * PI * n / d).cos()
                }),
            ),
            (
                Window::Povey,
                Box::new(|n: f64| (0.5 - 0.5 * (2.0 * PI * n / d).cos()).powf(0.85)),
            ),
            (Window::Rectangular, Box::new(|_| 1.0)),
        ] {
            let ours = window_f64(kind, len, periodic);
            assert_eq!(ours.len(), len);
            for (n, &w) in ours.iter().enumerate() {
                let expected = formula(n as f64);
                assert!(
                    (w - expected).abs() < 1e-15,
                    "{kind:?} {len} {periodic} [{n}]: {w} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn window_conventions() {
    for kind in [
        Window::Hann,
        Window::Hamming,
        Window::Blackman,
        Window::Povey,
        Window::Rectangular,
    ] {
        assert!(window(kind, 0, true).is_empty());
        assert_eq!(window(kind, 1, false), vec![1.0]);
        // A periodic window is the symmetric one of length + 1 without its last sample.
        let periodic = window_f64(kind, 64, true);
        let symmetric = window_f64(kind, 65, false);
        for (a, b) in periodic.iter().zip(&symmetric) {
            assert!((a - b).abs() < 1e-15, "{kind:?}");
        }
        // Symmetric windows are symmetric, and the f32 (torch-order) evaluation stays close.
        let sym = window_f64(kind, 63, false);
        for n in 0..63 {
            assert!((sym[n] - sym[62 - n]).abs() < 1e-15, "{kind:?}");
        }
        let f32_window = window(kind, 63, false);
        for (a, b) in f32_window.iter().zip(&sym) {
            assert!((*a as f64 - b).abs() < 1e-6, "{kind:?}");
        }
    }
    let hann = window_f64(Window::Hann, 9, false);
    assert_eq!(hann[0], 0.0);
    assert!((hann[4] - 1.0).abs() < 1e-15);
}

#[test]
fn istft_inverts_stft() {
    let signal = test_signal(4_001);
    let configs = [
        StftConfig::new(400, 160),
        StftConfig::new(1024, 256),
        StftConfig::new(2048, 300).with_win_length(1200),
        StftConfig::new(512, 128).with_center(true, PadMode::Constant),
        StftConfig::new(255, 64)
            .with_window(Window::Hamming, false)
            .with_center(true, PadMode::Replicate),
        StftConfig::new(64, 16)
            .with_normalized(true)
            .with_onesided(false),
        StftConfig::new(512, 128)
            .with_window(Window::Hamming, true)
            .with_center(false, PadMode::Reflect),
    ];
    for config in configs {
        let stft = Stft::new(config.clone()).expect("config");
        let spec = stft.process(&signal).expect("stft");
        let length = if config.center {
            signal.len()
        } else {
            // Without centring only whole frames are covered.
            config.n_fft + config.hop_length * (spec.n_frames() - 1)
        };
        let back = stft.inverse(&spec, Some(length)).expect("istft");
        assert_eq!(back.len(), length);
        let err = back
            .iter()
            .zip(&signal)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-5, "{config:?}: {err}");
    }
}

#[test]
fn istft_length_pads_and_trims() {
    let signal = test_signal(3_000);
    let stft = Stft::new(StftConfig::new(400, 100)).expect("config");
    let spec = stft.process(&signal).expect("stft");
    let default = stft.inverse(&spec, None).expect("istft");
    // Centred: n_fft + hop * (frames - 1) minus n_fft / 2 on both sides.
    assert_eq!(default.len(), 100 * (spec.n_frames() - 1));
    let short = stft.inverse(&spec, Some(1_000)).expect("istft");
    assert_eq!(short[..], default[..1_000]);
    let long = stft
        .inverse(&spec, Some(default.len() + 500))
        .expect("istft");
    assert_eq!(long.len(), default.len() + 500);
    assert!(long[default.len() + 200..].iter().all(|&v| v == 0.0));
}

#[test]
fn zero_envelope_is_an_error() {
    // A symmetric Hann window is zero at both ends: without centring the first sample is
    // covered by nothing but that zero (torch.istft refuses the same input).
    let config = StftConfig::new(256, 64)
        .with_window(Window::Hann, false)
        .with_center(false, PadMode::Reflect);
    let stft = Stft::new(config).expect("config");
    let spec = stft.process(&test_signal(2_000)).expect("stft");
    assert!(stft.inverse(&spec, None).is_err());
}

#[test]
fn thread_count_does_not_change_results() {
    // Long enough that the work is split (10 s: 1001 frames).
    let signal = test_signal(160_000);
    let config = MelSpectrogramConfig::whisper(80);
    let one = MelSpectrogram::new(config.clone())
        .expect("config")
        .with_threads(1);
    let four = MelSpectrogram::new(config).expect("config").with_threads(4);
    assert_eq!(
        one.compute(&signal).expect("mel"),
        four.compute(&signal).expect("mel")
    );
    let stft_one = Stft::new(StftConfig::new(512, 128))
        .expect("config")
        .with_threads(1);
    let stft_three = stft_one.clone().with_threads(3);
    assert_eq!(
        stft_one.process(&signal).expect("stft"),
        stft_three.process(&signal).expect("stft")
    );
}

#[test]
fn mel_spectrogram_is_stft_then_filterbank() {
    let signal = test_signal(8_000);
    let config = MelSpectrogramConfig::torchaudio(16_000, 512, 160, 64).with_power(1.0);
    let mel = MelSpectrogram::new(config.clone()).expect("config");
    let fused = mel.compute(&signal).expect("mel");
    let spec = Stft::new(config.stft)
        .expect("config")
        .process(&signal)
        .expect("stft");
    let bank = MelFilterbank::new(&config.mel).expect("bank");
    let separate = bank
        .apply(&spec.magnitude(), spec.n_frames())
        .expect("apply");
    let err = fused
        .data
        .iter()
        .zip(&separate)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0f32, f32::max);
    assert!(err < 1e-6, "{err}");
}

#[test]
fn whisper_drops_the_last_frame_and_clamps() {
    let signal = test_signal(16_000);
    let mel = MelSpectrogram::new(MelSpectrogramConfig::whisper(80)).expect("config");
    let features = mel.compute(&signal).expect("mel");
    // 16000 samples, hop 160, centred: 101 STFT frames, Whisper keeps 100.
    assert_eq!((features.n_mels, features.n_frames), (80, 100));
    let max = features.data.iter().copied().fold(f32::MIN, f32::max);
    let min = features.data.iter().copied().fold(f32::MAX, f32::min);
    assert!(max - min <= 2.0 + 1e-6, "dynamic range is clamped to 8 / 4");
}

#[test]
fn batch_and_tensor_forms_agree() {
    let a = test_signal(6_000);
    let b: Vec<f32> = a.iter().rev().copied().collect();
    let mel = MelSpectrogram::new(MelSpectrogramConfig::vocos_24khz()).expect("config");
    let single_a = mel.compute(&a).expect("mel");
    let single_b = mel.compute(&b).expect("mel");
    let batch = mel.compute_batch(&[&a, &b]).expect("batch");
    assert_eq!(batch, vec![single_a.clone(), single_b.clone()]);

    let device = Device::Cpu;
    let tensor = mel.batch_tensor(&[&a, &b], &device).expect("tensor");
    assert_eq!(tensor.dims(), &[2, 100, single_a.n_frames]);
    let row: Vec<f32> = tensor
        .get(1)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("values");
    assert_eq!(row, single_b.data);

    let input = Tensor::from_vec([a.clone(), b].concat(), (2, 6_000), &device).expect("input");
    let forward = mel.forward(&input).expect("forward");
    assert_eq!(forward.dims(), tensor.dims());
    let one = mel
        .forward(&Tensor::from_slice(&a, 6_000, &device).expect("input"))
        .expect("forward");
    assert_eq!(one.dims(), &[100, single_a.n_frames]);
    let bad = Tensor::zeros((1, 1, 10), candle_core::DType::F32, &device).expect("input");
    assert!(mel.forward(&bad).is_err());
}

#[test]
fn many_signals_in_a_batch_match_one_by_one() {
    let signals: Vec<Vec<f32>> = (0..5)
        .map(|i| {
            test_signal(40_000 + 7)
                .iter()
                .map(|v| v * (1.0 + i as f32 * 0.1))
                .collect()
        })
        .collect();
    let refs: Vec<&[f32]> = signals.iter().map(Vec::as_slice).collect();
    let mel = MelSpectrogram::new(MelSpectrogramConfig::whisper(80))
        .expect("config")
        .with_threads(2);
    let batch = mel.compute_batch(&refs).expect("batch");
    for (signal, features) in refs.iter().zip(&batch) {
        assert_eq!(&mel.compute(signal).expect("mel"), features);
    }
}

#[test]
fn mel_scales_round_trip() {
    for scale in [MelScale::Htk, MelScale::Slaney] {
        for hz in [0.0, 100.0, 999.0, 1_000.0, 1_001.0, 8_000.0, 22_050.0] {
            let back = mel_to_hz(hz_to_mel(hz, scale), scale);
            assert!((back - hz).abs() < 1e-9 * hz.max(1.0), "{scale:?} {hz}");
        }
    }
    // Slaney is linear below 1 kHz: 15 mels at 1 kHz.
    assert!((hz_to_mel(1_000.0, MelScale::Slaney) - 15.0).abs() < 1e-12);
    assert!((hz_to_mel(700.0, MelScale::Htk) - 2595.0 * 2f64.log10()).abs() < 1e-9);
}

#[test]
fn filterbank_shape_and_norm() {
    let bank = MelFilterbank::new(&MelConfig::new(16_000, 400, 80)).expect("bank");
    let dense = bank.to_dense();
    assert_eq!(dense.len(), 80 * 201);
    // Unnormalised triangles peak just below 1; ranges cover exactly the non-zero weights.
    for m in 0..80 {
        let row = &dense[m * 201..(m + 1) * 201];
        let nonzero: Vec<usize> = (0..201).filter(|&k| row[k] > 0.0).collect();
        let range = bank.range(m);
        assert_eq!(nonzero, range.clone().collect::<Vec<_>>(), "mel {m}");
        assert!(row.iter().all(|&w| w <= 1.0));
    }
    let tensor = bank.to_tensor(&Device::Cpu).expect("tensor");
    assert_eq!(tensor.dims(), &[80, 201]);

    // Slaney area normalisation: each triangle integrates (in Hz) to about 1.
    let config = MelConfig::librosa(16_000, 4096, 40);
    assert_eq!(config.norm, MelNorm::Slaney);
    let bank = MelFilterbank::new(&config).expect("bank");
    let bin_hz = 16_000.0 / 4096.0;
    for m in 0..40 {
        let area: f64 = bank.weights(m).iter().sum::<f64>() * bin_hz;
        assert!((area - 1.0).abs() < 0.02, "mel {m}: area {area}");
    }
    // Too many mels for the resolution leaves empty filters, reported rather than refused.
    let sparse = MelFilterbank::new(&MelConfig::new(16_000, 64, 128)).expect("bank");
    assert!(!sparse.empty_filters().is_empty());
}

#[test]
fn spectrogram_helpers() {
    let signal = test_signal(2_000);
    let spec = Stft::new(StftConfig::new(256, 64))
        .expect("config")
        .process(&signal)
        .expect("stft");
    let power = spec.power();
    let magnitude = spec.magnitude();
    for ((p, m), c) in power.iter().zip(&magnitude).zip(spec.data()) {
        assert!((p - m * m).abs() <= 1e-5 * p.max(1.0));
        assert!((m - c.norm()).abs() <= 1e-5 * m.max(1.0));
    }
    assert_eq!(spec.get(3, 4), Some(spec.data()[3 * spec.n_frames() + 4]));
    assert_eq!(spec.get(spec.n_freqs(), 0), None);
    let tensor = spec
        .magnitude_pow_tensor(2.0, &Device::Cpu)
        .expect("tensor");
    assert_eq!(tensor.dims(), &[129, spec.n_frames()]);
}

#[test]
fn padding_modes() {
    let x = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(
        pad(&x, 2, 3, PadMode::Reflect).expect("pad"),
        vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
    );
    assert_eq!(
        pad(&x, 2, 1, PadMode::Constant).expect("pad"),
        vec![0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0]
    );
    assert_eq!(
        pad(&x, 1, 2, PadMode::Replicate).expect("pad"),
        vec![1.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    );
    assert!(pad(&x, 4, 0, PadMode::Reflect).is_err());
    assert_eq!(PadMode::from_name("edge"), Some(PadMode::Replicate));
    assert_eq!(Window::from_name("hann_window"), Some(Window::Hann));
}

#[test]
fn db_recipe_applies_top_db_per_signal() {
    let mut signal = test_signal(8_000);
    signal[2_000..5_000].fill(0.0);
    let config = MelSpectrogramConfig::torchaudio(16_000, 400, 160, 40)
        .with_log(LogScale::power_db(Some(80.0)));
    let features = MelSpectrogram::new(config)
        .expect("config")
        .compute(&signal)
        .expect("mel");
    let max = features.data.iter().copied().fold(f32::MIN, f32::max);
    let min = features.data.iter().copied().fold(f32::MAX, f32::min);
    // The silent stretch would be -100 dB; top_db lifts it to max - 80.
    assert!((max - min - 80.0).abs() < 1e-3, "{max} {min}");
}
