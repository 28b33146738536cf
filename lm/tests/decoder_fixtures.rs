//! The decoder against transformers on committed fixtures (scripts/reference/lm_fixtures.py):
//! tiny random checkpoints of each family, prompts longer than the sliding windows.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use tessera_lm::{Decoder, DecoderCache, FinishReason, GenerateOptions, SamplingParams, generate};

const TOLERANCE: f32 = 1e-4;
const FAMILIES: [&str; 5] = ["llama", "qwen2", "qwen3", "gemma3", "mimo_v2_flash"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Expected {
    prompt: Vec<u32>,
    logits: Tensor,
    greedy: Vec<u32>,
}

fn expected(name: &str) -> Expected {
    let t =
        candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu)
            .unwrap();
    let ids = |k: &str| -> Vec<u32> {
        t[k].to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| x as u32)
            .collect()
    };
    Expected {
        prompt: ids("prompt"),
        logits: t["logits"].clone(),
        greedy: ids("greedy"),
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn load(dir: &Path) -> Decoder {
    Decoder::load(dir, DType::F32, &Device::Cpu).unwrap()
}

/// Logits of `ids` fed in chunks of the given sizes (cycled).
fn chunked_logits(model: &Decoder, ids: &[u32], chunks: &[usize]) -> Tensor {
    let mut cache = model.new_cache();
    let mut parts = Vec::new();
    let mut at = 0;
    for &n in chunks.iter().cycle() {
        if at == ids.len() {
            break;
        }
        let n = n.min(ids.len() - at);
        parts.push(model.forward(&ids[at..at + n], &mut cache).unwrap());
        at += n;
    }
    assert_eq!(cache.len(), ids.len());
    Tensor::cat(&parts, 0).unwrap()
}

fn argmax(logits: &Tensor) -> u32 {
    logits.argmax(0).unwrap().to_scalar::<u32>().unwrap()
}

fn greedy(model: &Decoder, prompt: &[u32], n: usize, cache: &mut DecoderCache) -> Vec<u32> {
    let mut next = argmax(&model.forward_last(prompt, cache).unwrap());
    let mut out = vec![next];
    while out.len() < n {
        next = argmax(&model.forward_last(&[next], cache).unwrap());
        out.push(next);
    }
    out
}

#[test]
fn prefill_logits_match_transformers() {
    for name in FAMILIES {
        let e = expected(name);
        let model = load(&fixture(name));
        let mut cache = model.new_cache();
        let logits = model.forward(&e.prompt, &mut cache).unwrap();
        let err = max_abs_diff(&logits, &e.logits);
        println!("{name}: prefill logits max |err| = {err:.3e}");
        assert!(err <= TOLERANCE, "{name}: max error {err}");
    }
}

#[test]
fn chunked_prefill_and_token_by_token_match_transformers() {
    for name in FAMILIES {
        let e = expected(name);
        let model = load(&fixture(name));
        for chunks in [&[1][..], &[3, 1, 7, 16, 2], &[13], &[20, 1]] {
            let logits = chunked_logits(&model, &e.prompt, chunks);
            let err = max_abs_diff(&logits, &e.logits);
            println!("{name}: chunks {chunks:?} max |err| = {err:.3e}");
            assert!(
                err <= TOLERANCE,
                "{name} chunks {chunks:?}: max error {err}"
            );
        }
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in FAMILIES {
        let e = expected(name);
        let model = load(&fixture(name));
        let mut cache = model.new_cache();
        let got = greedy(&model, &e.prompt, e.greedy.len(), &mut cache);
        assert_eq!(got, e.greedy, "{name}");
        assert_eq!(cache.len(), e.prompt.len() + e.greedy.len() - 1);
    }
}

/// The ring caches hold no more than their windows however long the sequence grows.
#[test]
fn window_layers_stay_bounded() {
    for name in ["qwen2", "gemma3", "mimo_v2_flash"] {
        let e = expected(name);
        let model = load(&fixture(name));
        let mut cache = model.new_cache();
        greedy(&model, &e.prompt, 64, &mut cache);
        let mut ring_bytes = 0;
        let mut bound = 0;
        for (i, a) in model.config().layers.iter().enumerate() {
            if let (Some(w), tessera_lm::LayerCache::Window(r)) =
                (a.window, cache.layer_mut(i).unwrap())
            {
                ring_bytes += r.allocated_bytes();
                bound += (w as u64) * a.kv_elems_per_token() * 4;
            }
        }
        assert!(bound > 0, "{name} has window layers");
        assert_eq!(ring_bytes, bound, "{name}: rings are exactly their windows");
    }
}

/// MiMo-V2-Flash's own config.json form (`hybrid_layer_pattern`, `swa_*`,
/// `sliding_window_size`) over the same weights reads as the transformers form does.
#[test]
fn mimo_hub_config_form_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("mimo_v2_flash").join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let config = serde_json::json!({
        "architectures": ["MiMoV2FlashForCausalLM"], "model_type": "mimo_v2_flash",
        "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 24, "v_head_dim": 16,
        "swa_num_attention_heads": 4, "swa_num_key_value_heads": 2, "swa_head_dim": 24,
        "swa_v_head_dim": 16, "hybrid_layer_pattern": [0, 1, 1, 0], "moe_layer_freq": [0, 0, 0, 0],
        "sliding_window": 8, "sliding_window_size": 8, "partial_rotary_factor": 0.334,
        "rope_theta": 5000000.0, "swa_rope_theta": 10000.0, "attention_value_scale": 0.707,
        "add_swa_attention_sink_bias": true, "add_full_attention_sink_bias": false,
        "layernorm_epsilon": 1e-5, "max_position_embeddings": 512, "tie_word_embeddings": false,
        "bos_token_id": 1, "eos_token_id": 2
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let e = expected("mimo_v2_flash");
    let model = load(dir.path());
    let logits = chunked_logits(&model, &e.prompt, &[5, 1, 11]);
    let err = max_abs_diff(&logits, &e.logits);
    assert!(err <= TOLERANCE, "max error {err}");
}

/// bf16 compute runs and stays close to the f32 reference (no exactness claim: bf16 rounding).
#[test]
fn bf16_compute_is_close() {
    let e = expected("llama");
    let model = Decoder::load(fixture("llama"), DType::BF16, &Device::Cpu).unwrap();
    let mut cache = model.new_cache();
    let logits = model.forward(&e.prompt, &mut cache).unwrap();
    let err = max_abs_diff(&logits, &e.logits);
    assert!(err < 0.1, "bf16 max error {err}");
}

/// Prompts longer than a block of the CPU attention kernel (64 positions) and than every window:
/// one forward pass (several query blocks, windows cutting through blocks) agrees with chunked
/// prefill and with one token at a time (single queries, no mask), whose exactness the
/// transformers fixtures establish.
#[test]
fn long_prompts_agree_across_chunkings() {
    for name in ["llama", "qwen2", "gemma3", "mimo_v2_flash"] {
        let e = expected(name);
        let ids: Vec<u32> = e.prompt.iter().cycle().take(200).copied().collect();
        let model = load(&fixture(name));
        let whole = chunked_logits(&model, &ids, &[200]);
        for chunks in [&[1][..], &[65, 1, 70, 3], &[130, 64]] {
            let err = max_abs_diff(&whole, &chunked_logits(&model, &ids, chunks));
            assert!(err <= 1e-5, "{name} chunks {chunks:?}: {err}");
        }
        // The first 40 positions are the fixture's prompt.
        let err = max_abs_diff(&whole.narrow(0, 0, e.prompt.len()).unwrap(), &e.logits);
        assert!(err <= TOLERANCE, "{name}: {err}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let model = load(&fixture("llama"));
    let mut cache = model.new_cache();
    let err = model
        .forward(&[1, 999], &mut cache)
        .unwrap_err()
        .to_string();
    assert!(err.contains("token id 999"), "{err}");
    assert!(model.forward(&[], &mut cache).is_err());
    let other = load(&fixture("qwen2"));
    let mut wrong = other.new_cache();
    assert!(model.forward(&[1], &mut wrong).is_err());

    // A config that disagrees with the weights names the weight and the file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("llama").join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("llama").join("config.json")).unwrap(),
    )
    .unwrap();
    cfg["intermediate_size"] = serde_json::json!(96);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let err = Decoder::load(dir.path(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mlp") && err.contains("model.safetensors"),
        "{err}"
    );

    cfg["intermediate_size"] = serde_json::json!(128);
    cfg["num_hidden_layers"] = serde_json::json!(3);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let err = Decoder::load(dir.path(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layers.2") && err.contains("missing"), "{err}");

    cfg["num_hidden_layers"] = serde_json::json!(2);
    cfg["num_attention_heads"] = serde_json::json!(0);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let err = Decoder::load(dir.path(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("num_attention_heads"),
        "{err}"
    );
}

#[test]
fn generate_matches_transformers_with_chunked_prefill() {
    for name in FAMILIES {
        let e = expected(name);
        let model = load(&fixture(name));
        for chunk in [1, 7, 512] {
            let opts = GenerateOptions {
                prefill_chunk: chunk,
                ..GenerateOptions::new(e.greedy.len())
            };
            let g = generate(&model, &e.prompt, &opts).unwrap();
            assert_eq!(g.ids, e.greedy, "{name} prefill chunk {chunk}");
            assert_eq!(g.finish, FinishReason::Length);
        }
    }
}

#[test]
fn stop_tokens_and_seeded_sampling() {
    let e = expected("qwen3");
    let model = load(&fixture("qwen3"));
    let stop = e.greedy[5];
    let opts = GenerateOptions {
        stop_tokens: vec![stop],
        ..GenerateOptions::new(64)
    };
    let g = generate(&model, &e.prompt, &opts).unwrap();
    let first = e.greedy.iter().position(|&t| t == stop).unwrap();
    assert_eq!(g.ids, e.greedy[..=first].to_vec());
    assert_eq!(g.finish, FinishReason::Stop(stop));

    let sampled = |seed| {
        let opts = GenerateOptions {
            sampling: SamplingParams {
                temperature: 1.5,
                top_k: Some(50),
                top_p: Some(0.95),
                ..SamplingParams::greedy()
            },
            seed,
            ..GenerateOptions::new(32)
        };
        generate(&model, &e.prompt, &opts).unwrap().ids
    };
    assert_eq!(sampled(3), sampled(3));
    assert_ne!(sampled(3), sampled(4));
    assert_ne!(sampled(3), e.greedy[..32].to_vec());
}

/// Real-size configs with random weights (scripts/reference/lm_full_size.py writes them; too
/// large to commit). Run with TESSERA_LM_FULL_SIZE_DIR set and `--ignored`.
#[test]
#[ignore]
fn full_size_reference() {
    let Ok(root) = std::env::var("TESSERA_LM_FULL_SIZE_DIR") else {
        panic!("set TESSERA_LM_FULL_SIZE_DIR to the output of lm_full_size.py");
    };
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.safetensors").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let t =
            candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
        let prompt: Vec<u32> = t["prompt"]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|x| x as u32)
            .collect();
        let model = load(&dir);
        let mut cache = model.new_cache();
        let full = model.forward(&prompt, &mut cache).unwrap();
        let chunked = chunked_logits(&model, &prompt, &[61, 1, 1, 30]);
        let err = max_abs_diff(&full, &t["logits"]);
        let err_chunked = max_abs_diff(&chunked, &t["logits"]);
        let scale = t["logits"]
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        println!(
            "{}: max |err| {err:.3e} (chunked {err_chunked:.3e}), max |logit| {scale:.2}",
            dir.file_name().unwrap().to_string_lossy()
        );
        assert!(err <= TOLERANCE && err_chunked <= TOLERANCE);
    }
}
