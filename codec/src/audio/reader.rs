//! The streaming primitive: decode a file chunk by chunk with memory bounded by the chunk size.

use std::path::Path;

use tessera_core::{Error, Result};

use super::buffer::{AudioChunk, ChannelMode};
use super::info::AudioInfo;
use super::source::Source;

/// Chunk length used by [`AudioReader::open`]: about 0.34 s at 48 kHz.
pub const DEFAULT_CHUNK_FRAMES: usize = 16_384;

/// Largest chunk length accepted (4 Mi frames, 16 MiB per channel).
pub const MAX_CHUNK_FRAMES: usize = 1 << 22;

/// How an [`AudioReader`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Frames per chunk; every chunk but the last has exactly this many.
    pub chunk_frames: usize,
    /// Skip packets that fail to decode (counting them, see
    /// [`AudioReader::skipped_packets`]) instead of failing. Off by default: a dataset job
    /// should record a corrupt file, not silently drop pieces of it (which also shifts the
    /// rest of the signal in time).
    pub skip_corrupt_packets: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            chunk_frames: DEFAULT_CHUNK_FRAMES,
            skip_corrupt_packets: false,
        }
    }
}

/// Decodes an audio file chunk by chunk. Memory is bounded by the chunk length plus one
/// decoded packet, whatever the length of the file.
pub struct AudioReader {
    source: Source,
    mode: ChannelMode,
    chunk_frames: usize,
    /// Decoded frames not yet handed out, in output channels.
    pending: Vec<Vec<f32>>,
    next_start: u64,
    source_done: bool,
    failed: bool,
}

impl AudioReader {
    /// Opens `path` for reading in chunks of [`DEFAULT_CHUNK_FRAMES`], strict about corrupt
    /// packets. Reads the header only; fails like [`probe`](super::probe).
    pub fn open(path: impl AsRef<Path>, mode: ChannelMode) -> Result<Self> {
        AudioReader::open_with(path, mode, &ReadOptions::default())
    }

    pub fn open_with(
        path: impl AsRef<Path>,
        mode: ChannelMode,
        options: &ReadOptions,
    ) -> Result<Self> {
        if options.chunk_frames == 0 || options.chunk_frames > MAX_CHUNK_FRAMES {
            return Err(Error::invalid(format!(
                "chunk length {} is outside 1..={MAX_CHUNK_FRAMES} frames",
                options.chunk_frames
            )));
        }
        let source = Source::open(path.as_ref(), options.skip_corrupt_packets)?;
        let n_out = mode.output_channels(source.info().channels);
        Ok(AudioReader {
            source,
            mode,
            chunk_frames: options.chunk_frames,
            pending: vec![Vec::new(); n_out],
            next_start: 0,
            source_done: false,
            failed: false,
        })
    }

    /// The file's header facts (channels are the file's, before any down-mix).
    pub fn info(&self) -> &AudioInfo {
        self.source.info()
    }

    pub fn sample_rate(&self) -> u32 {
        self.source.info().sample_rate
    }

    /// Channels in each chunk (1 for [`ChannelMode::Mono`]).
    pub fn n_channels(&self) -> usize {
        self.pending.len()
    }

    pub fn channel_mode(&self) -> ChannelMode {
        self.mode
    }

    pub fn chunk_frames(&self) -> usize {
        self.chunk_frames
    }

    /// Frames handed out so far.
    pub fn frames_read(&self) -> u64 {
        self.next_start
    }

    /// Packets skipped as corrupt (only with `skip_corrupt_packets`).
    pub fn skipped_packets(&self) -> u64 {
        self.source.skipped_packets()
    }

    /// Frames decoded but not yet handed out. Never more than the chunk length plus one
    /// decoded packet: this is the reader's whole sample memory.
    pub fn buffered_frames(&self) -> usize {
        self.pending.first().map_or(0, Vec::len)
    }

    /// The next chunk: `chunk_frames` frames, fewer only for the last one; `None` at the end.
    /// After an error the reader is finished and returns `None`.
    pub fn next_chunk(&mut self) -> Result<Option<AudioChunk>> {
        if self.failed {
            return Ok(None);
        }
        if let Err(e) = self.fill() {
            self.failed = true;
            self.pending.iter_mut().for_each(Vec::clear);
            return Err(e);
        }
        let n = self.buffered_frames().min(self.chunk_frames);
        if n == 0 {
            return Ok(None);
        }
        let channels = self
            .pending
            .iter_mut()
            .map(|pending| {
                let rest = pending.split_off(n);
                std::mem::replace(pending, rest)
            })
            .collect();
        let chunk = AudioChunk {
            start_frame: self.next_start,
            channels,
        };
        self.next_start += n as u64;
        Ok(Some(chunk))
    }

    fn fill(&mut self) -> Result<()> {
        while !self.source_done && self.buffered_frames() < self.chunk_frames {
            match self.source.next_block()? {
                None => self.source_done = true,
                Some(block) => append_block(&mut self.pending, block, self.mode),
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for AudioReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioReader")
            .field("info", self.info())
            .field("mode", &self.mode)
            .field("chunk_frames", &self.chunk_frames)
            .field("frames_read", &self.next_start)
            .finish()
    }
}

impl Iterator for AudioReader {
    type Item = Result<AudioChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

fn append_block(pending: &mut [Vec<f32>], block: &[Vec<f32>], mode: ChannelMode) {
    match mode {
        ChannelMode::Keep => {
            for (out, channel) in pending.iter_mut().zip(block) {
                out.extend_from_slice(channel);
            }
        }
        ChannelMode::Mono => {
            let scale = 1.0 / block.len() as f32;
            let n_frames = block.first().map_or(0, Vec::len);
            let out = &mut pending[0];
            out.extend((0..n_frames).map(|i| block.iter().map(|c| c[i]).sum::<f32>() * scale));
        }
    }
}
