//! Writing WAV files with hound: 32-bit float by default, 16-bit PCM on request.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavSpec};
use tessera_core::{Error, Result};

use super::buffer::{AudioBuffer, check_planar, first_non_finite};

/// Sample format of a written WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// IEEE float, 32 bits: lossless for f32 audio, values beyond [-1, 1] kept.
    #[default]
    F32,
    /// Signed 16-bit PCM: `round(x * 32768)` clipped to [-32768, 32767], the exact inverse of
    /// how 16-bit samples are decoded (`v / 32768`).
    Pcm16,
}

/// Writes `buffer` to `path` as WAV in `format`.
pub fn write_wav(path: impl AsRef<Path>, buffer: &AudioBuffer, format: WavFormat) -> Result<()> {
    let mut writer = WavWriter::create(path, buffer.sample_rate(), buffer.n_channels(), format)?;
    writer.write_chunk(buffer.channels())?;
    writer.finalize()
}

/// A WAV file written chunk by chunk. Call [`finalize`](WavWriter::finalize) at the end to get
/// errors from writing the header; dropping the writer finalizes it too, silently.
pub struct WavWriter {
    inner: hound::WavWriter<BufWriter<File>>,
    path: PathBuf,
    channels: usize,
    format: WavFormat,
    frames: u64,
    clipped: u64,
}

impl WavWriter {
    pub fn create(
        path: impl AsRef<Path>,
        sample_rate: u32,
        channels: usize,
        format: WavFormat,
    ) -> Result<Self> {
        let path = path.as_ref();
        if sample_rate == 0 {
            return Err(Error::file(
                path,
                "cannot write a WAV file with sample rate 0",
            ));
        }
        let channels_u16 = u16::try_from(channels)
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| Error::file(path, format!("cannot write {channels} channels to WAV")))?;
        let (bits_per_sample, sample_format) = match format {
            WavFormat::F32 => (32, SampleFormat::Float),
            WavFormat::Pcm16 => (16, SampleFormat::Int),
        };
        let spec = WavSpec {
            channels: channels_u16,
            sample_rate,
            bits_per_sample,
            sample_format,
        };
        let inner = hound::WavWriter::create(path, spec).map_err(|e| Error::file(path, e))?;
        Ok(WavWriter {
            inner,
            path: path.to_path_buf(),
            channels,
            format,
            frames: 0,
            clipped: 0,
        })
    }

    /// Appends planar samples (one slice per channel, equal lengths). NaN or infinite samples
    /// are refused with their position, before anything of the chunk is written.
    pub fn write_chunk<S: AsRef<[f32]>>(&mut self, channels: &[S]) -> Result<()> {
        if channels.len() != self.channels {
            return Err(Error::file(
                &self.path,
                format!(
                    "the file has {} channels but got {}",
                    self.channels,
                    channels.len()
                ),
            ));
        }
        let n = check_planar(channels).map_err(|e| Error::file(&self.path, e))?;
        if let Some((frame, channel, value)) = first_non_finite(channels) {
            return Err(Error::file(
                &self.path,
                format!(
                    "refusing to write {value} at frame {}, channel {channel}",
                    self.frames + frame as u64
                ),
            ));
        }
        let write_err = |e: hound::Error| Error::file(&self.path, e);
        for frame in 0..n {
            for channel in channels {
                let x = channel.as_ref()[frame];
                match self.format {
                    WavFormat::F32 => self.inner.write_sample(x).map_err(write_err)?,
                    WavFormat::Pcm16 => {
                        let (v, clipped) = to_pcm16(x);
                        self.clipped += u64::from(clipped);
                        self.inner.write_sample(v).map_err(write_err)?;
                    }
                }
            }
        }
        self.frames += n as u64;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// Samples that were outside the 16-bit range and clipped (always 0 for float files).
    pub fn clipped_samples(&self) -> u64 {
        self.clipped
    }

    /// Writes the final header sizes and closes the file.
    pub fn finalize(self) -> Result<()> {
        let path = self.path;
        self.inner.finalize().map_err(|e| Error::file(&path, e))
    }
}

impl std::fmt::Debug for WavWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavWriter")
            .field("path", &self.path)
            .field("channels", &self.channels)
            .field("format", &self.format)
            .field("frames", &self.frames)
            .field("clipped", &self.clipped)
            .finish()
    }
}

/// f32 in [-1, 1] to i16, and whether it had to be clipped.
fn to_pcm16(x: f32) -> (i16, bool) {
    let scaled = (x * 32768.0).round();
    let clipped = scaled.clamp(-32768.0, 32767.0);
    (clipped as i16, clipped != scaled)
}

#[cfg(test)]
mod tests {
    use super::to_pcm16;

    #[test]
    fn pcm16_scaling_inverts_decoding_and_clips() {
        for v in [-32768i16, -1, 0, 1, 12345, 32767] {
            assert_eq!(to_pcm16(f32::from(v) / 32768.0), (v, false));
        }
        assert_eq!(to_pcm16(1.0), (32767, true));
        assert_eq!(to_pcm16(-1.5), (-32768, true));
        assert_eq!(to_pcm16(2.0), (32767, true));
    }
}
