//! Mel filterbanks, as `torchaudio.functional.melscale_fbanks` and `librosa.filters.mel` make
//! them.

use std::ops::Range;

use candle_core::{Device, Tensor};
use tessera_core::{Error, Result};

/// The Hz <-> mel mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MelScale {
    /// `2595 log10(1 + f / 700)` (torchaudio's default, librosa `htk=True`).
    #[default]
    Htk,
    /// Slaney's Auditory Toolbox: linear below 1 kHz, logarithmic above (librosa's default,
    /// torchaudio `mel_scale="slaney"`).
    Slaney,
}

/// Filter normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MelNorm {
    /// Triangles peak at 1 (torchaudio's default, librosa `norm=None`).
    #[default]
    None,
    /// Each triangle divided by half its width in Hz, so every filter has the same area
    /// (librosa's default `norm="slaney"`, torchaudio `norm="slaney"`).
    Slaney,
}

/// Which library's conventions fill in the details the two disagree on. They give identical
/// filters when `n_fft` and the sample rate are even and `f_max` is explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MelConvention {
    /// `torchaudio.functional.melscale_fbanks`: FFT bin `k` sits at
    /// `k * (sample_rate // 2) / (n_freqs - 1)` Hz and `f_max` defaults to `sample_rate // 2`.
    #[default]
    Torchaudio,
    /// `librosa.filters.mel`: bin `k` sits at `k * sample_rate / n_fft` Hz and `f_max` defaults
    /// to `sample_rate / 2`.
    Librosa,
}

/// Parameters of a mel filterbank over the one-sided spectrum of an `n_fft`-point FFT.
#[derive(Debug, Clone, PartialEq)]
pub struct MelConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub n_mels: usize,
    pub f_min: f64,
    /// `None`: the Nyquist frequency (as the convention defines it).
    pub f_max: Option<f64>,
    pub scale: MelScale,
    pub norm: MelNorm,
    pub convention: MelConvention,
}

impl MelConfig {
    /// torchaudio's defaults: HTK scale, no normalisation, 0 Hz to Nyquist.
    pub fn new(sample_rate: u32, n_fft: usize, n_mels: usize) -> Self {
        MelConfig {
            sample_rate,
            n_fft,
            n_mels,
            f_min: 0.0,
            f_max: None,
            scale: MelScale::Htk,
            norm: MelNorm::None,
            convention: MelConvention::Torchaudio,
        }
    }

    /// librosa's defaults: Slaney scale, Slaney normalisation, 0 Hz to Nyquist.
    pub fn librosa(sample_rate: u32, n_fft: usize, n_mels: usize) -> Self {
        MelConfig {
            scale: MelScale::Slaney,
            norm: MelNorm::Slaney,
            convention: MelConvention::Librosa,
            ..Self::new(sample_rate, n_fft, n_mels)
        }
    }

    pub fn with_range(mut self, f_min: f64, f_max: Option<f64>) -> Self {
        self.f_min = f_min;
        self.f_max = f_max;
        self
    }

    pub fn with_scale(mut self, scale: MelScale, norm: MelNorm) -> Self {
        self.scale = scale;
        self.norm = norm;
        self
    }

    pub fn with_convention(mut self, convention: MelConvention) -> Self {
        self.convention = convention;
        self
    }

    pub fn n_freqs(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// `f_max` with its default filled in.
    pub fn resolved_f_max(&self) -> f64 {
        self.f_max.unwrap_or(match self.convention {
            MelConvention::Torchaudio => (self.sample_rate / 2) as f64,
            MelConvention::Librosa => self.sample_rate as f64 / 2.0,
        })
    }

    pub fn validate(&self) -> Result<()> {
        if self.sample_rate == 0 {
            return Err(Error::config("mel sample_rate must be positive"));
        }
        if self.n_fft == 0 {
            return Err(Error::config("mel n_fft must be positive"));
        }
        if self.n_mels == 0 || self.n_mels > MAX_N_MELS {
            return Err(Error::config(format!(
                "n_mels must be in 1..={MAX_N_MELS}, got {}",
                self.n_mels
            )));
        }
        if self.n_fft > MAX_N_FFT {
            return Err(Error::config(format!(
                "mel n_fft must be at most {MAX_N_FFT}, got {}",
                self.n_fft
            )));
        }
        let (f_min, f_max) = (self.f_min, self.resolved_f_max());
        let nyquist = self.sample_rate as f64 / 2.0;
        if !f_min.is_finite() || f_min < 0.0 {
            return Err(Error::config(format!(
                "f_min must be a non-negative number, got {f_min}"
            )));
        }
        if !f_max.is_finite() || f_max > nyquist {
            return Err(Error::config(format!(
                "f_max must be at most the Nyquist frequency {nyquist} Hz, got {f_max}"
            )));
        }
        if f_min >= f_max {
            return Err(Error::config(format!(
                "f_min ({f_min} Hz) must be below f_max ({f_max} Hz)"
            )));
        }
        Ok(())
    }

    /// The centre frequency (Hz) of every FFT bin under this convention.
    fn bin_frequencies(&self) -> Vec<f64> {
        let n_freqs = self.n_freqs();
        match self.convention {
            MelConvention::Torchaudio => {
                let top = (self.sample_rate / 2) as f64;
                let steps = (n_freqs.max(2) - 1) as f64;
                (0..n_freqs).map(|k| top * k as f64 / steps).collect()
            }
            MelConvention::Librosa => {
                let step = self.sample_rate as f64 / self.n_fft as f64;
                (0..n_freqs).map(|k| k as f64 * step).collect()
            }
        }
    }
}

/// Bounds that catch mistyped configs before they allocate.
const MAX_N_MELS: usize = 1 << 14;
const MAX_N_FFT: usize = 1 << 20;

const SLANEY_F_SP: f64 = 200.0 / 3.0;
const SLANEY_MIN_LOG_HZ: f64 = 1000.0;
const SLANEY_MIN_LOG_MEL: f64 = SLANEY_MIN_LOG_HZ / SLANEY_F_SP;

fn slaney_log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Hz to mel on `scale`.
pub fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Slaney if hz >= SLANEY_MIN_LOG_HZ => {
            SLANEY_MIN_LOG_MEL + (hz / SLANEY_MIN_LOG_HZ).ln() / slaney_log_step()
        }
        MelScale::Slaney => hz / SLANEY_F_SP,
    }
}

/// Mel to Hz on `scale` (the inverse of [`hz_to_mel`]).
pub fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney if mel >= SLANEY_MIN_LOG_MEL => {
            SLANEY_MIN_LOG_HZ * (slaney_log_step() * (mel - SLANEY_MIN_LOG_MEL)).exp()
        }
        MelScale::Slaney => SLANEY_F_SP * mel,
    }
}

/// A mel filterbank, kept sparse: filter `m` is non-zero only on FFT bins `ranges[m]`.
///
/// Weights are computed in f64 and kept in f64, so applying the bank to an f32 spectrum adds no
/// error beyond the final rounding.
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilterbank {
    config: MelConfig,
    ranges: Vec<Range<usize>>,
    /// Start of filter `m`'s weights in `weights`.
    offsets: Vec<usize>,
    weights: Vec<f64>,
}

impl MelFilterbank {
    pub fn new(config: &MelConfig) -> Result<Self> {
        config.validate()?;
        let n_mels = config.n_mels;
        let scale = config.scale;
        let mel_min = hz_to_mel(config.f_min, scale);
        let mel_max = hz_to_mel(config.resolved_f_max(), scale);
        // n_mels + 2 points: filter m rises from point m to m + 1 and falls to m + 2.
        let points: Vec<f64> = (0..n_mels + 2)
            .map(|i| {
                let mel = mel_min + (mel_max - mel_min) * i as f64 / (n_mels + 1) as f64;
                mel_to_hz(mel, scale)
            })
            .collect();
        let freqs = config.bin_frequencies();

        let mut ranges = Vec::with_capacity(n_mels);
        let mut offsets = Vec::with_capacity(n_mels);
        let mut weights = Vec::new();
        for m in 0..n_mels {
            let (lower, centre, upper) = (points[m], points[m + 1], points[m + 2]);
            let gain = match config.norm {
                MelNorm::None => 1.0,
                MelNorm::Slaney => 2.0 / (upper - lower),
            };
            let triangle = |f: f64| {
                let rising = (f - lower) / (centre - lower);
                let falling = (upper - f) / (upper - centre);
                rising.min(falling).max(0.0)
            };
            let first = freqs.iter().position(|&f| triangle(f) > 0.0);
            let range = match first {
                Some(start) => {
                    let len = freqs[start..]
                        .iter()
                        .take_while(|&&f| triangle(f) > 0.0)
                        .count();
                    start..start + len
                }
                None => 0..0,
            };
            offsets.push(weights.len());
            weights.extend(freqs[range.clone()].iter().map(|&f| triangle(f) * gain));
            ranges.push(range);
        }
        Ok(MelFilterbank {
            config: config.clone(),
            ranges,
            offsets,
            weights,
        })
    }

    pub fn config(&self) -> &MelConfig {
        &self.config
    }

    pub fn n_mels(&self) -> usize {
        self.config.n_mels
    }

    pub fn n_freqs(&self) -> usize {
        self.config.n_freqs()
    }

    /// The FFT bins where filter `mel` is non-zero (empty for a filter that falls between bins).
    ///
    /// Panics if `mel >= n_mels`.
    pub fn range(&self, mel: usize) -> Range<usize> {
        self.ranges[mel].clone()
    }

    /// The non-zero weights of filter `mel`, one per bin of [`MelFilterbank::range`].
    ///
    /// Panics if `mel >= n_mels`.
    pub fn weights(&self, mel: usize) -> &[f64] {
        &self.weights[self.offsets[mel]..self.offsets[mel] + self.ranges[mel].len()]
    }

    /// Filters with no non-zero weight (too many mels for the FFT resolution); torchaudio and
    /// librosa warn about them and keep them.
    pub fn empty_filters(&self) -> Vec<usize> {
        (0..self.n_mels())
            .filter(|&m| self.ranges[m].is_empty())
            .collect()
    }

    /// The dense matrix `[n_mels, n_freqs]` (librosa's layout; torchaudio's is its transpose).
    pub fn to_dense(&self) -> Vec<f32> {
        let n_freqs = self.n_freqs();
        let mut dense = vec![0.0f32; self.n_mels() * n_freqs];
        for (m, row) in dense.chunks_exact_mut(n_freqs).enumerate() {
            for (out, &w) in row[self.ranges[m].clone()].iter_mut().zip(self.weights(m)) {
                *out = w as f32;
            }
        }
        dense
    }

    /// The dense matrix as a `[n_mels, n_freqs]` f32 tensor.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.to_dense(),
            (self.n_mels(), self.n_freqs()),
            device,
        )?)
    }

    /// `out[m] = sum_k weights[m][k] * spectrum[k]` over one frame's `n_freqs` values.
    #[inline]
    pub(crate) fn apply_frame(&self, spectrum: &[f64], out: &mut [f64]) {
        for (m, out) in out.iter_mut().enumerate().take(self.n_mels()) {
            *out = dot(&spectrum[self.ranges[m].clone()], self.weights(m));
        }
    }

    /// Applies the bank to a `[n_freqs, n_frames]` spectrogram (power or magnitude), giving
    /// `[n_mels, n_frames]`.
    pub fn apply(&self, spectrogram: &[f32], n_frames: usize) -> Result<Vec<f32>> {
        let n_freqs = self.n_freqs();
        if spectrogram.len() != n_freqs * n_frames {
            return Err(Error::invalid(format!(
                "spectrogram has {} values, expected {n_freqs} x {n_frames}",
                spectrogram.len()
            )));
        }
        let mut out = vec![0.0f32; self.n_mels() * n_frames];
        let mut acc = vec![0.0f64; n_frames];
        for (m, row) in out.chunks_exact_mut(n_frames.max(1)).enumerate() {
            acc.fill(0.0);
            for (k, &w) in self.ranges[m].clone().zip(self.weights(m)) {
                let bin = &spectrogram[k * n_frames..(k + 1) * n_frames];
                for (a, &x) in acc.iter_mut().zip(bin) {
                    *a += x as f64 * w;
                }
            }
            for (o, &a) in row.iter_mut().zip(&acc) {
                *o = a as f32;
            }
        }
        Ok(out)
    }
}

/// A dot product with four independent accumulators: a single running sum is one long chain of
/// dependent additions, which made the mel projection cost as much as the FFT.
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let (a4, a_rest) = a.split_at(a.len() - a.len() % 4);
    let (b4, b_rest) = b.split_at(a4.len());
    for (x, y) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
        for lane in 0..4 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let tail: f64 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]) + tail
}
