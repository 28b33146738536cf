//! Tokenising audio datasets: turn many files into codec tokens, sharded, resumable, and in the
//! formats training code reads (Parquet, WebDataset, Megatron `.bin/.idx`, npy).
//!
//! The pieces, each swappable:
//! - [`item`]: what one input is ([`Item`]) and what it becomes ([`EncodedItem`]);
//! - [`format`]: one [`format::ShardWriter`] per output format, writing one shard into a staging
//!   directory; the caller moves the finished files into place.
//! - [`layout`]: how multi-codebook, multi-level codes are flattened into one token stream with
//!   per-codebook vocabulary offsets (Megatron).

pub mod format;
pub mod item;
pub mod layout;

pub use item::{EncodedItem, Item};
