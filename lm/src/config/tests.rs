use serde_json::json;

use super::*;

fn parse(v: serde_json::Value) -> Result<DecoderConfig> {
    DecoderConfig::from_json(&v)
}

fn err(v: serde_json::Value) -> String {
    parse(v).unwrap_err().to_string()
}

/// A Llama 3.2 1B config in the form its Hub repository ships (legacy `rope_scaling`).
fn llama32_hub() -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "attention_bias": false, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192,
        "max_position_embeddings": 131072, "mlp_bias": false, "num_attention_heads": 32,
        "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
        "vocab_size": 128256
    })
}

#[test]
fn llama_hub_form() {
    let c = parse(llama32_hub()).unwrap();
    assert_eq!(c.family, Family::Llama);
    assert_eq!(c.num_layers(), 16);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
    let a = &c.layers[0];
    assert_eq!((a.num_heads, a.num_kv_heads, a.head_dim), (32, 8, 64));
    assert_eq!(a.window, None);
    assert_eq!(a.rope.theta, 500000.0);
    assert_eq!(a.rope.rotary_dim, 64);
    assert_eq!(
        a.rope.scaling,
        RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0
        }
    );
    assert!(!a.qkv_bias && !a.qk_norm && !a.sinks);
}

#[test]
fn qwen2_windows_from_max_window_layers() {
    let mut v = json!({
        "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
        "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
        "rope_theta": 1000000.0, "sliding_window": 32768, "max_window_layers": 21,
        "tie_word_embeddings": true, "use_sliding_window": false, "vocab_size": 151936
    });
    let c = parse(v.clone()).unwrap();
    assert!(c.layers.iter().all(|a| a.window.is_none()));
    assert!(c.layers[0].qkv_bias && !c.layers[0].o_bias);
    assert_eq!(c.layers[0].head_dim, 64);
    v["use_sliding_window"] = json!(true);
    v["sliding_window"] = json!(4096);
    let c = parse(v).unwrap();
    let windows: Vec<_> = c.layers.iter().map(|a| a.window).collect();
    assert_eq!(windows[20], None);
    assert_eq!(windows[21], Some(4096));
    assert_eq!(windows[23], Some(4096));
}

#[test]
fn qwen3_head_dim_and_qk_norm() {
    let c = parse(json!({
        "model_type": "qwen3", "head_dim": 128, "hidden_size": 1024, "intermediate_size": 3072,
        "max_position_embeddings": 40960, "num_attention_heads": 16, "num_hidden_layers": 28,
        "num_key_value_heads": 8, "rope_scaling": null, "rope_theta": 1000000,
        "sliding_window": null, "use_sliding_window": false, "vocab_size": 151936,
        "attention_bias": false, "tie_word_embeddings": true
    }))
    .unwrap();
    let a = &c.layers[0];
    assert_eq!((a.num_heads, a.head_dim), (16, 128));
    assert!(a.qk_norm);
    assert_eq!(a.softmax_scale, 128f64.powf(-0.5));
}

#[test]
fn gemma3_hub_form_pattern_and_ropes() {
    let c = parse(json!({
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "attn_logit_softcapping": null, "bos_token_id": 2, "eos_token_id": [1, 106],
        "final_logit_softcapping": null, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": 1152, "intermediate_size": 6912, "max_position_embeddings": 32768,
        "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
        "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000,
        "rope_scaling": null, "rope_theta": 1000000, "sliding_window": 512,
        "sliding_window_pattern": 6, "vocab_size": 262144
    }))
    .unwrap();
    assert_eq!(c.family, Family::Gemma3);
    assert!(c.tie_word_embeddings && c.sandwich_norms);
    assert_eq!(c.norm_weight_offset, 1.0);
    assert_eq!(c.activation, Activation::GeluTanh);
    assert_eq!(c.embed_scale, Some(1152f64.sqrt()));
    for (i, a) in c.layers.iter().enumerate() {
        let global = (i + 1) % 6 == 0;
        assert_eq!(a.window, if global { None } else { Some(512) }, "layer {i}");
        assert_eq!(a.rope.theta, if global { 1e6 } else { 1e4 }, "layer {i}");
        assert!(a.qk_norm);
    }
    assert_eq!(c.layers[0].softmax_scale, 1.0 / 16.0);
}

#[test]
fn gemma3_multimodal_wrapper_uses_text_config_and_class_defaults() {
    // The 4B checkpoint's text_config leaves heads and vocabulary to the class defaults.
    let c = parse(json!({
        "model_type": "gemma3", "eos_token_id": [1, 106],
        "text_config": {
            "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
            "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024
        }
    }))
    .unwrap();
    assert_eq!(c.vocab_size, 262_208);
    assert_eq!(c.eos_token_ids, vec![1, 106]);
    let global = &c.layers[5];
    assert_eq!((global.num_heads, global.num_kv_heads), (8, 4));
    assert_eq!(global.rope.scaling, RopeScaling::Linear { factor: 8.0 });
    assert_eq!(c.layers[0].rope.scaling, RopeScaling::None);
    let map = c.key_map();
    assert_eq!(
        map.apply("language_model.model.layers.0.mlp.up_proj.weight")
            .unwrap(),
        "model.layers.0.mlp.up_proj.weight"
    );
    assert!(map.apply("vision_tower.vision_model.x").is_none());
}

/// MiMo-V2-Flash's own config.json form (12 of its 48 layers).
fn mimo_hub() -> serde_json::Value {
    json!({
        "architectures": ["MiMoV2FlashForCausalLM"], "model_type": "mimo_v2_flash",
        "attention_value_scale": 0.707, "head_dim": 192, "v_head_dim": 128,
        "hidden_size": 4096, "intermediate_size": 16384, "num_hidden_layers": 12,
        "num_attention_heads": 64, "num_key_value_heads": 4,
        "swa_num_attention_heads": 64, "swa_num_key_value_heads": 8,
        "swa_head_dim": 192, "swa_v_head_dim": 128,
        "hybrid_layer_pattern": [0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0],
        "moe_layer_freq": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        "partial_rotary_factor": 0.334, "rope_theta": 5000000, "swa_rope_theta": 10000,
        "sliding_window": 128, "sliding_window_size": 128,
        "add_swa_attention_sink_bias": true, "add_full_attention_sink_bias": false,
        "layernorm_epsilon": 1e-05, "max_position_embeddings": 262144, "vocab_size": 152576
    })
}

#[test]
fn mimo_hub_form() {
    let c = parse(mimo_hub()).unwrap();
    let (full, swa) = (&c.layers[0], &c.layers[1]);
    assert_eq!(full.window, None);
    assert_eq!(
        swa.window,
        Some(129),
        "sliding_window_size previous tokens + the query"
    );
    assert_eq!((full.num_kv_heads, swa.num_kv_heads), (4, 8));
    assert_eq!((full.head_dim, full.v_head_dim), (192, 128));
    assert_eq!((full.rope.rotary_dim, swa.rope.rotary_dim), (64, 64));
    assert_eq!((full.rope.theta, swa.rope.theta), (5e6, 1e4));
    assert!(!full.sinks && swa.sinks);
    assert_eq!(full.value_scale, 0.707);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.layers.iter().filter(|a| a.is_window()).count(), 9);
}

#[test]
fn mimo_moe_is_refused() {
    let mut v = mimo_hub();
    v["moe_layer_freq"][3] = json!(1);
    assert!(err(v).contains("layer 3 is a mixture-of-experts"));
    let mut v = mimo_hub();
    v.as_object_mut().unwrap().remove("moe_layer_freq");
    assert!(err(v).contains("mixture-of-experts"));
}

#[test]
fn kv_figure_five_to_one_window_128_at_32k() {
    // 48 layers, every sixth global, 8 KV heads of 128 dims, bf16 entries.
    let mut v = mimo_hub();
    let pattern: Vec<u8> = (0..48).map(|i| u8::from((i + 1) % 6 != 0)).collect();
    v["num_hidden_layers"] = json!(48);
    v["hybrid_layer_pattern"] = json!(pattern);
    v["moe_layer_freq"] = json!(vec![0; 48]);
    for key in ["num_key_value_heads", "swa_num_key_value_heads"] {
        v[key] = json!(8);
    }
    for key in ["head_dim", "v_head_dim", "swa_head_dim", "swa_v_head_dim"] {
        v[key] = json!(128);
    }
    v["sliding_window_size"] = json!(127);
    let c = parse(v).unwrap();
    let per_token_layer = 8 * 256 * 2;
    let hybrid = c.kv_cache_bytes(32768, 2);
    let global = c.all_global().kv_cache_bytes(32768, 2);
    assert_eq!(hybrid, (8 * 32768 + 40 * 128) * per_token_layer);
    assert_eq!(global, 48 * 32768 * per_token_layer);
    assert_eq!(hybrid, 1_094_713_344);
    assert_eq!(global, 6_442_450_944);
    let ratio = global as f64 / hybrid as f64;
    assert!((ratio - 5.885).abs() < 1e-3, "{ratio}");
    // Shorter than the window, windows cost the same as global layers.
    assert_eq!(
        c.kv_cache_bytes(100, 2),
        c.all_global().kv_cache_bytes(100, 2)
    );
}

#[test]
fn kv_figure_of_mimo_v2_flash_head_shapes() {
    // The real head shapes: 4 global KV heads, 8 window KV heads, 192 + 128 dims.
    let mut v = mimo_hub();
    let pattern: Vec<u8> = (0..48)
        .map(|i| u8::from(!(i == 0 || (i + 1) % 6 == 0)))
        .collect();
    v["num_hidden_layers"] = json!(48);
    v["hybrid_layer_pattern"] = json!(pattern);
    v["moe_layer_freq"] = json!(vec![0; 48]);
    let c = parse(v).unwrap();
    let hybrid = c.kv_cache_bytes(32768, 2);
    assert_eq!(hybrid, (9 * 32768 * 4 * 320 + 39 * 129 * 8 * 320) * 2);
    let global = c.all_global().kv_cache_bytes(32768, 2);
    assert_eq!(global, (9 * 4 + 39 * 8) * 32768 * 320 * 2);
    assert_eq!((hybrid, global), (780_733_440, 7_298_088_960));
}

#[test]
fn bad_configs_are_errors() {
    let with = |key: &str, value: serde_json::Value| {
        let mut v = llama32_hub();
        v[key] = value;
        err(v)
    };
    assert!(with("num_attention_heads", json!(0)).contains("num_attention_heads = 0"));
    assert!(with("num_key_value_heads", json!(0)).contains("num_key_value_heads = 0"));
    assert!(with("num_key_value_heads", json!(5)).contains("evenly"));
    assert!(with("hidden_size", json!(1u64 << 40)).contains("hidden_size"));
    assert!(with("vocab_size", json!(u64::MAX)).contains("vocab_size"));
    assert!(with("num_hidden_layers", json!(0)).contains("num_hidden_layers"));
    assert!(with("num_hidden_layers", json!(1_000_000)).contains("num_hidden_layers"));
    assert!(with("hidden_size", json!(-3)).contains("not a non-negative integer"));
    assert!(with("hidden_size", json!("big")).contains("hidden_size"));
    assert!(with("rms_norm_eps", json!(-1.0)).contains("rms_norm_eps"));
    assert!(with("rope_theta", json!(0.0)).contains("rope_theta"));
    assert!(with("model_type", json!("mamba")).contains("not supported"));
    assert!(with("eos_token_id", json!(999_999_999)).contains("outside the vocabulary"));
    assert!(with("hidden_act", json!("relu2")).contains("not supported"));
    let mut v = llama32_hub();
    v.as_object_mut().unwrap().remove("head_dim");
    v["hidden_size"] = json!(2050);
    assert!(err(v).contains("not divisible"));
    let mut v = llama32_hub();
    v["rope_scaling"]["rope_type"] = json!("yarn");
    assert!(err(v).contains("rope type 'yarn'"));
    let mut v = llama32_hub();
    v["head_dim"] = json!(63);
    assert!(err(v).contains("rotary"));
    assert!(err(json!([1, 2])).contains("JSON object"));
    let mut v = mimo_hub();
    v["hybrid_layer_pattern"] = json!([0, 1]);
    assert!(err(v).contains("hybrid_layer_pattern lists 2"));
    let mut v = mimo_hub();
    v["partial_rotary_factor"] = json!(1.5);
    assert!(err(v).contains("partial_rotary_factor"));
}

#[test]
fn transformers_saved_fixtures_parse() {
    for (name, text) in [
        (
            "llama",
            include_str!("../../tests/fixtures/llama/config.json"),
        ),
        (
            "qwen2",
            include_str!("../../tests/fixtures/qwen2/config.json"),
        ),
        (
            "qwen3",
            include_str!("../../tests/fixtures/qwen3/config.json"),
        ),
        (
            "gemma3",
            include_str!("../../tests/fixtures/gemma3/config.json"),
        ),
        (
            "mimo_v2_flash",
            include_str!("../../tests/fixtures/mimo_v2_flash/config.json"),
        ),
    ] {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let c = parse(v).unwrap_or_else(|e| panic!("{name}: {e}"));
        match name {
            "qwen2" => {
                let w: Vec<_> = c.layers.iter().map(|a| a.window).collect();
                assert_eq!(w, vec![None, None, Some(8), Some(8)]);
            }
            "gemma3" => {
                assert_eq!(c.layers[2].window, None);
                assert_eq!(
                    c.layers[2].rope.scaling,
                    RopeScaling::Linear { factor: 8.0 }
                );
                assert_eq!(c.layers[0].logit_softcap, None);
                assert_eq!(c.final_logit_softcap, Some(8.0));
            }
            "mimo_v2_flash" => {
                assert_eq!(c.layers[1].window, Some(9));
                assert_eq!(c.layers[1].num_kv_heads, 2);
                assert_eq!(c.layers[0].num_kv_heads, 1);
                assert_eq!(c.layers[0].rope.rotary_dim, 8);
                assert!(c.layers[1].sinks && !c.layers[0].sinks);
            }
            _ => {}
        }
    }
}
