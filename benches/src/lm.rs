//! The decoder shapes the LM benchmarks run, and random weights for them.
//!
//! The reference shape is a ~100M-parameter Llama (hidden 768, 12 layers, 12 heads / 4 KV heads,
//! MLP 2048, vocabulary 32000, tied embeddings): the same config.json that
//! `benches/compare/lm_vs_peers.py` saves with transformers for the peers to load.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use tessera_core::Result;
use tessera_lm::{Decoder, DecoderConfig};

/// config.json of the ~100M-parameter Llama shape, in the form transformers 5 saves.
pub fn llama_100m_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 32000,
        "hidden_size": 768,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "num_key_value_heads": 4,
        "head_dim": 64,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "tie_word_embeddings": true,
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": 1,
        "eos_token_id": 2
    })
}

/// `cfg` with every layer but each `period`-th a sliding-window layer of `window` positions
/// (period 6: five window layers to one global, as Gemma 3 and MiMo-V2-Flash lay them out).
pub fn with_window_pattern(mut cfg: DecoderConfig, window: usize, period: usize) -> DecoderConfig {
    for (i, a) in cfg.layers.iter_mut().enumerate() {
        a.window = if (i + 1) % period.max(1) == 0 {
            None
        } else {
            Some(window)
        };
    }
    cfg
}

/// A decoder of shape `cfg` with deterministic random weights (normal, std 0.02; norm scales
/// one), computing in f32 on the CPU.
pub fn random_decoder(cfg: &DecoderConfig, seed: u64) -> Result<Decoder> {
    let device = Device::Cpu;
    // A VarMap records every weight the model asks for, with its shape...
    let varmap = VarMap::new();
    Decoder::from_var_builder(
        cfg.clone(),
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    // ...which are then filled with plain (not trainable) tensors: no autograd bookkeeping.
    let mut rng = SplitMix(seed);
    let mut names: Vec<(String, Vec<usize>)> = varmap
        .data()
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    names.sort();
    let mut tensors = HashMap::new();
    for (name, dims) in names {
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            (0..n).map(|_| 0.02 * rng.normal()).collect()
        };
        tensors.insert(name, Tensor::from_vec(values, dims, &device)?);
    }
    Decoder::from_var_builder(
        cfg.clone(),
        VarBuilder::from_tensors(tensors, DType::F32, &device),
    )
}

/// The pseudo-random prompt every implementation in the comparison runs.
pub fn speed_prompt(len: usize, vocab: usize) -> Vec<u32> {
    (0..len as u64)
        .map(|i| ((i * 2_654_435_761 + 12_345) % (vocab as u64 - 3)) as u32 + 3)
        .collect()
}

/// A small deterministic generator (SplitMix64) with Box-Muller normals.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}
