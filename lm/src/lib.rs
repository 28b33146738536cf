//! tessera-lm: the unified LLM-style decoder.
//!
//! One decoder reads the checkpoints of Llama 3.x, Qwen2/2.5, Qwen3, Gemma 3 (text) and
//! MiMo-V2-Flash's dense attention scheme from their Hugging Face layout. Layers with a sliding
//! window keep a ring-buffer KV cache of exactly the window size, global layers a growing one;
//! attention sinks, partial RoPE and value scaling are per-layer settings of one attention.

pub mod attention;
pub mod block;
pub mod config;
pub mod generate;
mod kernels;
pub mod kv_cache;
mod linear;
pub mod mlp;
pub mod model;
pub mod mtp;
pub mod norm;
pub mod rope;
pub mod sampling;
pub mod speculative;
pub mod tokenizer;

pub use config::{Activation, AttentionConfig, DecoderConfig, Family, RopeConfig, RopeScaling};
pub use generate::{FinishReason, GenerateOptions, Generation, generate, generate_with, prefill};
pub use kv_cache::{DecoderCache, KvCache, LayerCache, RingKvCache};
pub use model::Decoder;
pub use mtp::{Mtp, MtpLayout};
pub use sampling::{LogitsProcessor, Sampler, SamplingParams};
pub use speculative::{Draft, Drafter, MtpDrafter, SpeculativeStats, generate_speculative};
pub use tokenizer::TextTokenizer;
