//! Planar f32 audio in memory: whole buffers, streamed chunks, and the channel policy.

use tessera_core::{Error, Result};

/// Lowest sample rate accepted anywhere in audio I/O. Below this a "sample rate" is almost
/// certainly a corrupt header (or not audio), and resampling from it would be meaningless.
pub const MIN_SAMPLE_RATE: u32 = 1_000;

/// Highest sample rate accepted anywhere in audio I/O (the top of what DACs and DAWs use).
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// What to do with the channels of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelMode {
    /// Keep every channel, in the decoder's canonical order.
    #[default]
    Keep,
    /// Down-mix to one channel: the mean of all channels.
    Mono,
}

impl ChannelMode {
    /// Number of output channels for a source with `source_channels` channels.
    pub fn output_channels(self, source_channels: usize) -> usize {
        match self {
            ChannelMode::Keep => source_channels,
            ChannelMode::Mono => 1,
        }
    }
}

/// Whether `rate` is a sample rate this crate handles.
pub fn sample_rate_in_range(rate: u32) -> bool {
    (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate)
}

pub(crate) fn sample_rate_range_text() -> String {
    format!("{MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz")
}

/// A whole signal in memory: planar f32 samples (one `Vec` per channel, all the same length),
/// nominally in [-1, 1], and its sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioBuffer {
    sample_rate: u32,
    channels: Vec<Vec<f32>>,
}

impl AudioBuffer {
    /// Builds a buffer, checking that there is at least one channel, that all channels have the
    /// same length and that the sample rate is in range.
    pub fn new(sample_rate: u32, channels: Vec<Vec<f32>>) -> Result<Self> {
        if !sample_rate_in_range(sample_rate) {
            return Err(Error::invalid(format!(
                "sample rate {sample_rate} Hz is outside {}",
                sample_rate_range_text()
            )));
        }
        check_planar(&channels)?;
        Ok(AudioBuffer {
            sample_rate,
            channels,
        })
    }

    /// A one-channel buffer.
    pub fn mono(sample_rate: u32, samples: Vec<f32>) -> Result<Self> {
        AudioBuffer::new(sample_rate, vec![samples])
    }

    /// Builds a buffer from interleaved samples (`frame0 ch0, frame0 ch1, ...`).
    pub fn from_interleaved(sample_rate: u32, n_channels: usize, samples: &[f32]) -> Result<Self> {
        if n_channels == 0 || !samples.len().is_multiple_of(n_channels) {
            return Err(Error::invalid(format!(
                "{} interleaved samples do not divide into {n_channels} channels",
                samples.len()
            )));
        }
        let channels = (0..n_channels)
            .map(|c| {
                samples
                    .iter()
                    .skip(c)
                    .step_by(n_channels)
                    .copied()
                    .collect()
            })
            .collect();
        AudioBuffer::new(sample_rate, channels)
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn n_channels(&self) -> usize {
        self.channels.len()
    }

    pub fn n_frames(&self) -> usize {
        self.channels[0].len()
    }

    pub fn duration_s(&self) -> f64 {
        self.n_frames() as f64 / f64::from(self.sample_rate)
    }

    /// All channels, planar.
    pub fn channels(&self) -> &[Vec<f32>] {
        &self.channels
    }

    /// One channel's samples. Panics if `index >= n_channels()` (a programming error).
    pub fn channel(&self, index: usize) -> &[f32] {
        &self.channels[index]
    }

    pub fn into_channels(self) -> Vec<Vec<f32>> {
        self.channels
    }

    /// The mean of all channels as a one-channel buffer.
    pub fn to_mono(&self) -> AudioBuffer {
        AudioBuffer {
            sample_rate: self.sample_rate,
            channels: vec![downmix_mono(&self.channels)],
        }
    }

    /// Samples interleaved frame by frame.
    pub fn interleaved(&self) -> Vec<f32> {
        interleave(&self.channels)
    }
}

/// A piece of a stream: planar f32 samples for `n_frames()` frames starting at frame
/// `start_frame` of the stream (counted at the stream's output sample rate).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioChunk {
    pub start_frame: u64,
    pub channels: Vec<Vec<f32>>,
}

impl AudioChunk {
    pub fn n_channels(&self) -> usize {
        self.channels.len()
    }

    pub fn n_frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// Mean over channels, frame by frame.
pub(crate) fn downmix_mono<S: AsRef<[f32]>>(channels: &[S]) -> Vec<f32> {
    let Some(first) = channels.first() else {
        return Vec::new();
    };
    if channels.len() == 1 {
        return first.as_ref().to_vec();
    }
    let mut sum: Vec<f32> = first.as_ref().to_vec();
    for channel in &channels[1..] {
        for (acc, &x) in sum.iter_mut().zip(channel.as_ref()) {
            *acc += x;
        }
    }
    let scale = 1.0 / channels.len() as f32;
    sum.iter_mut().for_each(|x| *x *= scale);
    sum
}

pub(crate) fn interleave<S: AsRef<[f32]>>(channels: &[S]) -> Vec<f32> {
    let n_frames = channels.first().map_or(0, |c| c.as_ref().len());
    let mut out = Vec::with_capacity(n_frames * channels.len());
    for frame in 0..n_frames {
        for channel in channels {
            out.push(channel.as_ref()[frame]);
        }
    }
    out
}

/// Checks that planar data has at least one channel and that all channels have equal length;
/// returns the frame count.
pub(crate) fn check_planar<S: AsRef<[f32]>>(channels: &[S]) -> Result<usize> {
    let Some(first) = channels.first() else {
        return Err(Error::invalid("audio needs at least one channel"));
    };
    let n_frames = first.as_ref().len();
    if let Some((index, channel)) = channels
        .iter()
        .enumerate()
        .find(|(_, c)| c.as_ref().len() != n_frames)
    {
        return Err(Error::invalid(format!(
            "channel {index} has {} frames but channel 0 has {n_frames}",
            channel.as_ref().len()
        )));
    }
    Ok(n_frames)
}

/// The first sample that is NaN or infinite, as (frame, channel, value).
pub(crate) fn first_non_finite<S: AsRef<[f32]>>(channels: &[S]) -> Option<(usize, usize, f32)> {
    let mut found: Option<(usize, usize, f32)> = None;
    for (c, channel) in channels.iter().enumerate() {
        // Only frames before the best hit so far can improve on it.
        let limit = found.map_or(usize::MAX, |(frame, _, _)| frame);
        if let Some((frame, &x)) = channel
            .as_ref()
            .iter()
            .enumerate()
            .take(limit)
            .find(|(_, x)| !x.is_finite())
        {
            found = Some((frame, c, x));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_is_the_mean_of_channels() {
        let buf =
            AudioBuffer::new(16_000, vec![vec![1.0, 0.5, -1.0], vec![0.0, 0.5, 1.0]]).unwrap();
        assert_eq!(buf.to_mono().channel(0), &[0.5, 0.5, 0.0]);
    }

    #[test]
    fn interleaving_round_trips() {
        let buf = AudioBuffer::new(8_000, vec![vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        assert_eq!(buf.interleaved(), vec![1.0, 3.0, 2.0, 4.0]);
        let back = AudioBuffer::from_interleaved(8_000, 2, &buf.interleaved()).unwrap();
        assert_eq!(back, buf);
    }

    #[test]
    fn rejects_ragged_channels_empty_channel_lists_and_bad_rates() {
        assert!(AudioBuffer::new(8_000, vec![vec![0.0; 3], vec![0.0; 2]]).is_err());
        assert!(AudioBuffer::new(8_000, vec![]).is_err());
        assert!(AudioBuffer::new(0, vec![vec![0.0]]).is_err());
        assert!(AudioBuffer::new(MAX_SAMPLE_RATE + 1, vec![vec![0.0]]).is_err());
        assert!(AudioBuffer::from_interleaved(8_000, 2, &[0.0; 3]).is_err());
        assert!(AudioBuffer::from_interleaved(8_000, 0, &[]).is_err());
    }

    #[test]
    fn finds_the_earliest_non_finite_sample_across_channels() {
        let channels = vec![
            vec![0.0, 0.0, 0.0, f32::NAN],
            vec![0.0, f32::INFINITY, 0.0, 0.0],
        ];
        let (frame, channel, value) = first_non_finite(&channels).unwrap();
        assert_eq!((frame, channel), (1, 1));
        assert!(value.is_infinite());
        assert!(first_non_finite(&[vec![0.0f32; 4]]).is_none());
    }
}
