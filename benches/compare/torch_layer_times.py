"""Per-layer times of the reference encoders (transformers' EncodecModel / MimiModel) on CPU.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=268435456 \
    HF_HUB_OFFLINE=1 /work/refenv/bin/python benches/compare/torch_layer_times.py \
        encodec /tmp/encodec_full/encodec_24khz [--threads 2] [--seconds 10] [--calls 7]

Forward hooks time every layer of the SEANet encoder (and, for Mimi, the encoder transformer,
the downsampling conv and the quantizer) during `calls` encodes of the signal that
codecs_vs_peers.py uses (the chirp plus hash noise of codec_speed.rs), with 8 codebooks; each
layer's median over the calls after the first is printed in milliseconds, then every call's
total. The malloc settings are the ones codecs_vs_peers.py gives torch (see its header). Compare
with tessera's layers by temporary timers in `Seanet::forward` (docs/performance.md).
"""
import argparse
import statistics
import time

import numpy as np
import torch
from transformers import EncodecModel, MimiModel


def test_signal(sample_rate, seconds):
    """The formula of test_signal in benches/examples/codec_speed.rs, in f64, then f32."""
    i = np.arange(int(sample_rate * seconds), dtype=np.uint64)
    t = i.astype(np.float64) / sample_rate
    chirp = 0.4 * np.sin(2 * np.pi * (100.0 + 200.0 * t) * t)
    h = (i * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(65536)
    noise = 0.05 * (h.astype(np.float64) / 32768.0 - 1.0)
    return (chirp + noise).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("family", choices=["encodec", "mimi"])
    ap.add_argument("path", help="checkpoint directory in the hub layout")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--calls", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cls = EncodecModel if args.family == "encodec" else MimiModel
    model = cls.from_pretrained(args.path).eval()
    x = torch.from_numpy(test_signal(model.config.sampling_rate, args.seconds))[None, None]

    times = {}

    def hook(module, name):
        def pre(m, inputs):
            m._started = time.perf_counter()

        def post(m, inputs, output):
            times.setdefault(name, []).append((time.perf_counter() - m._started) * 1e3)

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    for k, layer in enumerate(model.encoder.layers):
        hook(layer, f"encoder.layers.{k} {type(layer).__name__}")
    if args.family == "mimi":
        hook(model.encoder_transformer, "encoder_transformer")
        hook(model.downsample, "downsample")
        hook(model.quantizer, "quantizer")

    totals = []
    with torch.inference_mode():
        for _ in range(args.calls):
            t0 = time.perf_counter()
            if args.family == "encodec":
                model.encode(x, bandwidth=6.0)
            else:
                model.encode(x, num_quantizers=8)
            totals.append((time.perf_counter() - t0) * 1e3)
    for name, v in times.items():
        print(f"{statistics.median(v[1:]):8.2f}  {name}")
    print("calls (ms):", ", ".join(f"{t:.0f}" for t in totals))


if __name__ == "__main__":
    main()
