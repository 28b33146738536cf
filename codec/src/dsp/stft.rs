//! Short-time Fourier transform and its inverse, with the semantics of `torch.stft` and
//! `torch.istft`.

use std::ops::Range;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use tessera_core::{Error, Result};

use super::frames::run_columns;
use super::pad::PadMode;
use super::spectrogram::Spectrogram;
use super::window::{Window, WindowPrecision, window_with};

/// Largest FFT size and hop accepted, so that a mistyped config fails before allocating.
const MAX_N_FFT: usize = 1 << 20;
const MAX_HOP: usize = 1 << 24;

/// `torch.istft` refuses to divide by an overlap-add window envelope smaller than this.
const MIN_ENVELOPE: f64 = 1e-11;

/// STFT parameters, named and defaulted as in `torch.stft`.
#[derive(Debug, Clone, PartialEq)]
pub struct StftConfig {
    /// FFT size (frame length after zero-padding the window).
    pub n_fft: usize,
    /// Samples between the starts of consecutive frames.
    pub hop_length: usize,
    /// Window length; a window shorter than `n_fft` is zero-padded on both sides (centred).
    pub win_length: usize,
    pub window: Window,
    /// Periodic (torch's default) or symmetric window; see [`crate::dsp::window`].
    pub periodic: bool,
    /// torch's f32 window values or exact f64 ones (librosa).
    pub window_precision: WindowPrecision,
    /// Pad `n_fft / 2` samples on both sides so that frame `t` is centred on sample
    /// `t * hop_length`.
    pub center: bool,
    /// How the `center` padding is made.
    pub pad_mode: PadMode,
    /// Multiply the transform by `1 / sqrt(n_fft)` (torch's `normalized=True`).
    pub normalized: bool,
    /// Keep only the `n_fft / 2 + 1` non-negative frequencies.
    pub onesided: bool,
}

impl StftConfig {
    /// A periodic-Hann STFT with `win_length = n_fft`, centred with reflect padding, one-sided and
    /// not normalised: what torchaudio's `Spectrogram` and most audio models use.
    pub fn new(n_fft: usize, hop_length: usize) -> Self {
        StftConfig {
            n_fft,
            hop_length,
            win_length: n_fft,
            window: Window::Hann,
            periodic: true,
            window_precision: WindowPrecision::Torch,
            center: true,
            pad_mode: PadMode::Reflect,
            normalized: false,
            onesided: true,
        }
    }

    pub fn with_win_length(mut self, win_length: usize) -> Self {
        self.win_length = win_length;
        self
    }

    pub fn with_window(mut self, window: Window, periodic: bool) -> Self {
        self.window = window;
        self.periodic = periodic;
        self
    }

    pub fn with_window_precision(mut self, precision: WindowPrecision) -> Self {
        self.window_precision = precision;
        self
    }

    pub fn with_center(mut self, center: bool, pad_mode: PadMode) -> Self {
        self.center = center;
        self.pad_mode = pad_mode;
        self
    }

    pub fn with_normalized(mut self, normalized: bool) -> Self {
        self.normalized = normalized;
        self
    }

    pub fn with_onesided(mut self, onesided: bool) -> Self {
        self.onesided = onesided;
        self
    }

    /// Frequency bins per frame: `n_fft / 2 + 1` one-sided, `n_fft` otherwise.
    pub fn n_freqs(&self) -> usize {
        if self.onesided {
            self.n_fft / 2 + 1
        } else {
            self.n_fft
        }
    }

    /// Padding added on each side of the signal.
    pub fn center_pad(&self) -> usize {
        if self.center { self.n_fft / 2 } else { 0 }
    }

    pub fn validate(&self) -> Result<()> {
        if self.n_fft == 0 || self.n_fft > MAX_N_FFT {
            return Err(Error::config(format!(
                "n_fft must be in 1..={MAX_N_FFT}, got {}",
                self.n_fft
            )));
        }
        if self.hop_length == 0 || self.hop_length > MAX_HOP {
            return Err(Error::config(format!(
                "hop_length must be in 1..={MAX_HOP}, got {}",
                self.hop_length
            )));
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return Err(Error::config(format!(
                "win_length must be in 1..=n_fft ({}), got {}",
                self.n_fft, self.win_length
            )));
        }
        Ok(())
    }

    /// Number of frames for a signal of `len` samples, or why there are none.
    pub fn n_frames(&self, len: usize) -> Result<usize> {
        if len == 0 {
            return Err(Error::invalid("cannot take the STFT of an empty signal"));
        }
        let pad = self.center_pad();
        if self.center {
            self.pad_mode.check(len, pad)?;
        }
        let padded = len + 2 * pad;
        if padded < self.n_fft {
            return Err(Error::invalid(format!(
                "signal of {len} samples is shorter than one frame (n_fft {}{})",
                self.n_fft,
                if self.center {
                    ", after centre padding"
                } else {
                    ""
                }
            )));
        }
        Ok(1 + (padded - self.n_fft) / self.hop_length)
    }
}

/// Per-worker buffers for one frame; reused for every frame a worker handles.
struct FrameBuffers {
    frame: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    fft_scratch: Vec<Complex<f64>>,
}

/// A planned STFT: FFT plans and window are made once and reused by every call.
///
/// Cheap to share between threads (`&Stft` is all the methods need).
#[derive(Clone)]
pub struct Stft {
    config: StftConfig,
    /// The window zero-padded to `n_fft`, unscaled (used for synthesis).
    window: Vec<f64>,
    /// `window` rounded to f32, for callers.
    window_f32: Vec<f32>,
    /// `window` times the forward normalisation, over `support` only.
    analysis: Vec<f64>,
    /// Where the window is non-zero inside the `n_fft` frame.
    support: Range<usize>,
    forward: Arc<dyn RealToComplex<f64>>,
    inverse: Arc<dyn ComplexToReal<f64>>,
    threads: usize,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("config", &self.config)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Stft {
    pub fn new(config: StftConfig) -> Result<Self> {
        config.validate()?;
        let win = window_with(
            config.window,
            config.win_length,
            config.periodic,
            config.window_precision,
        );
        Self::build(config, win)
    }

    /// An STFT with an arbitrary window of `config.win_length` samples (`config.window`,
    /// `config.periodic` and `config.window_precision` are ignored).
    pub fn with_window(config: StftConfig, window: Vec<f32>) -> Result<Self> {
        config.validate()?;
        if window.len() != config.win_length {
            return Err(Error::config(format!(
                "window has {} samples but win_length is {}",
                window.len(),
                config.win_length
            )));
        }
        if window.iter().any(|w| !w.is_finite()) {
            return Err(Error::config("window has non-finite values"));
        }
        Self::build(config, window.into_iter().map(f64::from).collect())
    }

    fn build(config: StftConfig, win: Vec<f64>) -> Result<Self> {
        let n_fft = config.n_fft;
        let left = (n_fft - config.win_length) / 2;
        let support = left..left + config.win_length;
        let mut window = vec![0.0f64; n_fft];
        window[support.clone()].copy_from_slice(&win);
        let window_f32 = window.iter().map(|&w| w as f32).collect();
        let scale = if config.normalized {
            1.0 / (n_fft as f64).sqrt()
        } else {
            1.0
        };
        let analysis = win.iter().map(|&w| w * scale).collect();
        let mut planner = RealFftPlanner::<f64>::new();
        let forward = planner.plan_fft_forward(n_fft);
        let inverse = planner.plan_fft_inverse(n_fft);
        Ok(Stft {
            config,
            window,
            window_f32,
            analysis,
            support,
            forward,
            inverse,
            threads: default_threads(),
        })
    }

    /// Use up to `threads` threads per call (frames are split into contiguous chunks).
    /// The default is the machine's available parallelism.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn config(&self) -> &StftConfig {
        &self.config
    }

    /// The window as applied: `n_fft` samples, zero outside the centred `win_length` span.
    pub fn window(&self) -> &[f32] {
        &self.window_f32
    }

    pub fn n_freqs(&self) -> usize {
        self.config.n_freqs()
    }

    pub fn n_frames(&self, len: usize) -> Result<usize> {
        self.config.n_frames(len)
    }

    /// The complex STFT of `signal`, `[n_freqs, n_frames]` as `torch.stft(return_complex=True)`.
    pub fn process(&self, signal: &[f32]) -> Result<Spectrogram> {
        let n_frames = self.n_frames(signal.len())?;
        let n_freqs = self.n_freqs();
        let half = self.config.n_fft / 2 + 1;
        let n_fft = self.config.n_fft;
        let mut data = vec![Complex::new(0.0f32, 0.0); n_frames * n_freqs];
        self.map_frames(
            signal,
            n_frames,
            n_freqs,
            &mut data,
            |spectrum, _: &mut (), rows, j| {
                for (row, value) in rows.iter_mut().zip(spectrum) {
                    row[j] = Complex::new(value.re as f32, value.im as f32);
                }
                // The negative frequencies of a real signal's DFT are the conjugate mirror.
                for k in half..n_freqs {
                    rows[k][j] = rows[n_fft - k][j].conj();
                }
            },
        )?;
        Spectrogram::new(n_freqs, n_frames, data)
    }

    fn new_buffers(&self) -> FrameBuffers {
        FrameBuffers {
            frame: vec![0.0; self.config.n_fft],
            spectrum: self.forward.make_output_vec(),
            fft_scratch: self.forward.make_scratch_vec(),
        }
    }

    /// Windows frame `t` of `signal` and transforms it into `buffers.spectrum`
    /// (`n_fft / 2 + 1` bins, normalisation applied).
    fn analyse_frame(&self, signal: &[f32], t: usize, buffers: &mut FrameBuffers) -> Result<()> {
        let frame = &mut buffers.frame;
        // Samples outside the window's support stay zero from allocation: only the support is
        // ever written.
        let first = (t * self.config.hop_length + self.support.start) as isize
            - self.config.center_pad() as isize;
        let span = &mut frame[self.support.clone()];
        let last = first + span.len() as isize;
        if first >= 0 && last <= signal.len() as isize {
            let samples = &signal[first as usize..last as usize];
            for ((out, &x), &w) in span.iter_mut().zip(samples).zip(&self.analysis) {
                *out = x as f64 * w;
            }
        } else {
            let mode = self.config.pad_mode;
            for ((out, i), &w) in span.iter_mut().zip(first..last).zip(&self.analysis) {
                *out = mode.sample(signal, i) as f64 * w;
            }
        }
        self.forward
            .process_with_scratch(frame, &mut buffers.spectrum, &mut buffers.fft_scratch)
            .map_err(|e| Error::invalid(format!("forward FFT failed: {e}")))?;
        // realfft uses the frame as scratch: restore the zeros outside the support.
        frame[..self.support.start].fill(0.0);
        frame[self.support.end..].fill(0.0);
        Ok(())
    }

    /// Analyses the first `n_frames` frames of `signal` and lets
    /// `visit(spectrum, workspace, rows, j)` write column `j` of the calling worker's share of
    /// `out`, a row-major `[n_rows, n_frames]` buffer (`rows[r][j]` is row `r`, frame
    /// `first + j`). `workspace` is per-worker state that `visit` reuses from frame to frame.
    pub(crate) fn map_frames<T, W, F>(
        &self,
        signal: &[f32],
        n_frames: usize,
        n_rows: usize,
        out: &mut [T],
        visit: F,
    ) -> Result<()>
    where
        T: Send,
        W: Default,
        F: Fn(&[Complex<f64>], &mut W, &mut [&mut [T]], usize) + Sync,
    {
        if n_frames > self.n_frames(signal.len())? || out.len() != n_frames * n_rows {
            return Err(Error::invalid(format!(
                "{n_frames} frames of {n_rows} values do not fit this signal and buffer"
            )));
        }
        let work_per_frame = self.config.n_fft.max(n_rows);
        run_columns(out, n_rows, self.threads, work_per_frame, |first, rows| {
            let mut buffers = self.new_buffers();
            let mut workspace = W::default();
            let columns = rows.first().map_or(0, |row| row.len());
            for j in 0..columns {
                self.analyse_frame(signal, first + j, &mut buffers)?;
                visit(&buffers.spectrum, &mut workspace, rows, j);
            }
            Ok(())
        })
    }

    /// The inverse STFT, as `torch.istft` with this configuration: inverse FFT of every frame,
    /// windowed overlap-add, division by the overlap-added squared window, then the centre
    /// padding trimmed. `length` trims or zero-pads the result to exactly that many samples.
    ///
    /// As with `irfft`, the imaginary parts of the DC (and, for even `n_fft`, Nyquist) bins are
    /// ignored; a two-sided spectrogram is read through its first `n_fft / 2 + 1` bins.
    pub fn inverse(&self, spec: &Spectrogram, length: Option<usize>) -> Result<Vec<f32>> {
        let n_fft = self.config.n_fft;
        let hop = self.config.hop_length;
        let half = n_fft / 2 + 1;
        if spec.n_freqs() != self.n_freqs() {
            return Err(Error::invalid(format!(
                "spectrogram has {} frequency bins, this STFT expects {}",
                spec.n_freqs(),
                self.n_freqs()
            )));
        }
        let n_frames = spec.n_frames();
        if n_frames == 0 {
            return Err(Error::invalid("cannot invert a spectrogram with no frames"));
        }
        let full_len = hop
            .checked_mul(n_frames - 1)
            .and_then(|len| len.checked_add(n_fft))
            .ok_or_else(|| Error::invalid("spectrogram has too many frames to invert"))?;
        let start = self.config.center_pad();
        let end = match length {
            Some(length) => start.saturating_add(length),
            None => full_len - start,
        };
        let kept = start.min(full_len)..end.min(full_len);

        let mut sum = vec![0.0f64; full_len];
        let mut envelope = vec![0.0f64; full_len];
        let mut bins = self.inverse.make_input_vec();
        let mut frame = self.inverse.make_output_vec();
        let mut scratch = self.inverse.make_scratch_vec();
        let scale = if self.config.normalized {
            1.0 / (n_fft as f64).sqrt()
        } else {
            1.0 / n_fft as f64
        };
        let data = spec.data();
        for t in 0..n_frames {
            for (k, bin) in bins.iter_mut().enumerate() {
                let value = data[k * n_frames + t];
                *bin = Complex::new(value.re as f64, value.im as f64);
            }
            bins[0].im = 0.0;
            if n_fft.is_multiple_of(2) {
                bins[half - 1].im = 0.0;
            }
            self.inverse
                .process_with_scratch(&mut bins, &mut frame, &mut scratch)
                .map_err(|e| Error::invalid(format!("inverse FFT failed: {e}")))?;
            let offset = t * hop;
            for i in self.support.clone() {
                let w = self.window[i];
                sum[offset + i] += frame[i] * scale * w;
                envelope[offset + i] += w * w;
            }
        }

        if let Some(i) = kept.clone().find(|&i| envelope[i].abs() < MIN_ENVELOPE) {
            return Err(Error::invalid(format!(
                "window overlap-add is zero at sample {} (window and hop_length violate the \
                 NOLA condition there)",
                i - start
            )));
        }
        let mut out: Vec<f32> = kept.map(|i| (sum[i] / envelope[i]) as f32).collect();
        out.resize(end.saturating_sub(start), 0.0);
        Ok(out)
    }
}

/// `torch.stft(signal, ..., return_complex=True)` for `config` (plans the FFT for this call only;
/// keep an [`Stft`] to reuse the plan).
pub fn stft(signal: &[f32], config: &StftConfig) -> Result<Spectrogram> {
    Stft::new(config.clone())?.process(signal)
}

/// `torch.istft(spec, ..., length=length)` for `config`.
pub fn istft(spec: &Spectrogram, config: &StftConfig, length: Option<usize>) -> Result<Vec<f32>> {
    Stft::new(config.clone())?.inverse(spec, length)
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
