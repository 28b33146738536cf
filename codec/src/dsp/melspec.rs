//! Mel spectrograms and the log-mel recipes that audio models train on.

use candle_core::{DType, Device, Tensor};
use realfft::num_complex::Complex;
use tessera_core::{Error, Result};

use super::frames::run_chunked;
use super::mel::{MelConfig, MelFilterbank};
use super::stft::{Stft, StftConfig};

/// What is done to the mel energies after the filterbank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogScale {
    /// Raw mel energies (torchaudio `MelSpectrogram`).
    None,
    /// `ln(max(x, floor))`: HiFi-GAN, BigVGAN and most vocoders/codecs use `floor = 1e-5`
    /// (`torch.log(torch.clamp(x, min=1e-5))`), Vocos `1e-7`.
    Ln { floor: f32 },
    /// Decibels: `multiplier * log10(max(x, amin)) - multiplier * log10(max(amin, reference))`,
    /// then, with `top_db`, everything raised to at least `max - top_db` (the maximum over the
    /// whole spectrogram of one signal). This is torchaudio's `AmplitudeToDB` (`multiplier` 10 for
    /// `stype="power"`, 20 for `"magnitude"`, `amin = 1e-10`, `reference = 1`) and librosa's
    /// `power_to_db` / `amplitude_to_db`.
    Db {
        multiplier: f32,
        amin: f32,
        reference: f32,
        top_db: Option<f32>,
    },
    /// OpenAI Whisper's `log_mel_spectrogram`: drops the last STFT frame, `log10(max(x, 1e-10))`,
    /// raises everything to at least `max - 8`, then `(x + 4) / 4`. The maximum is taken per
    /// signal (as transformers' `WhisperFeatureExtractor` does; openai-whisper takes it over the
    /// whole batch tensor).
    Whisper,
}

impl LogScale {
    /// torchaudio `AmplitudeToDB(stype="power", top_db)` / librosa `power_to_db(ref=1.0)`.
    pub fn power_db(top_db: Option<f32>) -> Self {
        LogScale::Db {
            multiplier: 10.0,
            amin: 1e-10,
            reference: 1.0,
            top_db,
        }
    }

    /// torchaudio `AmplitudeToDB(stype="magnitude", top_db)`.
    pub fn magnitude_db(top_db: Option<f32>) -> Self {
        LogScale::Db {
            multiplier: 20.0,
            amin: 1e-10,
            reference: 1.0,
            top_db,
        }
    }

    fn validate(&self) -> Result<()> {
        match *self {
            LogScale::None | LogScale::Whisper => Ok(()),
            LogScale::Ln { floor } if floor > 0.0 && floor.is_finite() => Ok(()),
            LogScale::Ln { floor } => Err(Error::config(format!(
                "log floor must be a positive number, got {floor}"
            ))),
            LogScale::Db {
                multiplier,
                amin,
                reference,
                top_db,
            } => {
                if !(amin > 0.0 && amin.is_finite()) {
                    return Err(Error::config(format!("amin must be positive, got {amin}")));
                }
                if !(reference > 0.0 && reference.is_finite()) {
                    return Err(Error::config(format!(
                        "dB reference must be positive, got {reference}"
                    )));
                }
                if !multiplier.is_finite() {
                    return Err(Error::config("dB multiplier must be finite"));
                }
                match top_db {
                    Some(t) if !(t >= 0.0 && t.is_finite()) => Err(Error::config(format!(
                        "top_db must be a non-negative number, got {t}"
                    ))),
                    _ => Ok(()),
                }
            }
        }
    }

    /// The part of the recipe that maps one mel energy on its own.
    #[inline]
    fn pointwise(&self, x: f64) -> f64 {
        match *self {
            LogScale::None => x,
            LogScale::Ln { floor } => x.max(floor as f64).ln(),
            LogScale::Db {
                multiplier,
                amin,
                reference,
                ..
            } => {
                let (multiplier, amin) = (multiplier as f64, amin as f64);
                multiplier * log10(x.max(amin)) - multiplier * amin.max(reference as f64).log10()
            }
            LogScale::Whisper => log10(x.max(1e-10)),
        }
    }

    /// STFT frames that the recipe drops from the end.
    fn dropped_frames(&self) -> usize {
        match self {
            LogScale::Whisper => 1,
            _ => 0,
        }
    }

    /// The part of the recipe that needs the whole spectrogram of one signal.
    fn finish(&self, values: &mut [f32]) {
        let max = || values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        match *self {
            LogScale::Db {
                top_db: Some(top_db),
                ..
            } => {
                let floor = max() - top_db;
                values.iter_mut().for_each(|v| *v = v.max(floor));
            }
            LogScale::Whisper => {
                let floor = max() - 8.0;
                values
                    .iter_mut()
                    .for_each(|v| *v = (v.max(floor) + 4.0) / 4.0);
            }
            _ => {}
        }
    }
}

/// A mel spectrogram recipe: STFT, `|X|^power`, mel filterbank, log scale.
#[derive(Debug, Clone, PartialEq)]
pub struct MelSpectrogramConfig {
    pub stft: StftConfig,
    /// Its `n_fft` must equal `stft.n_fft`.
    pub mel: MelConfig,
    /// Exponent of the magnitude: 1 (magnitude) or 2 (power); any positive value works.
    pub power: f32,
    pub log: LogScale,
}

impl MelSpectrogramConfig {
    /// torchaudio `MelSpectrogram(sample_rate, n_fft, hop_length=hop_length, n_mels=n_mels)`:
    /// periodic Hann, centred with reflect padding, power 2, HTK mel without normalisation, no
    /// log.
    pub fn torchaudio(sample_rate: u32, n_fft: usize, hop_length: usize, n_mels: usize) -> Self {
        MelSpectrogramConfig {
            stft: StftConfig::new(n_fft, hop_length),
            mel: MelConfig::new(sample_rate, n_fft, n_mels),
            power: 2.0,
            log: LogScale::None,
        }
    }

    /// OpenAI Whisper's features (`n_mels` 80, or 128 for large-v3): 16 kHz, n_fft 400,
    /// hop 160, librosa's Slaney mel filters, power 2, [`LogScale::Whisper`].
    pub fn whisper(n_mels: usize) -> Self {
        MelSpectrogramConfig {
            stft: StftConfig::new(400, 160),
            mel: MelConfig::librosa(16_000, 400, n_mels),
            power: 2.0,
            log: LogScale::Whisper,
        }
    }

    /// Vocos' `MelSpectrogramFeatures` (24 kHz model: n_fft 1024, hop 256, 100 mels,
    /// `padding="center"`): torchaudio mel with power 1, then `ln(max(x, 1e-7))`.
    pub fn vocos_24khz() -> Self {
        MelSpectrogramConfig {
            power: 1.0,
            log: LogScale::Ln { floor: 1e-7 },
            ..Self::torchaudio(24_000, 1024, 256, 100)
        }
    }

    pub fn with_power(mut self, power: f32) -> Self {
        self.power = power;
        self
    }

    pub fn with_log(mut self, log: LogScale) -> Self {
        self.log = log;
        self
    }

    pub fn validate(&self) -> Result<()> {
        self.stft.validate()?;
        self.mel.validate()?;
        if self.mel.n_fft != self.stft.n_fft {
            return Err(Error::config(format!(
                "mel n_fft ({}) differs from STFT n_fft ({})",
                self.mel.n_fft, self.stft.n_fft
            )));
        }
        if !self.stft.onesided {
            return Err(Error::config(
                "a mel spectrogram needs a one-sided STFT (onesided = true)",
            ));
        }
        if !(self.power > 0.0 && self.power.is_finite()) {
            return Err(Error::config(format!(
                "power must be a positive number, got {}",
                self.power
            )));
        }
        self.log.validate()
    }
}

/// Mel features of one signal, `[n_mels, n_frames]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct MelFeatures {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}

impl MelFeatures {
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.data,
            (self.n_mels, self.n_frames),
            device,
        )?)
    }
}

/// A planned mel spectrogram: the FFT plan, window and filterbank are built once.
#[derive(Debug, Clone)]
pub struct MelSpectrogram {
    config: MelSpectrogramConfig,
    stft: Stft,
    filterbank: MelFilterbank,
}

impl MelSpectrogram {
    pub fn new(config: MelSpectrogramConfig) -> Result<Self> {
        config.validate()?;
        let stft = Stft::new(config.stft.clone())?;
        let filterbank = MelFilterbank::new(&config.mel)?;
        Ok(MelSpectrogram {
            config,
            stft,
            filterbank,
        })
    }

    /// Use up to `threads` threads per call (the default is the available parallelism).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.stft = self.stft.with_threads(threads);
        self
    }

    pub fn config(&self) -> &MelSpectrogramConfig {
        &self.config
    }

    pub fn stft(&self) -> &Stft {
        &self.stft
    }

    pub fn filterbank(&self) -> &MelFilterbank {
        &self.filterbank
    }

    pub fn n_mels(&self) -> usize {
        self.filterbank.n_mels()
    }

    /// Output frames for a signal of `len` samples.
    pub fn n_frames(&self, len: usize) -> Result<usize> {
        let frames = self.stft.n_frames(len)?;
        let dropped = self.config.log.dropped_frames();
        if frames <= dropped {
            return Err(Error::invalid(format!(
                "signal of {len} samples gives {frames} STFT frame(s), too few for this recipe"
            )));
        }
        Ok(frames - dropped)
    }

    pub fn compute(&self, signal: &[f32]) -> Result<MelFeatures> {
        self.compute_with(signal, &self.stft)
    }

    fn compute_with(&self, signal: &[f32], stft: &Stft) -> Result<MelFeatures> {
        let n_frames = self.n_frames(signal.len())?;
        let n_mels = self.n_mels();
        let n_freqs = self.filterbank.n_freqs();
        let power = self.config.power;
        let log = self.config.log;
        let filterbank = &self.filterbank;

        let mut data = vec![0.0f32; n_mels * n_frames];
        stft.map_frames(
            signal,
            n_frames,
            n_mels,
            &mut data,
            |spectrum, work: &mut FrameWork, rows, j| {
                work.magnitudes.resize(n_freqs, 0.0);
                work.sums.resize(n_mels, 0.0);
                magnitude_pow(spectrum, power, &mut work.magnitudes);
                filterbank.apply_frame(&work.magnitudes, &mut work.sums);
                for (row, &sum) in rows.iter_mut().zip(&work.sums) {
                    row[j] = log.pointwise(sum) as f32;
                }
            },
        )?;
        log.finish(&mut data);
        Ok(MelFeatures {
            n_mels,
            n_frames,
            data,
        })
    }

    /// Features of one signal as a `[n_mels, n_frames]` f32 tensor on `device`.
    pub fn tensor(&self, signal: &[f32], device: &Device) -> Result<Tensor> {
        self.compute(signal)?.to_tensor(device)
    }

    /// Features of several signals, each computed on its own (per-signal maxima for the recipes
    /// that use one). With at least as many signals as threads, each thread takes whole signals.
    pub fn compute_batch(&self, signals: &[&[f32]]) -> Result<Vec<MelFeatures>> {
        if signals.len() < self.stft.threads() {
            return signals.iter().map(|s| self.compute(s)).collect();
        }
        let single = self.stft.clone().with_threads(1);
        let longest = signals.iter().map(|s| s.len()).max().unwrap_or(0);
        let work_per_item = longest / self.config.stft.hop_length * self.config.stft.n_fft;
        let mut results: Vec<Option<MelFeatures>> = vec![None; signals.len()];
        run_chunked(
            &mut results,
            1,
            self.stft.threads(),
            work_per_item,
            |first, chunk| {
                for (i, slot) in chunk.iter_mut().enumerate() {
                    *slot = Some(self.compute_with(signals[first + i], &single)?);
                }
                Ok(())
            },
        )?;
        Ok(results.into_iter().flatten().collect())
    }

    /// `[batch, n_mels, n_frames]` for signals of the same length.
    pub fn batch_tensor(&self, signals: &[&[f32]], device: &Device) -> Result<Tensor> {
        let Some(first) = signals.first() else {
            return Err(Error::invalid("empty batch"));
        };
        if let Some(other) = signals.iter().find(|s| s.len() != first.len()) {
            return Err(Error::invalid(format!(
                "batch signals must have the same length, got {} and {}",
                first.len(),
                other.len()
            )));
        }
        let features = self.compute_batch(signals)?;
        let n_frames = self.n_frames(first.len())?;
        let data: Vec<f32> = features.into_iter().flat_map(|f| f.data).collect();
        Ok(Tensor::from_vec(
            data,
            (signals.len(), self.n_mels(), n_frames),
            device,
        )?)
    }

    /// Features of a waveform tensor: `[time]` gives `[n_mels, frames]`, `[batch, time]` gives
    /// `[batch, n_mels, frames]`. Computed on the CPU; the result goes to `x`'s device.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let cpu = x.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        match *x.dims() {
            [_] => self.tensor(&cpu.to_vec1::<f32>()?, x.device()),
            [_, _] => {
                let rows = cpu.to_vec2::<f32>()?;
                let signals: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
                self.batch_tensor(&signals, x.device())
            }
            ref dims => Err(Error::invalid(format!(
                "mel spectrogram input must be [time] or [batch, time], got {dims:?}"
            ))),
        }
    }
}

/// `log10` as `ln / ln 10`: glibc's `log10` costs about twice its `ln`, and the extra rounding
/// (an ulp of f64) vanishes in the f32 output.
#[inline]
fn log10(x: f64) -> f64 {
    x.ln() * std::f64::consts::LOG10_E
}

/// Per-worker buffers of the mel hot loop.
#[derive(Default)]
struct FrameWork {
    /// `|X|^power` of one frame.
    magnitudes: Vec<f64>,
    /// Mel sums of one frame, accumulated in f64.
    sums: Vec<f64>,
}

/// `out[k] = |spectrum[k]|^power`.
#[inline]
fn magnitude_pow(spectrum: &[Complex<f64>], power: f32, out: &mut [f64]) {
    let squares = spectrum.iter().map(|c| c.re * c.re + c.im * c.im);
    if power == 2.0 {
        out.iter_mut().zip(squares).for_each(|(o, s)| *o = s);
    } else if power == 1.0 {
        // f32 square roots are several times cheaper than f64 ones and their 6e-8 relative error
        // is far below what the f32 output keeps anyway; the power itself stays f64.
        out.iter_mut()
            .zip(squares)
            .for_each(|(o, s)| *o = (s as f32).sqrt() as f64);
    } else {
        let half = power as f64 / 2.0;
        out.iter_mut()
            .zip(squares)
            .for_each(|(o, s)| *o = s.powf(half));
    }
}
