"""transformers' DacModel speed on CPU, for comparison with `cargo bench --bench dac`.

The real descript/dac_16khz config with random weights (speed does not depend on the values),
10 s of audio, torch on THREADS threads (default 2), one warm-up call, then the best of REPS.

Run: HF_HUB_OFFLINE=1 THREADS=2 /work/refenv/bin/python scripts/reference/dac_speed.py [SECONDS] [REPS]
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dac_full_check import CONFIGS  # noqa: E402
from dac_fixtures import build, test_signal  # noqa: E402


def best_of(reps, fn):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    name = os.environ.get("MODEL", "dac_16khz")
    config = CONFIGS[name]
    model, gen = build(config, 0, "plain")
    sr = config["sampling_rate"]
    audio = test_signal(int(seconds * sr), sr, gen)
    with torch.inference_mode():
        codes = model.encode(audio[..., : sr]).audio_codes  # warm-up
        model.decode(audio_codes=codes)
        codes = model.encode(audio).audio_codes
        t_enc = best_of(reps, lambda: model.encode(audio))
        t_dec = best_of(reps, lambda: model.decode(audio_codes=codes))
    print(
        f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads, {seconds:.0f} s of audio: "
        f"encode {t_enc:.2f} s ({seconds / t_enc:.2f}x real time), "
        f"decode {t_dec:.2f} s ({seconds / t_dec:.2f}x real time)"
    )


if __name__ == "__main__":
    main()
