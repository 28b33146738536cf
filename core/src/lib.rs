//! tessera-core: the shared ground of tessera.
//!
//! Devices and dtypes, the [`Codes`](codes::Codes) type and its safetensors file, weight loading
//! from Hugging Face repository layouts, the quantizers that every tokenizer is built from, and
//! the layers the codecs share ([`nn`]: convolutions with fast CPU kernels, Snake, seeded noise).

pub mod codes;
pub mod config;
pub mod device;
pub mod error;
pub mod fsutil;
pub mod hub;
pub mod nn;
pub mod quant;
pub mod weights;

pub use codes::{Codes, CodesMeta};
pub use device::{DeviceSpec, parse_device};
pub use error::{Error, Result, WithPath};
pub use weights::{Checkpoint, KeyMap, WeightStore};
