//! Analysis windows, with the same definitions (and the same periodic/symmetric convention) as
//! `torch.hann_window`, `torch.hamming_window` and `torch.blackman_window`.
//!
//! Two evaluations are offered because the libraries differ and the difference shows: torch
//! evaluates windows step by step in f32 (errors up to ~3e-7), scipy/librosa in f64. A window
//! error of 3e-7 moves weak bins of a loud frame by ~1e-3 dB, ten times the tolerance that
//! tessera is checked to, so each reference is matched with its own evaluation.

use std::f64::consts::PI;

/// The shape of an analysis window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Window {
    /// All ones (what `torch.stft` uses when no window is given).
    Rectangular,
    /// `0.5 - 0.5 cos(2 pi n / D)`.
    #[default]
    Hann,
    /// `0.54 - 0.46 cos(2 pi n / D)` (torch's default alpha and beta).
    Hamming,
    /// `0.42 - 0.5 cos(2 pi n / D) + 0.08 cos(4 pi n / D)`.
    Blackman,
    /// Kaldi's window: the Hann window raised to the power 0.85 (torchaudio.compliance.kaldi).
    Povey,
}

/// How window values are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WindowPrecision {
    /// Step by step in f32, in the order `torch.*_window` uses (torch, torchaudio, Whisper,
    /// Vocos and most model code).
    #[default]
    Torch,
    /// In f64 from the formula (scipy.signal.get_window, librosa).
    F64,
}

impl Window {
    /// Parses the names used by torch / torchaudio / librosa (`hann`, `hann_window`, `hanning`,
    /// `hamming`, `blackman`, `povey`, `rectangular`, `rect`, `boxcar`, `ones`).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        let base = name.strip_suffix("_window").unwrap_or(&name);
        match base {
            "hann" | "hanning" => Some(Window::Hann),
            "hamming" => Some(Window::Hamming),
            "blackman" => Some(Window::Blackman),
            "povey" => Some(Window::Povey),
            "rectangular" | "rect" | "boxcar" | "ones" => Some(Window::Rectangular),
            _ => None,
        }
    }

    /// Exact value at position `n` for denominator `d` (`len` periodic, `len - 1` symmetric).
    fn value_f64(self, n: f64, d: f64) -> f64 {
        let phase = 2.0 * PI * n / d;
        match self {
            Window::Rectangular => 1.0,
            Window::Hann => 0.5 - 0.5 * phase.cos(),
            Window::Hamming => 0.54 - 0.46 * phase.cos(),
            Window::Blackman => 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos(),
            Window::Povey => (0.5 - 0.5 * phase.cos()).powf(0.85),
        }
    }

    /// torch's f32 evaluation (aten `hamming_window` / `blackman_window`, torchaudio's povey).
    fn value_torch(self, n: usize, d: usize) -> f32 {
        let n = n as f32;
        let hamming = |alpha: f64, beta: f64| {
            let step = (PI * 2.0 / d as f64) as f32;
            (n * step).cos() * -(beta as f32) + alpha as f32
        };
        match self {
            Window::Rectangular => 1.0,
            Window::Hann => hamming(0.5, 0.5),
            Window::Hamming => hamming(0.54, 0.46),
            Window::Blackman => {
                let x = n * (PI / d as f64) as f32;
                (x * 4.0).cos() * 0.08 - (x * 2.0).cos() * 0.5 + 0.42
            }
            Window::Povey => hamming(0.5, 0.5).powf(0.85),
        }
    }
}

/// A window of `len` samples, evaluated as torch does (see [`WindowPrecision::Torch`]).
///
/// `periodic = true` gives the window that tiles with period `len` (the first `len` samples of the
/// symmetric window of length `len + 1`), which is what spectral analysis wants and what
/// `torch.hann_window` returns by default; `periodic = false` gives the symmetric window used in
/// filter design. As in torch, a window of length 1 is `[1.0]` and one of length 0 is empty.
pub fn window(kind: Window, len: usize, periodic: bool) -> Vec<f32> {
    match len {
        0 => Vec::new(),
        1 => vec![1.0],
        _ => {
            let d = if periodic { len } else { len - 1 };
            (0..len).map(|n| kind.value_torch(n, d)).collect()
        }
    }
}

/// A window evaluated in f64 from its formula (see [`window`] for the conventions).
pub fn window_f64(kind: Window, len: usize, periodic: bool) -> Vec<f64> {
    match len {
        0 => Vec::new(),
        1 => vec![1.0],
        _ => {
            let d = if periodic { len } else { len - 1 } as f64;
            (0..len).map(|n| kind.value_f64(n as f64, d)).collect()
        }
    }
}

/// A window evaluated with `precision`, in f64.
pub fn window_with(
    kind: Window,
    len: usize,
    periodic: bool,
    precision: WindowPrecision,
) -> Vec<f64> {
    match precision {
        WindowPrecision::Torch => window(kind, len, periodic)
            .into_iter()
            .map(f64::from)
            .collect(),
        WindowPrecision::F64 => window_f64(kind, len, periodic),
    }
}
