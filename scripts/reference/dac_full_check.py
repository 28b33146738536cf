"""Full-size DAC check: the real configs of descript/dac_16khz, dac_24khz and dac_44khz with random
weights, run through transformers' DacModel, for codec/tests/dac_full_check.rs (ignored by
default) to compare against.

Writes, for each model, into OUT (default /tmp/dac_full, never committed):
  <name>/config.json, <name>/model.safetensors   the hub layout (plain weights), random values
  <name>/io.safetensors                          inputs and reference outputs, as in
                                                 dac_fixtures.py (audio.<i>, codes.<i>,
                                                 codes_nq.<i>, decoded.<i>, decoded_nq.<i>, n_q)
and prints the reference's encode/decode times on this machine.

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/dac_full_check.py [OUT] [SECONDS]
then: TESSERA_DAC_FULL=OUT cargo test --release -p tessera-codec --test dac_full_check \
        -- --ignored --nocapture
"""
import os
import sys
import time

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dac_fixtures import build, reference_outputs, test_signal  # noqa: E402

# The model-shaping fields of each descript/dac_* config.json (the descript package's
# conf/final/{16,24,44}khz.yml, converted by transformers' convert_dac_checkpoint.py).
CONFIGS = {
    "dac_16khz": dict(
        encoder_hidden_size=64, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=1536,
        n_codebooks=12, codebook_size=1024, codebook_dim=8, sampling_rate=16000,
    ),
    "dac_24khz": dict(
        encoder_hidden_size=64, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=1536,
        n_codebooks=32, codebook_size=1024, codebook_dim=8, sampling_rate=24000,
    ),
    "dac_44khz": dict(
        encoder_hidden_size=64, downsampling_ratios=[2, 4, 8, 8], decoder_hidden_size=1536,
        n_codebooks=9, codebook_size=1024, codebook_dim=8, sampling_rate=44100,
    ),
}
N_Q = 4


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/dac_full"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    for seed, (name, config) in enumerate(CONFIGS.items()):
        model, gen = build(config, 100 + seed, "plain")
        out_dir = os.path.join(out, name)
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir)
        sr = config["sampling_rate"]
        # One clip of whole seconds and one whose length needs padding.
        lengths = [int(seconds * sr), int(seconds * sr * 0.7) + 123]
        clips = [test_signal(n, sr, gen) for n in lengths]
        with torch.inference_mode():
            t0 = time.perf_counter()
            codes = model.encode(clips[0]).audio_codes
            t1 = time.perf_counter()
            model.decode(audio_codes=codes)
            t2 = time.perf_counter()
        print(
            f"{name}: reference on {torch.get_num_threads()} threads, {lengths[0] / sr:.1f} s of audio: "
            f"encode {t1 - t0:.2f} s ({lengths[0] / sr / (t1 - t0):.2f}x real time), "
            f"decode {t2 - t1:.2f} s ({lengths[0] / sr / (t2 - t1):.2f}x)",
            flush=True,
        )
        tensors = reference_outputs(model, clips, N_Q)
        save_file(tensors, os.path.join(out_dir, "io.safetensors"))


if __name__ == "__main__":
    main()
