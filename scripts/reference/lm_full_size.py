"""Full-size check of tessera-lm (not committed fixtures: gigabytes).

Builds real-size configs with random weights, in the `config.json` form each Hugging Face
repository ships (legacy `rope_theta`/`rope_scaling`, Gemma's `sliding_window_pattern`, MiMo's
`hybrid_layer_pattern` and `swa_*` fields), saves bf16 weights, and the f32 logits transformers
computes for a random prompt. MiMo-V2-Flash keeps its real attention shapes (hidden 4096, 64
heads, 4/8 KV heads, head dims 192/128, window 128 + 1, sinks, partial RoPE) but only two dense
layers and a smaller vocabulary, to fit in memory.

Run:
  HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/lm_full_size.py /tmp/tessera-lm-full
  TESSERA_LM_FULL_SIZE_DIR=/tmp/tessera-lm-full cargo test -p tessera-lm --release \
      --test decoder_fixtures full_size -- --ignored --nocapture
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MiMoV2FlashConfig,
    MiMoV2FlashForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

PROMPT_LEN = 160
torch.set_num_threads(2)

CONFIGS = {
    # Qwen2.5-0.5B
    "qwen2.5-0.5b": (Qwen2ForCausalLM, Qwen2Config, {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "bos_token_id": 151643,
        "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
        "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
        "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
        "tie_word_embeddings": True, "use_sliding_window": False, "vocab_size": 151936,
    }, {}),
    # Qwen3-0.6B
    "qwen3-0.6b": (Qwen3ForCausalLM, Qwen3Config, {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False,
        "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
        "hidden_size": 1024, "intermediate_size": 3072, "max_position_embeddings": 40960,
        "max_window_layers": 28, "num_attention_heads": 16, "num_hidden_layers": 28,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": True,
        "use_sliding_window": False, "vocab_size": 151936,
    }, {}),
    # gemma-3-1b
    "gemma-3-1b": (Gemma3ForCausalLM, Gemma3TextConfig, {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "attn_logit_softcapping": None, "bos_token_id": 2, "eos_token_id": [1, 106],
        "final_logit_softcapping": None, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": 1152, "intermediate_size": 6912, "max_position_embeddings": 32768,
        "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
        "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000,
        "rope_scaling": None, "rope_theta": 1000000, "sliding_window": 512,
        "sliding_window_pattern": 6, "vocab_size": 262144,
    }, {}),
    # Llama-3.2-1B
    "llama-3.2-1b": (LlamaForCausalLM, LlamaConfig, {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
        "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
        "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 131072,
        "mlp_bias": False, "num_attention_heads": 32, "num_hidden_layers": 16,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256,
    }, {}),
    # MiMo-V2-Flash attention at full size, two dense layers (global, window).
    "mimo-v2-flash-2layer": (MiMoV2FlashForCausalLM, MiMoV2FlashConfig, {
        "architectures": ["MiMoV2FlashForCausalLM"], "model_type": "mimo_v2_flash",
        "attention_value_scale": 0.707, "head_dim": 192, "v_head_dim": 128, "hidden_size": 4096,
        "intermediate_size": 16384, "num_hidden_layers": 2, "num_attention_heads": 64,
        "num_key_value_heads": 4, "swa_num_attention_heads": 64, "swa_num_key_value_heads": 8,
        "swa_head_dim": 192, "swa_v_head_dim": 128, "hybrid_layer_pattern": [0, 1],
        "moe_layer_freq": [0, 0], "partial_rotary_factor": 0.334, "rope_theta": 5000000,
        "swa_rope_theta": 10000, "sliding_window": 128, "sliding_window_size": 128,
        "add_swa_attention_sink_bias": True, "add_full_attention_sink_bias": False,
        "layernorm_epsilon": 1e-05, "max_position_embeddings": 262144, "vocab_size": 32000,
        "tie_word_embeddings": False,
    }, {"mlp_layer_types": ["dense", "dense"], "rms_norm_eps": 1e-05}),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tessera-lm-full"
    only = sys.argv[2:]
    for name, (cls, cfg_cls, hub, extra) in CONFIGS.items():
        if only and name not in only:
            continue
        torch.manual_seed(0)
        kwargs = {k: v for k, v in hub.items() if k not in ("architectures", "model_type")}
        kwargs.update(extra)
        config = cfg_cls(**kwargs)
        config._attn_implementation = "eager"
        model = cls(config).eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("sinks"):
                    p.normal_(0.0, 1.0)
                p.copy_(p.to(torch.bfloat16).float())
        prompt = torch.randint(3, config.vocab_size, (PROMPT_LEN,))
        with torch.no_grad():
            logits = model(prompt[None]).logits[0].float()
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model.to(torch.bfloat16).save_pretrained(d)
        # What the Hub repository ships, not what transformers writes.
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(hub, f, indent=2)
        save_file({"prompt": prompt.to(torch.int64), "logits": logits.contiguous()},
                  os.path.join(d, "expected.safetensors"))
        print(name, sum(p.numel() for p in model.parameters()) / 1e6, "M params", flush=True)
        del model


if __name__ == "__main__":
    main()
