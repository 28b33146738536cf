"""Full-size SNAC check: the real configs of snac_24khz / snac_32khz / snac_44khz with random
weights, run through the reference (snac==1.2.1), for codec/tests/snac_full_check.rs (ignored
by default) to compare against.

Writes, for each model, into OUT (default /tmp/snac_full, never committed):
  <name>/config.json, <name>/pytorch_model.bin   the hub layout, random weights
  <name>/io.safetensors                          inputs and reference outputs, as in
                                                 snac_fixtures.py (audio.<i>, codes.<i>.<k>,
                                                 decoded.<i>, decoded_noise.<i>, noise_seed)
and prints the reference's encode/decode times on this machine.

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/snac_full_check.py [OUT] [SECONDS]
then: TESSERA_SNAC_FULL=OUT cargo test --release -p tessera-codec --test snac_full_check \
        -- --ignored --nocapture
"""
import json
import os
import sys
import time

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snac_fixtures import NOISE_SEED, build, reference_outputs, save_checkpoint, test_signal  # noqa: E402

# The config.json of each hubertsiuzdak/snac_* repository.
CONFIGS = {
    "snac_24khz": dict(
        sampling_rate=24000, encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024,
        decoder_rates=[8, 8, 4, 2], attn_window_size=None, codebook_size=4096, codebook_dim=8,
        vq_strides=[4, 2, 1], noise=True, depthwise=True,
    ),
    "snac_32khz": dict(
        sampling_rate=32000, encoder_dim=64, encoder_rates=[2, 3, 8, 8], decoder_dim=1536,
        decoder_rates=[8, 8, 3, 2], attn_window_size=32, codebook_size=4096, codebook_dim=8,
        vq_strides=[8, 4, 2, 1], noise=True, depthwise=True,
    ),
    "snac_44khz": dict(
        sampling_rate=44100, encoder_dim=64, encoder_rates=[2, 3, 8, 8], decoder_dim=1536,
        decoder_rates=[8, 8, 3, 2], attn_window_size=32, codebook_size=4096, codebook_dim=8,
        vq_strides=[8, 4, 2, 1], noise=True, depthwise=True,
    ),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/snac_full"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    for seed, (name, config) in enumerate(CONFIGS.items()):
        model, gen = build(config, 100 + seed)
        out_dir = os.path.join(out, name)
        save_checkpoint(model, config, out_dir)
        sr = config["sampling_rate"]
        # One clip of whole seconds and one whose length needs padding.
        lengths = [int(seconds * sr), int(seconds * sr * 0.7) + 123]
        clips = [test_signal(n, sr, gen) for n in lengths]
        with torch.inference_mode():
            t0 = time.perf_counter()
            codes = model.encode(clips[0])
            t1 = time.perf_counter()
            from snac_fixtures import NoiseControl

            NoiseControl.rng = None
            model.decode(codes)
            t2 = time.perf_counter()
        print(
            f"{name}: reference on {torch.get_num_threads()} threads, {lengths[0] / sr:.1f} s of audio: "
            f"encode {t1 - t0:.2f} s ({lengths[0] / sr / (t1 - t0):.1f}x real time), "
            f"decode {t2 - t1:.2f} s ({lengths[0] / sr / (t2 - t1):.1f}x)",
            flush=True,
        )
        tensors = reference_outputs(model, clips, NOISE_SEED, noise_for=(1,))
        tensors["noise_seed"] = torch.tensor([NOISE_SEED], dtype=torch.int64)
        save_file(tensors, os.path.join(out_dir, "io.safetensors"))
        with open(os.path.join(out_dir, "config.json")) as f:
            assert json.load(f) == config


if __name__ == "__main__":
    main()
