"""Side-by-side speed of a ~100M-parameter Llama-shaped decoder: transformers on CPU.

Writes the checkpoint (random weights) once, then times transformers' prefill and greedy decode
with its KV cache on the same prompt as lm/examples/lm_speed.rs, at the given thread count.

Run:
  HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/lm_speed.py /tmp/tessera-lm-100m 2
  cargo run -p tessera-lm --release --example lm_speed -- /tmp/tessera-lm-100m 512 128
"""
import json
import os
import sys
import time

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

PROMPT_LEN, NEW = 512, 128


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tessera-lm-100m"
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048,
                      num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                      max_position_embeddings=4096, tie_word_embeddings=True,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    if not os.path.exists(os.path.join(out, "config.json")):
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(out)
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    params = sum(p.numel() for p in model.parameters())
    v = cfg.vocab_size
    prompt = torch.tensor([[(i * 2654435761 + 12345) % (v - 3) + 3 for i in range(PROMPT_LEN)]])
    for attn in ["eager", "sdpa"]:
        model.config._attn_implementation = attn
        with torch.no_grad():
            model(prompt[:, :16])
            cache = DynamicCache(config=model.config)
            t0 = time.perf_counter()
            logits = model(prompt, past_key_values=cache, logits_to_keep=1).logits
            t1 = time.perf_counter()
            tok = logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(NEW - 1):
                logits = model(tok, past_key_values=cache).logits
                tok = logits[:, -1].argmax(-1, keepdim=True)
            t2 = time.perf_counter()
        print(json.dumps({"impl": f"transformers-{attn}", "params_m": round(params / 1e6, 1),
                          "threads": threads, "prefill_tok_s": round(PROMPT_LEN / (t1 - t0), 1),
                          "decode_tok_s": round((NEW - 1) / (t2 - t1), 1)}))


if __name__ == "__main__":
    main()
