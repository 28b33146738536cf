"""The way most people tokenise a dataset today: a plain Python loop over the files with the
reference package, for comparison with `tessera dataset tokenize` (see dataset_throughput.sh).

For each file, sorted: read it (soundfile), mix to mono, resample to the codec's rate
(torchaudio.functional.resample), encode one clip at a time under inference_mode, save the
codes with numpy. Prints one JSON line: audio seconds, wall seconds, hours of audio per hour.

  /work/refenv/bin/python benches/compare/dataset_python_loop.py snac|mimi CODEC_DIR INPUT_DIR OUT_DIR [THREADS]

CODEC_DIR is a checkpoint directory in the hub layout (config.json + weights), as the
scripts/reference/*_full_check.py scripts write them.
"""
import json
import os
import sys
import time

import numpy as np
import soundfile
import torch
import torchaudio


def load_snac(d):
    from snac import SNAC

    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    model = SNAC(**config)
    state = torch.load(os.path.join(d, "pytorch_model.bin"), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    rate = config["sampling_rate"]

    def encode(x):  # x: [1, 1, T]
        return [c[0].numpy() for c in model.encode(x)]

    return rate, encode


def load_mimi(d):
    from transformers import MimiModel

    model = MimiModel.from_pretrained(d)
    model.eval()
    rate = model.config.sampling_rate

    def encode(x):
        return [model.encode(x, num_quantizers=8).audio_codes[0].numpy()]

    return rate, encode


def main():
    family, codec_dir, inputs, out = sys.argv[1:5]
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    torch.set_num_threads(threads)
    rate, encode = {"snac": load_snac, "mimi": load_mimi}[family](codec_dir)
    files = sorted(
        os.path.join(root, f)
        for root, _, names in os.walk(inputs)
        for f in names
        if f.rsplit(".", 1)[-1].lower() in {"wav", "flac", "mp3", "ogg"}
    )
    os.makedirs(out, exist_ok=True)
    audio_seconds = 0.0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i, path in enumerate(files):
            data, sr = soundfile.read(path, dtype="float32", always_2d=True)
            x = torch.from_numpy(data.mean(axis=1))
            if sr != rate:
                x = torchaudio.functional.resample(x, sr, rate)
            audio_seconds += x.shape[-1] / rate
            codes = encode(x.view(1, 1, -1))
            for k, c in enumerate(codes):
                np.save(os.path.join(out, f"{i:05d}.codes_{k}.npy"), c.astype(np.uint32))
    wall = time.perf_counter() - t0
    print(json.dumps({
        "impl": f"python loop ({family} reference)",
        "items": len(files),
        "audio_seconds": audio_seconds,
        "threads": threads,
        "wall_s": wall,
        "audio_hours_per_hour": audio_seconds / wall,
    }))


if __name__ == "__main__":
    main()
