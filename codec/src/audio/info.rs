//! What a file holds, read from its header: `probe` (cheap) and `probe_exact` (decodes).

use std::path::{Path, PathBuf};

use tessera_core::Result;

use super::source::Source;

/// Facts about an audio file.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    pub path: PathBuf,
    /// Container format, as symphonia names it: `wave`, `aiff`, `flac`, `mp3`, `ogg`, `isomp4`,
    /// `matroska`, `caf`, `aac` (ADTS).
    pub format: String,
    /// Codec, as symphonia's decoder names it: `pcm_s16le`, `pcm_f32le`, `flac`, `mp3`,
    /// `vorbis`, `aac`, `alac`, ...
    pub codec: String,
    pub sample_rate: u32,
    /// Channels in the file (before any down-mix).
    pub channels: usize,
    /// Frames per channel. From `probe`, this is what the container states (after encoder
    /// delay and padding where the container records them), `None` when it does not say or
    /// only allows a guess (Matroska/WebM, streamed WAV, ADTS AAC, MP3 without a LAME header);
    /// from `probe_exact` it is the number of frames that decoding yields.
    pub frames: Option<u64>,
    /// `frames / sample_rate`; without a frame count, the container's own duration, or
    /// symphonia's estimate from the bitrate (ADTS, MP3 without a LAME header).
    pub duration_s: Option<f64>,
    /// Bits per sample of the stored samples, for formats that have such a thing (PCM, FLAC,
    /// ALAC); `None` for lossy codecs.
    pub bits_per_sample: Option<u32>,
}

/// Reads the header of `path` without decoding the audio. Fails with `Error::File` if the file
/// is missing, empty, not audio, uses a codec without a decoder, or states an impossible format.
///
/// Some containers (Matroska/WebM, streamed WAV) do not state the frame count; `frames` is then
/// `None`. Use [`probe_exact`] to count by decoding.
pub fn probe(path: impl AsRef<Path>) -> Result<AudioInfo> {
    Ok(Source::open(path.as_ref(), false)?.info().clone())
}

/// Like [`probe`], but decodes the whole file to count its frames, so `frames` and `duration_s`
/// are always known and exact. This costs a full decode (memory stays bounded: one packet at a
/// time), and it fails on anything that reading the file would fail on (corrupt packets,
/// truncation, NaN samples).
pub fn probe_exact(path: impl AsRef<Path>) -> Result<AudioInfo> {
    let mut source = Source::open(path.as_ref(), false)?;
    while source.next_block()?.is_some() {}
    let mut info = source.info().clone();
    let frames = source.frames_out();
    info.frames = Some(frames);
    info.duration_s = Some(frames as f64 / f64::from(info.sample_rate));
    Ok(info)
}
