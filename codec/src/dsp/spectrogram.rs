//! The complex result of an STFT.

use candle_core::{Device, Tensor};
use realfft::num_complex::Complex;
use tessera_core::{Error, Result};

/// A complex spectrogram, `[n_freqs, n_frames]` row-major (frequency-major, as torch lays out
/// `torch.stft`'s output): `data[f * n_frames + t]` is bin `f` of frame `t`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    n_freqs: usize,
    n_frames: usize,
    data: Vec<Complex<f32>>,
}

impl Spectrogram {
    pub fn new(n_freqs: usize, n_frames: usize, data: Vec<Complex<f32>>) -> Result<Self> {
        if n_freqs.checked_mul(n_frames) != Some(data.len()) {
            return Err(Error::invalid(format!(
                "spectrogram data has {} values, expected {n_freqs} x {n_frames}",
                data.len()
            )));
        }
        Ok(Spectrogram {
            n_freqs,
            n_frames,
            data,
        })
    }

    /// Builds a spectrogram from separate real and imaginary parts, each `[n_freqs, n_frames]`.
    pub fn from_parts(n_freqs: usize, n_frames: usize, re: &[f32], im: &[f32]) -> Result<Self> {
        if re.len() != im.len() {
            return Err(Error::invalid(format!(
                "real part has {} values, imaginary part {}",
                re.len(),
                im.len()
            )));
        }
        let data = re
            .iter()
            .zip(im)
            .map(|(&r, &i)| Complex::new(r, i))
            .collect();
        Self::new(n_freqs, n_frames, data)
    }

    pub fn n_freqs(&self) -> usize {
        self.n_freqs
    }

    pub fn n_frames(&self) -> usize {
        self.n_frames
    }

    pub fn data(&self) -> &[Complex<f32>] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [Complex<f32>] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<Complex<f32>> {
        self.data
    }

    /// Bin `freq` of frame `frame`, if both are in range.
    pub fn get(&self, freq: usize, frame: usize) -> Option<Complex<f32>> {
        (freq < self.n_freqs && frame < self.n_frames)
            .then(|| self.data[freq * self.n_frames + frame])
    }

    pub fn real(&self) -> Vec<f32> {
        self.data.iter().map(|c| c.re).collect()
    }

    pub fn imag(&self) -> Vec<f32> {
        self.data.iter().map(|c| c.im).collect()
    }

    /// `|X|`, computed in f64 to avoid the f32 overflow and rounding of `re² + im²`.
    pub fn magnitude(&self) -> Vec<f32> {
        self.data.iter().map(|&c| magnitude(c) as f32).collect()
    }

    /// `|X|²`.
    pub fn power(&self) -> Vec<f32> {
        self.data.iter().map(|&c| power(c) as f32).collect()
    }

    /// `|X|^exponent` (`1` magnitude, `2` power), as torchaudio's `Spectrogram(power=...)`.
    pub fn magnitude_pow(&self, exponent: f32) -> Vec<f32> {
        self.data
            .iter()
            .map(|&c| power(c).powf(exponent as f64 / 2.0) as f32)
            .collect()
    }

    /// `|X|^exponent` as a `[n_freqs, n_frames]` f32 tensor.
    pub fn magnitude_pow_tensor(&self, exponent: f32, device: &Device) -> Result<Tensor> {
        let values = self.magnitude_pow(exponent);
        Ok(Tensor::from_vec(
            values,
            (self.n_freqs, self.n_frames),
            device,
        )?)
    }
}

#[inline]
pub(crate) fn power(c: Complex<f32>) -> f64 {
    let (re, im) = (c.re as f64, c.im as f64);
    re * re + im * im
}

#[inline]
pub(crate) fn magnitude(c: Complex<f32>) -> f64 {
    power(c).sqrt()
}
