"""Side-by-side: tessera's resampler and log-mel vs torchaudio, same signal, same thread count.

Run from the repository root with the reference environment (docs/reference-env.md):

    python benches/compare/dsp_vs_torchaudio.py --threads 2 --seconds 60 --reps 5

It builds and runs `benches/examples/dsp_timing.rs` (release), times torchaudio on the same chirp
with torch.set_num_threads(THREADS), and prints real-time factors and the ratio tessera/torch
(> 1 means tessera is faster). tessera's resampler is compared with torchaudio's default
(sinc_interp_hann, width 6: lower quality than ours) and with its "kaiser_best" setting (width 64,
the quality class ours is in).
"""
import argparse
import json
import math
import os
import subprocess
import time

import torch
import torchaudio.functional as AF
import torchaudio.transforms as T


def chirp(sr, seconds):
    n = int(sr * seconds)
    t = torch.arange(n, dtype=torch.float64) / sr
    return (0.5 * torch.sin(2 * math.pi * (100.0 + 200.0 * t) * t)).float()


def median(reps, f):
    f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def torch_cases(seconds, reps):
    out = {}
    for (a, b) in [(44100, 24000), (48000, 16000), (16000, 24000)]:
        x = chirp(a, seconds)
        out[f"resample_{a}_{b}"] = {
            "default": median(reps, lambda: AF.resample(x, a, b)),
            "kaiser_best": median(reps, lambda: AF.resample(
                x, a, b, lowpass_filter_width=64, rolloff=0.9475937167399596,
                resampling_method="sinc_interp_kaiser", beta=14.769656459379492)),
        }
    # Whisper: STFT(400, 160, hann) power 2, Slaney mel 80 (librosa filters), log10, clamp, scale.
    import librosa
    fb = torch.from_numpy(librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)).float()
    win = torch.hann_window(400)
    x16 = chirp(16000, seconds)

    def whisper():
        s = torch.stft(x16, 400, 160, window=win, return_complex=True)
        mag = s[..., :-1].abs() ** 2
        m = torch.clamp(fb @ mag, min=1e-10).log10()
        m = torch.maximum(m, m.max() - 8.0)
        return (m + 4.0) / 4.0

    out["logmel_whisper80_16k"] = {"default": median(reps, whisper)}
    vocos = T.MelSpectrogram(sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100, center=True, power=1)
    x24 = chirp(24000, seconds)
    out["logmel_vocos_24k"] = {"default": median(reps, lambda: torch.log(torch.clip(vocos(x24), min=1e-7)))}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "tessera-benches", "--example", "dsp_timing"], check=True)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    exe = os.path.join(target, "release", "examples", "dsp_timing")
    lines = subprocess.run([exe, str(args.seconds), str(args.reps), str(args.threads)], env=env,
                           check=True, capture_output=True, text=True).stdout.splitlines()
    ours = {d["case"]: d["seconds"] for d in map(json.loads, lines)}
    theirs = torch_cases(args.seconds, args.reps)
    print(f"threads={args.threads} audio={args.seconds}s reps={args.reps} (median); x = real-time factor")
    print(f"{'case':<24}{'tessera':>12}{'torch':>12}{'torch setting':>16}{'ratio':>9}")
    for case, t_ours in ours.items():
        for setting, t_torch in theirs[case].items():
            print(f"{case:<24}{args.seconds / t_ours:>11.0f}x{args.seconds / t_torch:>11.0f}x"
                  f"{setting:>16}{t_torch / t_ours:>8.2f}x")


if __name__ == "__main__":
    main()
