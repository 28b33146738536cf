//! tessera-codec: audio <-> discrete codes.
//!
//! Audio I/O (decode any format symphonia supports, resample, write WAV), DSP (STFT, mel) and,
//! one file per family, the neural audio codecs.

pub mod audio;
pub mod codec;
pub mod dac;
pub mod dsp;
pub mod encodec;
pub mod mimi;
pub mod registry;
pub mod seanet;
pub mod snac;
pub mod stream;

mod hf_config;
mod shared_store;
