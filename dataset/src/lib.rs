//! Tokenising audio datasets: turn many files into codec tokens, sharded, resumable, and in the
//! formats training code reads (Parquet, WebDataset, Megatron `.bin/.idx`, npy).
//!
//! The pieces, each swappable:
//! - [`item`]: what one input is ([`Item`]) and what it becomes ([`EncodedItem`]);
//! - [`format`]: one [`format::ShardWriter`] per output format, writing one shard into a staging
//!   directory; the caller moves the finished files into place.
//! - [`layout`]: how multi-codebook, multi-level codes are flattened into one token stream with
//!   per-codebook vocabulary offsets (Megatron);
//! - [`input`]: INPUT arguments (files, directories, `@lists`, JSONL manifests) to items;
//! - [`shard`]: deterministic sharding and the scheduler's worker index;
//! - [`store`]: the output location (a directory or an object store), written atomically;
//! - [`marker`]: plan, done markers and error records that make a job resumable;
//! - [`tokenize`]: the pipeline (decode on worker threads, batched encode, write).

pub mod format;
pub mod input;
pub mod item;
pub mod layout;
pub mod marker;
pub mod merge;
pub mod remote;
pub mod shard;
pub mod status;
pub mod store;
pub mod tokenize;

pub use item::{EncodedItem, Item};
pub use shard::ShardAssignment;
pub use tokenize::{Job, Observer, Summary, TokenizeOptions};
