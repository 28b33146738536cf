"""Side-by-side decoder speed: tessera vs transformers (eager, sdpa) vs candle-transformers.

Run from the repository root with the reference environment:

    HF_HUB_OFFLINE=1 /work/refenv/bin/python benches/compare/lm_vs_peers.py --threads 2 --rounds 5 \
        [--family llama|gemma3]

A ~100M-parameter Llama (`--family llama`: hidden 768, 12 layers, 12 heads / 4 KV heads, MLP
2048, vocabulary 32000, tied embeddings; the shape of benches/src/lm.rs) or Gemma 3 of the same
size (`--family gemma3`, five 128-token window layers to one global) is saved once with random
weights by transformers (f32 safetensors in --dir) and loaded by all implementations. Each round
runs, one after the other: tessera, for Llama also tessera with five 128-token sliding-window
layers to one global layer (same weights), candle-transformers' llama or gemma3
(benches/examples/lm_speed.rs, release build), and transformers' model with eager and sdpa
attention, all on the same 512-token prompt
(one prefill forward, logits of the last position) followed by 128 greedy tokens with the KV
cache, at the same thread count. Rounds interleave the implementations so that a change in
machine load hits all of them; the summary gives medians over rounds, and ratios taken within
each round (tessera speed / peer speed, > 1: tessera faster) then their median.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from transformers import (AutoModelForCausalLM, DynamicCache, Gemma3ForCausalLM, Gemma3TextConfig,
                          LlamaConfig, LlamaForCausalLM)

TORCH_IMPLS = ["eager", "sdpa"]


def rust_impls(family):
    # The Gemma 3 model is hybrid already (five 128-token window layers to one global layer).
    return ["tessera", "tessera-hybrid", "candle"] if family == "llama" else ["tessera", "candle"]


def build_model(family):
    """~100M parameters: hidden 768, 12 layers, 12 heads / 4 KV heads of 64, MLP 2048, vocab
    32000, tied embeddings. Gemma 3 adds its own norms, GeGLU, and windows of 128 on five layers
    of every six (local RoPE base 10k, global 1M), as the released Gemma 3 configs do."""
    common = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                  num_attention_heads=12, num_key_value_heads=4, head_dim=64,
                  max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  bos_token_id=1, eos_token_id=2)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(
            **common, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}))
    cfg = Gemma3TextConfig(**common, sliding_window=128, query_pre_attn_scalar=64,
                           layer_types=["full_attention" if (i + 1) % 6 == 0 else
                                        "sliding_attention" for i in range(12)])
    return Gemma3ForCausalLM(cfg)


def ensure_checkpoint(path, family):
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        torch.manual_seed(0)
        build_model(family).save_pretrained(path, max_shard_size="10GB")


def prompt_ids(n, vocab):
    # The same formula as benches/src/lm.rs speed_prompt.
    return [(i * 2654435761 + 12345) % (vocab - 3) + 3 for i in range(n)]


def time_torch(model, attn, prompt, new):
    model.config._attn_implementation = attn
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        t0, c0 = time.perf_counter(), time.process_time()
        logits = model(prompt, past_key_values=cache, logits_to_keep=1).logits
        t1, c1 = time.perf_counter(), time.process_time()
        tok = logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(new - 1):
            logits = model(tok, past_key_values=cache).logits
            tok = logits[:, -1].argmax(-1, keepdim=True)
        t2, c2 = time.perf_counter(), time.process_time()
    return {"prefill_tok_s": prompt.shape[1] / (t1 - t0), "decode_tok_s": (new - 1) / (t2 - t1),
            "prefill_cpu_s": c1 - c0, "decode_cpu_s": c2 - c1}


def rust_binary(build):
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    if build:
        subprocess.run(["cargo", "build", "--release", "-p", "tessera-benches", "--example",
                        "lm_speed"], check=True)
    return os.path.join(target, "release", "examples", "lm_speed")


def time_rust(binary, which, path, threads, prompt_len, new):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), CANDLE_NUM_THREADS=str(threads))
    run = subprocess.run([binary, which, path, str(prompt_len), str(new), "1"], env=env,
                         capture_output=True, text=True)
    if run.returncode != 0:
        # A peer that cannot run this model (candle-transformers' gemma3 on the CPU) is reported
        # with its error and left out of the table rather than stopping the comparison.
        return {"failed": (run.stderr.strip().splitlines() or ["no output"])[0]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", choices=["llama", "gemma3"], default="llama")
    ap.add_argument("--dir", help="checkpoint directory (default /tmp/tessera-lm-100m-FAMILY)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    args.dir = args.dir or f"/tmp/tessera-lm-100m-{args.family}"
    ensure_checkpoint(args.dir, args.family)
    binary = rust_binary(not args.no_build)
    model = AutoModelForCausalLM.from_pretrained(args.dir, dtype=torch.float32).eval()
    params = sum(p.numel() for p in model.parameters())
    prompt = torch.tensor([prompt_ids(args.prompt, model.config.vocab_size)])
    for attn in TORCH_IMPLS:  # warm-up at full size, as lm_speed warms up
        time_torch(model, attn, prompt, 4)
    print(f"# {args.family}, {params / 1e6:.1f}M parameters, f32, {args.threads} threads, prompt {args.prompt}, "
          f"{args.new} new tokens, load average {os.getloadavg()[0]:.1f}", flush=True)

    rounds, failed = [], {}
    for r in range(args.rounds):
        row = {}
        for which in rust_impls(args.family):
            if which in failed:
                continue
            result = time_rust(binary, which, args.dir, args.threads, args.prompt, args.new)
            if "failed" in result:
                failed[which] = result["failed"]
                print(f"# {which} failed: {result['failed']}", flush=True)
            else:
                row[which] = result
        for attn in TORCH_IMPLS:
            row[f"transformers-{attn}"] = time_torch(model, attn, prompt, args.new)
        row["loadavg"] = os.getloadavg()[0]
        rounds.append(row)
        print(json.dumps({"round": r, **{k: v if k == "loadavg" else
                                         {m: round(v[m], 3) for m in ("prefill_tok_s", "decode_tok_s",
                                                                      "prefill_cpu_s", "decode_cpu_s")}
                                         for k, v in row.items()}}), flush=True)

    # Speeds per CPU second as well: on a loaded machine a single-threaded run's CPU time is the
    # work it did, whatever share of the cores it got (with several threads it also counts time
    # spent spinning at barriers).
    for row in rounds:
        for name, r in row.items():
            if name != "loadavg":
                r["prefill_cpu_tok_s"] = args.prompt / max(r["prefill_cpu_s"], 1e-3)
                r["decode_cpu_tok_s"] = (args.new - 1) / max(r["decode_cpu_s"], 1e-3)
    impls = [i for i in rust_impls(args.family) if i not in failed]
    impls += [f"transformers-{a}" for a in TORCH_IMPLS]
    metrics = [("prefill_tok_s", "prefill"), ("decode_tok_s", "decode"),
               ("prefill_cpu_tok_s", "prefill/cpu-s"), ("decode_cpu_tok_s", "decode/cpu-s")]
    print("\nmedian tokens/s over rounds (best round in brackets), and the median over rounds of "
          "tessera's speed / the implementation's (> 1: tessera faster)")
    print(f"{'impl':<20}" + "".join(f"{label:>22}" for _, label in metrics))
    for name in impls:
        cells = []
        for m, _ in metrics:
            med = statistics.median(row[name][m] for row in rounds)
            best = max(row[name][m] for row in rounds)
            ratio = statistics.median(row["tessera"][m] / row[name][m] for row in rounds)
            cells.append(f"{med:8.1f} [{best:6.1f}] {ratio:4.2f}x")
        print(f"{name:<20}" + "".join(f"{c:>22}" for c in cells))
    for name, reason in failed.items():
        print(f"{name:<20}failed: {reason}")
    loads = [row["loadavg"] for row in rounds]
    print(f"\nload average during the rounds: {min(loads):.1f}-{max(loads):.1f}")


if __name__ == "__main__":
    sys.exit(main())
