"""Full-size EnCodec check: the real configs of facebook/encodec_24khz and encodec_48khz with
random weights, run through transformers' EncodecModel, for codec/tests/encodec_full_check.rs
(ignored by default) to compare against.

Writes, for each model, into OUT (default /tmp/encodec_full, never committed):
  <name>/config.json, <name>/model.safetensors   the hub layout (weight_g/weight_v), random weights
  <name>/io.safetensors                          inputs and reference outputs, as in
                                                 encodec_fixtures.py
and prints the reference's encode/decode times on this machine.

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/encodec_full_check.py [OUT] [SECONDS]
then: TESSERA_ENCODEC_FULL=OUT cargo test --release -p tessera-codec --test encodec_full_check \
        -- --ignored --nocapture
"""
import os
import sys
import time

import torch
from safetensors.torch import save_file
from transformers import EncodecConfig, EncodecModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encodec_fixtures import (  # noqa: E402
    fit_codebooks,
    randomise,
    reference_outputs,
    test_signal,
    to_hub_weight_norm,
)

# The config.json of each facebook/encodec_* repository (generic keys left out).
CONFIGS = {
    "encodec_24khz": dict(
        audio_channels=1, chunk_length_s=None, codebook_dim=128, codebook_size=1024, compress=2,
        dilation_growth_rate=2, hidden_size=128, kernel_size=7, last_kernel_size=7,
        norm_type="weight_norm", normalize=False, num_filters=32, num_lstm_layers=2,
        num_residual_layers=1, overlap=None, pad_mode="reflect", residual_kernel_size=3,
        sampling_rate=24000, target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0], trim_right_ratio=1.0,
        upsampling_ratios=[8, 5, 4, 2], use_causal_conv=True,
    ),
    "encodec_48khz": dict(
        audio_channels=2, chunk_length_s=1.0, codebook_dim=128, codebook_size=1024, compress=2,
        dilation_growth_rate=2, hidden_size=128, kernel_size=7, last_kernel_size=7,
        norm_type="time_group_norm", normalize=True, num_filters=32, num_lstm_layers=2,
        num_residual_layers=1, overlap=0.01, pad_mode="reflect", residual_kernel_size=3,
        sampling_rate=48000, target_bandwidths=[3.0, 6.0, 12.0, 24.0], trim_right_ratio=1.0,
        upsampling_ratios=[8, 5, 4, 2], use_causal_conv=False,
    ),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/encodec_full"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    for seed, (name, cfg) in enumerate(CONFIGS.items()):
        gen = torch.Generator().manual_seed(200 + seed)
        model = EncodecModel(EncodecConfig(**cfg)).eval()
        randomise(model, gen)
        fit_codebooks(model, gen, cfg["sampling_rate"], cfg["audio_channels"])
        out_dir = os.path.join(out, name)
        model.save_pretrained(out_dir)
        to_hub_weight_norm(os.path.join(out_dir, "model.safetensors"))
        model = EncodecModel.from_pretrained(out_dir).eval()
        sr = cfg["sampling_rate"]
        lengths = [int(seconds * sr), int(seconds * sr * 0.7) + 123]
        clips = [test_signal(n, sr, gen, cfg["audio_channels"]) for n in lengths]
        bw = 6.0
        with torch.inference_mode():
            t0 = time.perf_counter()
            codes, scales, pad = model.encode(clips[0], bandwidth=bw, return_dict=False)
            t1 = time.perf_counter()
            model.decode(codes, scales, last_frame_pad_length=pad)
            t2 = time.perf_counter()
        print(
            f"{name}: reference on {torch.get_num_threads()} threads, {lengths[0] / sr:.1f} s of "
            f"audio at {bw} kbps: encode {t1 - t0:.2f} s ({lengths[0] / sr / (t1 - t0):.1f}x real "
            f"time), decode {t2 - t1:.2f} s ({lengths[0] / sr / (t2 - t1):.1f}x)",
            flush=True,
        )
        save_file(reference_outputs(model, clips), os.path.join(out_dir, "io.safetensors"))


if __name__ == "__main__":
    main()
