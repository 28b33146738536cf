//! A reader that resamples as it decodes: chunk by chunk, bounded memory, exact total length.

use std::path::Path;

use tessera_core::{Error, Result};

use super::buffer::{AudioChunk, ChannelMode};
use super::info::AudioInfo;
use super::reader::AudioReader;
use super::resample::Resampler;

/// Wraps an [`AudioReader`] and a [`Resampler`]: each decoded chunk is resampled as it
/// arrives, and the stream ends with exactly `round(frames * target / source)` frames.
/// Chunks vary in length (about the reader's chunk length times the rate ratio).
pub struct ResamplingReader {
    reader: AudioReader,
    resampler: Resampler,
    next_start: u64,
    done: bool,
}

impl ResamplingReader {
    /// Opens `path` and resamples it to `target_rate` Hz. A bad `target_rate` is
    /// `Error::Invalid`; problems with the file are `Error::File`.
    pub fn open(path: impl AsRef<Path>, target_rate: u32, mode: ChannelMode) -> Result<Self> {
        ResamplingReader::new(AudioReader::open(path, mode)?, target_rate)
    }

    pub fn new(reader: AudioReader, target_rate: u32) -> Result<Self> {
        let resampler = Resampler::new(reader.sample_rate(), target_rate, reader.n_channels())?;
        Ok(ResamplingReader {
            reader,
            resampler,
            next_start: 0,
            done: false,
        })
    }

    /// The source file's header facts (its own rate and channels).
    pub fn info(&self) -> &AudioInfo {
        self.reader.info()
    }

    /// The output rate.
    pub fn sample_rate(&self) -> u32 {
        self.resampler.to_rate()
    }

    pub fn n_channels(&self) -> usize {
        self.reader.n_channels()
    }

    /// Output frames handed out so far.
    pub fn frames_read(&self) -> u64 {
        self.next_start
    }

    /// The next resampled chunk, `None` at the end. Empty chunks are never returned.
    pub fn next_chunk(&mut self) -> Result<Option<AudioChunk>> {
        while !self.done {
            let out = match self.reader.next_chunk() {
                Ok(Some(chunk)) => self.resampler.process(&chunk.channels),
                Ok(None) => {
                    self.done = true;
                    self.resampler.flush()
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            let channels = out.map_err(|e| match e {
                Error::File { .. } => e,
                other => other.with_path(&self.reader.info().path),
            })?;
            let n = channels[0].len();
            if n > 0 {
                let chunk = AudioChunk {
                    start_frame: self.next_start,
                    channels,
                };
                self.next_start += n as u64;
                return Ok(Some(chunk));
            }
        }
        Ok(None)
    }
}

impl std::fmt::Debug for ResamplingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResamplingReader")
            .field("reader", &self.reader)
            .field("resampler", &self.resampler)
            .field("frames_read", &self.next_start)
            .finish()
    }
}

impl Iterator for ResamplingReader {
    type Item = Result<AudioChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}
