//! Whole-file conveniences over the streaming readers.

use std::path::Path;

use tessera_core::Result;

use super::buffer::{AudioBuffer, AudioChunk, ChannelMode};
use super::reader::AudioReader;
use super::resampling_reader::ResamplingReader;

/// Upper bound on the up-front allocation that a header's frame count can ask for; a larger
/// (or lying) header just means the vectors grow as they fill.
const MAX_RESERVE_FRAMES: u64 = 1 << 24;

/// Decodes the whole of `path` to f32 at its own sample rate.
pub fn read_audio(path: impl AsRef<Path>, mode: ChannelMode) -> Result<AudioBuffer> {
    let reader = AudioReader::open(path, mode)?;
    let rate = reader.sample_rate();
    let reserve = reader.info().frames.unwrap_or(0);
    let n_channels = reader.n_channels();
    collect(reader, rate, n_channels, reserve)
}

/// Decodes the whole of `path` and resamples it to `target_rate` Hz (a no-op when the file is
/// already at that rate).
pub fn load_audio(
    path: impl AsRef<Path>,
    target_rate: u32,
    mode: ChannelMode,
) -> Result<AudioBuffer> {
    let reader = ResamplingReader::open(path, target_rate, mode)?;
    let reserve = reader.info().frames.map_or(0, |n| {
        super::resample::resampled_len(n, reader.info().sample_rate, target_rate)
    });
    let n_channels = reader.n_channels();
    collect(reader, target_rate, n_channels, reserve)
}

fn collect(
    chunks: impl Iterator<Item = Result<AudioChunk>>,
    rate: u32,
    n_channels: usize,
    reserve: u64,
) -> Result<AudioBuffer> {
    let reserve = reserve.min(MAX_RESERVE_FRAMES) as usize;
    let mut channels = vec![Vec::with_capacity(reserve); n_channels];
    for chunk in chunks {
        for (dst, src) in channels.iter_mut().zip(chunk?.channels) {
            dst.extend(src);
        }
    }
    AudioBuffer::new(rate, channels)
}
