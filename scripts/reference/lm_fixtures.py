"""Fixtures for tessera-lm's decoder (lm/tests/decoder_fixtures.rs).

Builds tiny random models of each supported architecture with transformers (eager attention),
saves them as their Hugging Face repositories do (`config.json` + bf16 `model.safetensors` via
`save_pretrained`), and records, for a prompt longer than the sliding window:

- `prompt`: the prompt ids (i64, [L])
- `logits`: the logits of every prompt position (f32, [L, vocab])
- `greedy`: 64 greedily generated ids (i64, [64]) from `generate()` with its KV cache, checked
  here against a cache-free loop that re-runs the whole sequence every step
- `mtp_logits` (MiMo checkpoints): logits of the multi-token-prediction layer over the prompt,
  position t fed the main model's final (normed) hidden state at t and the embedding of token
  t + 1, as MiMo trains and drafts with it; the MTP weights are stored under the checkpoint's
  own names (`model.mtp_layers.*` for MiMo-7B, `model.mtp.layers.*` for MiMo-V2-Flash)
- `min_margin`: the smallest gap between the best and second-best logit on the greedy path, so
  that an identical-generation test is meaningful (ties would make it a coin toss)

Weights are saved in bf16 (as the real checkpoints are) and the reference runs in f32 on those
same bf16-representable values, so the Rust side loads bf16 and computes in f32 exactly alike.

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/lm_fixtures.py
"""
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file
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

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "lm", "tests", "fixtures")
PROMPT_LEN = 40
NEW_TOKENS = 64
torch.set_num_threads(1)

COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    max_position_embeddings=512,
    initializer_range=0.08,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def models():
    yield "llama", LlamaForCausalLM, LlamaConfig(
        **COMMON,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        # original_max_position_embeddings 256 puts the 8 frequencies of head_dim 16 in all three
        # llama3 regimes (kept, smoothed, divided by factor).
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 256,
        },
    )
    # Qwen2 with sliding-window attention on the layers from max_window_layers on.
    yield "qwen2", Qwen2ForCausalLM, Qwen2Config(
        **COMMON,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=2,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )
    yield "qwen3", Qwen3ForCausalLM, Qwen3Config(
        **COMMON,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )
    # MiMo-7B: a Qwen2 body with one MTP layer (`model_type` "mimo"; saved as Qwen2, then retyped).
    yield "mimo_7b", Qwen2ForCausalLM, Qwen2Config(
        **COMMON,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 640000.0},
    )
    yield "gemma3", Gemma3ForCausalLM, Gemma3TextConfig(
        **COMMON,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=24,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        # Real Gemma 3 configs leave the cap null; a small value here makes it bite.
        # (attn_logit_softcapping is left out: transformers' Gemma 3 attention never applies it.)
        final_logit_softcapping=8.0,
    )
    yield "mimo_v2_flash", MiMoV2FlashForCausalLM, MiMoV2FlashConfig(
        **COMMON,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=24,
        v_head_dim=16,
        sliding_window=9,
        layer_types=["full_attention", "sliding_attention", "sliding_attention", "full_attention"],
        mlp_layer_types=["dense"] * 4,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 5000000.0, "partial_rotary_factor": 0.334},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.334},
        },
        attention_value_scale=0.707,
        tie_word_embeddings=False,
    )


def randomize(model, gen):
    """Norm weights and sinks away from their neutral init, so that every one of them matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
            elif name.endswith("sinks") or name.endswith("attention_sink_bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 1.5)


def bf16_exact(model):
    """Round every weight to bf16 and back: the saved bf16 file then holds the exact values."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


class MtpLayer(torch.nn.Module):
    """One MiMo multi-token-prediction layer, written from the published architecture:
    norms of the token embedding and of the main model's hidden state, their concatenation
    projected back to the hidden size, one decoder block, a final norm; the LM head is shared.
    MiMo-7B concatenates [hidden, embedding]; MiMo-V2-Flash [embedding, hidden] and its block
    uses the sliding-window attention (with sinks)."""

    def __init__(self, model, layout):
        super().__init__()
        cfg = model.config
        self.layout = layout
        layers = model.model.layers
        norm_cls = type(layers[0].input_layernorm)
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.token_norm = norm_cls(h, eps=eps)
        self.hidden_norm = norm_cls(h, eps=eps)
        self.proj = torch.nn.Linear(2 * h, h, bias=False)
        # A fresh block of the right kind: a copy of one layer's modules, re-initialised.
        self.sliding = layout == "v2"
        src = next(l for l in layers if (l.self_attn.sliding_window is not None) == self.sliding)
        self.block = type(src)(cfg, layer_idx=list(layers).index(src))
        self.final_norm = norm_cls(h, eps=eps)

    def forward(self, model, hidden, next_ids, positions):
        e = self.token_norm(model.model.embed_tokens(next_ids))
        hn = self.hidden_norm(hidden)
        x = self.proj(torch.cat([hn, e] if self.layout == "7b" else [e, hn], dim=-1))
        n = x.shape[1]
        layer_type = "sliding_attention" if self.sliding else "full_attention"
        if layer_type in getattr(model.model.rotary_emb, "layer_types", []):
            pe = model.model.rotary_emb(x, positions, layer_type)
        else:
            pe = model.model.rotary_emb(x, positions)
        q = torch.arange(n)[:, None]
        k = torch.arange(n)[None, :]
        visible = k <= q
        if self.sliding:
            visible &= k > q - model.config.sliding_window
        mask = torch.zeros(n, n).masked_fill(~visible, float("-inf"))[None, None]
        x = self.block(x, attention_mask=mask, position_embeddings=pe, position_ids=positions)
        return self.final_norm(x)

    def checkpoint_weights(self):
        """The weights under the names the released checkpoints use."""
        out = {}
        sd = self.state_dict()
        if self.layout == "7b":
            names = {"token_norm": "token_layernorm", "hidden_norm": "hidden_layernorm",
                     "proj": "input_proj", "final_norm": "final_layernorm"}
            prefix = "model.mtp_layers.0."
        else:
            names = {"token_norm": "enorm", "hidden_norm": "hnorm", "proj": "eh_proj",
                     "final_norm": "final_layernorm"}
            prefix = "model.mtp.layers.0."
        for k, v in sd.items():
            head, rest = k.split(".", 1)
            if head == "block":
                if self.layout == "v2":
                    rest = rest.replace("post_attention_layernorm", "pre_mlp_layernorm")
                    rest = rest.replace("self_attn.sinks", "self_attn.attention_sink_bias")
                name = prefix + rest
            else:
                name = prefix + names[head] + "." + rest
            out[name] = v
        return out


def greedy_no_cache(model, prompt, n):
    ids = prompt.clone()
    margins = []
    for _ in range(n):
        logits = model(ids[None]).logits[0, -1]
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        ids = torch.cat([ids, logits.argmax()[None]])
    return ids[len(prompt):], min(margins)


def main():
    sizes = {}
    for seed, (name, cls, config) in enumerate(models()):
        torch.manual_seed(1000 + seed)
        gen = torch.Generator().manual_seed(2000 + seed)
        config._attn_implementation = "eager"
        model = cls(config).eval()
        randomize(model, gen)
        bf16_exact(model)
        prompt = torch.randint(3, config.vocab_size, (PROMPT_LEN,), generator=gen)

        with torch.no_grad():
            logits = model(prompt[None]).logits[0].float()
            out = model.generate(
                prompt[None],
                attention_mask=torch.ones(1, PROMPT_LEN, dtype=torch.long),
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )[0, PROMPT_LEN:]
            loop, margin = greedy_no_cache(model, prompt, NEW_TOKENS)
        assert torch.equal(out, loop), f"{name}: generate() with cache disagrees with the plain loop"
        assert margin > 1e-4, f"{name}: greedy path has a near-tie ({margin}); pick another seed"

        mtp = None
        layout = {"mimo_7b": "7b", "mimo_v2_flash": "v2"}.get(name)
        if layout:
            mtp = MtpLayer(model, layout).eval()
            randomize(mtp, gen)
            bf16_exact(mtp)
            with torch.no_grad():
                out_h = model.model(prompt[None]).last_hidden_state
                positions = torch.arange(PROMPT_LEN - 1)[None]
                g = mtp(model, out_h[:, :-1], prompt[None, 1:], positions)
                mtp_logits = model.lm_head(g)[0].float()

        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        model.to(torch.bfloat16).save_pretrained(d)
        if mtp is not None:
            weights = load_file(os.path.join(d, "model.safetensors"))
            weights.update({k: v.to(torch.bfloat16) for k, v in mtp.checkpoint_weights().items()})
            save_file(weights, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        if name == "mimo_7b":
            with open(os.path.join(d, "config.json")) as f:
                cfg = json.load(f)
            cfg.update(model_type="mimo", architectures=["MiMoForCausalLM"], num_nextn_predict_layers=1)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(cfg, f, indent=2, sort_keys=True)
        for extra in ["generation_config.json"]:
            p = os.path.join(d, extra)
            if os.path.exists(p):
                os.remove(p)
        tensors = {
            "prompt": prompt.to(torch.int64).contiguous(),
            "logits": logits.contiguous(),
            "greedy": out.to(torch.int64).contiguous(),
        }
        if mtp is not None:
            tensors["mtp_logits"] = mtp_logits.contiguous()
        save_file(
            tensors,
            os.path.join(d, "expected.safetensors"),
        )
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump({"min_margin": margin, "transformers_class": cls.__name__}, f, indent=1)
        sizes[name] = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{name}: margin {margin:.4f}, greedy {out[:12].tolist()}..., {sizes[name]} bytes")
    print(f"total {sum(sizes.values())} bytes")


if __name__ == "__main__":
    main()
