//! Audio in and out: decoding with symphonia, resampling with rubato, writing WAV with hound.
//!
//! The primitive is [`AudioReader`], which decodes any format symphonia supports chunk by
//! chunk in bounded memory; [`read_audio`] and [`load_audio`] collect a whole file. Design
//! notes, policies and measured resampler quality: docs/audio-io.md.

mod buffer;
mod info;
mod load;
mod open;
mod reader;
mod resample;
mod resample_plan;
mod resampling_reader;
mod source;
mod wav;

pub use buffer::{
    AudioBuffer, AudioChunk, ChannelMode, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, sample_rate_in_range,
};
pub use info::{AudioInfo, probe, probe_exact};
pub use load::{load_audio, read_audio};
pub use reader::{AudioReader, DEFAULT_CHUNK_FRAMES, MAX_CHUNK_FRAMES, ReadOptions};
pub use resample::{Resampler, resample, resample_buffer, resampled_len};
pub use resample_plan::{MAX_SINC_LEN, SINC_LEN, WINDOW};
pub use resampling_reader::ResamplingReader;
pub use wav::{WavFormat, WavWriter, write_wav};
