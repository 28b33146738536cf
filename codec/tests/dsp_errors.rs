//! Bad configurations and inputs are errors, never panics.

use tessera_codec::dsp::{
    LogScale, MelConfig, MelConvention, MelFilterbank, MelSpectrogram, MelSpectrogramConfig,
    PadMode, Spectrogram, Stft, StftConfig, istft, stft,
};
use tessera_core::Error;

fn is_config(result: Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(result, Err(Error::Config(_)))
}

fn is_invalid(result: Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(result, Err(Error::Invalid(_)))
}

#[test]
fn bad_stft_configs() {
    assert!(is_config(Stft::new(StftConfig::new(0, 10))));
    assert!(is_config(Stft::new(StftConfig::new(400, 0))));
    assert!(is_config(Stft::new(
        StftConfig::new(400, 100).with_win_length(401)
    )));
    assert!(is_config(Stft::new(
        StftConfig::new(400, 100).with_win_length(0)
    )));
    assert!(is_config(Stft::new(StftConfig::new(usize::MAX, 100))));
    assert!(is_config(Stft::with_window(
        StftConfig::new(8, 2),
        vec![1.0; 7]
    )));
    assert!(is_config(Stft::with_window(
        StftConfig::new(4, 2),
        vec![1.0, f32::NAN, 1.0, 1.0]
    )));
    assert!(is_config(stft(&[0.0; 100], &StftConfig::new(16, 0))));
}

#[test]
fn signals_too_short() {
    let stft = Stft::new(StftConfig::new(400, 160)).expect("config");
    // Reflect padding of 200 needs more than 200 samples.
    assert!(is_invalid(stft.process(&[0.1; 200])));
    assert!(stft.process(&[0.1; 201]).is_ok());
    assert!(is_invalid(stft.process(&[])));
    // Without centring a frame needs n_fft samples.
    let uncentered =
        Stft::new(StftConfig::new(400, 160).with_center(false, PadMode::Reflect)).expect("config");
    assert!(is_invalid(uncentered.process(&[0.1; 399])));
    assert_eq!(
        uncentered
            .process(&[0.1; 400])
            .expect("one frame")
            .n_frames(),
        1
    );
    // Constant padding works on any non-empty signal that fills a frame once padded.
    let constant =
        Stft::new(StftConfig::new(400, 160).with_center(true, PadMode::Constant)).expect("config");
    assert_eq!(constant.process(&[0.1; 3]).expect("stft").n_frames(), 1);
    let mel = MelSpectrogram::new(MelSpectrogramConfig::whisper(80)).expect("config");
    assert!(is_invalid(mel.compute(&[0.1; 150])));
    // 201 samples give 2 STFT frames, and Whisper drops the last one.
    assert_eq!(mel.compute(&[0.1; 201]).expect("mel").n_frames, 1);
    // With constant padding 100 samples make a single frame, which leaves Whisper nothing.
    let mut config = MelSpectrogramConfig::whisper(80);
    config.stft.pad_mode = PadMode::Constant;
    let constant_whisper = MelSpectrogram::new(config).expect("config");
    assert!(is_invalid(constant_whisper.compute(&[0.1; 100])));
}

#[test]
fn bad_mel_configs() {
    let base = MelConfig::new(16_000, 400, 80);
    assert!(MelFilterbank::new(&base).is_ok());
    let bad = [
        MelConfig {
            n_mels: 0,
            ..base.clone()
        },
        MelConfig {
            n_fft: 0,
            ..base.clone()
        },
        MelConfig {
            sample_rate: 0,
            ..base.clone()
        },
        base.clone().with_range(4_000.0, Some(4_000.0)),
        base.clone().with_range(5_000.0, Some(4_000.0)),
        base.clone().with_range(0.0, Some(8_000.5)),
        base.clone().with_range(-1.0, None),
        base.clone().with_range(f64::NAN, None),
        base.clone().with_range(0.0, Some(f64::INFINITY)),
        base.clone().with_range(8_000.0, None),
    ];
    for config in bad {
        assert!(is_config(MelFilterbank::new(&config)), "{config:?}");
    }
    // An odd sample rate: librosa's Nyquist is sr / 2, torchaudio's default is sr // 2.
    let odd = MelConfig::new(22_051, 512, 40);
    assert_eq!(odd.resolved_f_max(), 11_025.0);
    let odd = odd.with_convention(MelConvention::Librosa);
    assert_eq!(odd.resolved_f_max(), 11_025.5);
    assert!(MelFilterbank::new(&odd).is_ok());
}

#[test]
fn bad_mel_spectrogram_configs() {
    let base = MelSpectrogramConfig::torchaudio(16_000, 400, 160, 80);
    assert!(MelSpectrogram::new(base.clone()).is_ok());
    let mut mismatched = base.clone();
    mismatched.mel.n_fft = 512;
    let mut twosided = base.clone();
    twosided.stft.onesided = false;
    let bad = [
        mismatched,
        twosided,
        base.clone().with_power(0.0),
        base.clone().with_power(f32::NAN),
        base.clone().with_log(LogScale::Ln { floor: 0.0 }),
        base.clone().with_log(LogScale::Ln { floor: -1.0 }),
        base.clone().with_log(LogScale::Db {
            multiplier: 10.0,
            amin: 0.0,
            reference: 1.0,
            top_db: None,
        }),
        base.clone().with_log(LogScale::Db {
            multiplier: 10.0,
            amin: 1e-10,
            reference: 0.0,
            top_db: None,
        }),
        base.clone().with_log(LogScale::power_db(Some(-1.0))),
    ];
    for config in bad {
        assert!(is_config(MelSpectrogram::new(config.clone())), "{config:?}");
    }
}

#[test]
fn bad_inverse_inputs() {
    let config = StftConfig::new(64, 16);
    let signal: Vec<f32> = (0..500).map(|i| (i as f32 * 0.1).sin()).collect();
    let spec = stft(&signal, &config).expect("stft");
    // Wrong number of bins for this configuration.
    assert!(is_invalid(istft(&spec, &StftConfig::new(128, 16), None)));
    let empty = Spectrogram::new(33, 0, Vec::new()).expect("empty spectrogram");
    assert!(is_invalid(istft(&empty, &config, None)));
    assert!(is_invalid(Spectrogram::new(33, 2, Vec::new())));
    assert!(is_invalid(Spectrogram::from_parts(
        1,
        2,
        &[0.0, 1.0],
        &[0.0]
    )));
    let mel = MelSpectrogram::new(MelSpectrogramConfig::vocos_24khz()).expect("config");
    assert!(is_invalid(mel.batch_tensor(
        &[&[0.0; 3000], &[0.0; 3001]],
        &candle_core::Device::Cpu
    )));
    // Separate features may differ in length; a signal too short is still an error.
    assert_eq!(
        mel.compute_batch(&[&[0.0; 3000], &[0.0; 3001]])
            .expect("batch")
            .len(),
        2
    );
    assert!(is_invalid(mel.compute_batch(&[&[0.0; 3000], &[0.0; 10]])));
    assert!(is_invalid(mel.batch_tensor(&[], &candle_core::Device::Cpu)));
    let bank = MelFilterbank::new(&MelConfig::new(24_000, 1024, 100)).expect("bank");
    assert!(is_invalid(bank.apply(&[0.0; 10], 3)));
}
