"""Speed of the reference SNAC (snac==1.2.1, torch CPU) on the inputs of benches/benches/snac.rs.

Times encode and decode of 10 s of audio with the real configs (random weights) and the layers
that dominate snac_24khz on 2 s of signal, with torch.set_num_threads(THREADS) (default 2, the
thread count to give the Rust bench too: RAYON_NUM_THREADS). Prints the best of several runs
(shared machines are noisy; the minimum is the least disturbed).

With --cpu-time, measures the process's CPU time instead of wall time (use THREADS=1 and compare
with the Rust bench's TESSERA_BENCH_CPU_TIME=1 RAYON_NUM_THREADS=1): on a shared machine, wall
times of both sides depend on what else runs, CPU times much less.

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/snac_speed.py [24|all] [layers]
     [--cpu-time]
"""
import math
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snac_fixtures import NoiseControl, build  # noqa: E402
from snac_full_check import CONFIGS  # noqa: E402

from snac.layers import ResidualUnit, snake  # noqa: E402


CLOCK = time.perf_counter


def best_time(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return min(times)


def flops_per_second(model, one_second):
    """Encode and decode FLOPs of one second of audio, by torch's FLOP counter (on a copy with
    the weight norms folded, which the counter cannot trace through)."""
    import copy

    from torch.nn.utils import parametrize
    from torch.utils.flop_counter import FlopCounterMode

    plain = copy.deepcopy(model)
    for m in plain.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight")
    with FlopCounterMode(display=False) as fc:
        codes = plain.encode(one_second)
    enc = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        plain.decode(codes)
    return enc, fc.get_total_flops()


def full_models(which):
    for seed, (name, config) in enumerate(CONFIGS.items()):
        if which != "all" and name != "snac_24khz":
            continue
        model, gen = build(config, seed)
        sr = config["sampling_rate"]
        t = torch.arange(10 * sr) / sr
        audio = (0.3 * torch.sin(2 * math.pi * 220 * t) + 0.1 * torch.sin(2 * math.pi * 1375 * t)
                 + 0.05 * torch.randn(10 * sr, generator=gen)).reshape(1, 1, -1)
        with torch.inference_mode():
            codes = model.encode(audio)
            enc = best_time(lambda: model.encode(audio), 3)
            # The real checkpoints decode with torch.randn noise; time that path.
            NoiseControl.rng = None
            orig = NoiseControl.forward

            def randn_noise(block, x):
                B, C, T = x.shape
                return x + torch.randn((B, 1, T), dtype=x.dtype) * block.linear(x)

            from snac.layers import NoiseBlock
            NoiseBlock.forward = randn_noise
            dec = best_time(lambda: model.decode(codes), 3)
            NoiseBlock.forward = orig
            # Work per second of audio, as torch's FLOP counter counts it (convs and matmuls).
            enc_flops, dec_flops = flops_per_second(model, audio[..., :sr])
        print(f"{name}: encode 10 s {enc * 1e3:.0f} ms ({10 / enc:.1f}x real time), "
              f"decode {dec * 1e3:.0f} ms ({10 / dec:.1f}x); GFLOP per audio second "
              f"{enc_flops / 1e9:.2f} / {dec_flops / 1e9:.2f}", flush=True)


def layers():
    n = 48_000
    g = torch.Generator().manual_seed(0)

    def conv(cin, cout, k, **kw):
        c = nn.Conv1d(cin, cout, k, **kw)
        return c

    cases = [
        ("enc_in_1x48_k7", conv(1, 48, 7, padding=3), (1, 1, n)),
        ("pw_48x48", conv(48, 48, 1), (1, 48, n)),
        ("enc_down_48x96_k4_s2", conv(48, 96, 4, stride=2, padding=1), (1, 48, n)),
        ("enc_down_384x768_k16_s8", conv(384, 768, 16, stride=8, padding=4), (1, 384, 750)),
        ("pw_64x64", conv(64, 64, 1), (1, 64, n)),
        ("pw_512x512", conv(512, 512, 1), (1, 512, 750)),
        ("dec_out_64x1_k7", conv(64, 1, 7, padding=3), (1, 64, n)),
        ("dw_64_k7_d9", conv(64, 64, 7, padding=27, dilation=9, groups=64), (1, 64, n)),
        ("residual_unit_64_d3", ResidualUnit(64, dilation=3, groups=64), (1, 64, n)),
        ("dec_up_128x64_s2", nn.ConvTranspose1d(128, 64, 4, stride=2, padding=1), (1, 128, n // 2)),
        ("dec_up_1024x512_s8", nn.ConvTranspose1d(1024, 512, 16, stride=8, padding=4), (1, 1024, 94)),
    ]
    alpha = torch.rand((1, 64, 1), generator=g) + 0.5
    with torch.inference_mode():
        for name, layer, shape in cases:
            x = torch.randn(shape, generator=g)
            t = best_time(lambda: layer(x), 10)
            print(f"snac_layers/{name}/torch ms {t * 1e3:.3f}", flush=True)
        x = torch.randn((1, 64, n), generator=g)
        t = best_time(lambda: snake(x, alpha), 10)
        print(f"snac_layers/snake_64/torch ms {t * 1e3:.3f}", flush=True)


def main():
    global CLOCK
    threads = int(os.environ.get("THREADS", "2"))
    torch.set_num_threads(threads)
    args = [a for a in sys.argv[1:] if a != "--cpu-time"]
    if "--cpu-time" in sys.argv:
        CLOCK = time.process_time
    which = args[0] if args else "24"
    if len(args) > 1 and args[1] == "layers":
        layers()
        return
    full_models(which)
    layers()


if __name__ == "__main__":
    main()
