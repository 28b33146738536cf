//! Signal processing: windows, STFT / inverse STFT, mel filterbanks and log-mel features.
//!
//! Everything follows a reference implementation exactly (see `docs/dsp.md`): the STFT and its
//! inverse are `torch.stft` / `torch.istft`, the filterbanks are torchaudio's `melscale_fbanks`
//! or librosa's `filters.mel`, and the log-mel recipes are torchaudio's, Whisper's and the
//! vocoders'. Plans (FFT, window, filterbank) are built once in [`Stft`] and [`MelSpectrogram`]
//! and reused by every call; frames are processed with per-worker buffers only.

mod frames;
mod mel;
mod melspec;
mod pad;
mod spectrogram;
mod stft;
mod window;

pub use mel::{MelConfig, MelConvention, MelFilterbank, MelNorm, MelScale, hz_to_mel, mel_to_hz};
pub use melspec::{LogScale, MelFeatures, MelSpectrogram, MelSpectrogramConfig};
pub use pad::{PadMode, pad};
pub use realfft::num_complex::Complex;
pub use spectrogram::Spectrogram;
pub use stft::{Stft, StftConfig, istft, stft};
pub use window::{Window, WindowPrecision, window, window_f64, window_with};
