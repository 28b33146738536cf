"""Side-by-side codec speed: tessera vs the reference (torch CPU) vs candle-transformers.

Run from the repository root with the reference environment (see /work/shared/REFERENCE.md):

    HF_HUB_OFFLINE=1 /work/refenv/bin/python benches/compare/codecs_vs_peers.py \
        --threads 2 --seconds 10 --rounds 3 [--flops] [IDS ...]

IDS (default: all) are snac_24khz snac_32khz snac_44khz mimi encodec_24khz dac_16khz dac_24khz
dac_44khz. Each needs a full-size checkpoint in its hub layout with random weights, as the
scripts/reference/*_full_check.py scripts write them (the speed does not depend on the values):

    /work/refenv/bin/python scripts/reference/snac_full_check.py /tmp/snac_full 2      # snac_*
    /work/refenv/bin/python scripts/reference/mimi_full_check.py /tmp/mimi_full        # mimi
    /work/refenv/bin/python scripts/reference/encodec_full_check.py /tmp/encodec_full  # encodec_*
    /work/refenv/bin/python scripts/reference/dac_full_check.py /tmp/dac_full          # dac_*

(--snac-root, --mimi-root, --encodec-root, --dac-root point elsewhere.)

For each codec, two processes of benches/examples/codec_speed.rs (release build, mimalloc) load
the checkpoint, one into tessera and one, where candle-transformers has the model and can load
the hub checkpoint, into candle-transformers (SNAC, Mimi, EnCodec; not DAC, see the example's
header); this script loads the same checkpoint into the reference: the snac package (SNAC, from
config.json + pytorch_model.bin) or transformers' MimiModel / EncodecModel / DacModel
(from_pretrained on the directory). torch runs with torch.set_num_threads(THREADS) under
inference_mode; the Rust processes get RAYON_NUM_THREADS = CANDLE_NUM_THREADS = THREADS.
Each implementation has a process of its own, as torch has: when tessera and candle shared one
(until session 12), candle's calls took over the memory tessera had freed, and each tessera
call faulted its buffers in again (encode 8-13% slower than back to back; candle-free, the same
as back to back).

All of them encode the same signal (a chirp plus deterministic hash noise, the formula of
test_signal in codec_speed.rs), mono, batch 1, SECONDS long, and decode the codes they produced.
Codebooks: every one for SNAC and DAC, 8 for Mimi (what Moshi uses), 8 for EnCodec 24 kHz
(6 kbps). SNAC's decoders add fresh noise, as the real checkpoints do. After one warm-up call
each, every round runs one encode and one decode of each implementation in turn (tessera,
candle, then the reference), so that load changes hit all of them; the
table gives medians over rounds of the real-time factor (audio seconds per compute second) and
the median over rounds of the per-round ratio reference time / tessera time (> 1: tessera faster),
likewise for candle.

torch runs with glibc malloc told to keep freed memory (MALLOC_MMAP_THRESHOLD_=32 MiB, the
largest it takes, MALLOC_TRIM_THRESHOLD_=4 GiB, MALLOC_TOP_PAD_=256 MiB; the script re-executes
itself with them before anything is allocated), as tessera keeps mimalloc's freed pages. By
default glibc hands large buffers back to the kernel on free, torch faults them in again, 4 KiB
at a time, on every call, and how many of them it keeps depends on what the process allocated
before: EnCodec 24 kHz, 14 encodes of 10 s in one process: 1.2 M page faults and 375-430 ms per
call by default against 0.2 M and 305-320 ms with these settings. That was most of torch's
variance between invocations (EnCodec encode 21.6-33.5x real time in session 11). Pass
--torch-default-malloc to measure torch as it comes.

--flops counts the reference's FLOPs of one second of audio (torch's FLOP counter, on a copy
with the weight-norm parametrizations folded) and prints the GFLOP/s each implementation achieves
(FLOPs per audio second x real-time factor). A timed rate, so subject to the same load as the rest.
"""
import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

# glibc reads its malloc settings once, at the first allocation: re-execute with them (see the
# header) before numpy or torch allocate anything big.
TORCH_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
                "MALLOC_TOP_PAD_": str(256 << 20)}
if "--torch-default-malloc" not in sys.argv and any(
        os.environ.get(k) != v for k, v in TORCH_MALLOC.items()):
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **TORCH_MALLOC})

import torch  # noqa: E402

CODECS = {
    # id: (family, checkpoint root option, codebooks given to every implementation or None: all)
    "snac_24khz": ("snac", "snac_root", None),
    "snac_32khz": ("snac", "snac_root", None),
    "snac_44khz": ("snac", "snac_root", None),
    "mimi": ("mimi", "mimi_root", 8),
    "encodec_24khz": ("encodec", "encodec_root", 8),
    "dac_16khz": ("dac", "dac_root", None),
    "dac_24khz": ("dac", "dac_root", None),
    "dac_44khz": ("dac", "dac_root", None),
}
IMPLS = ["tessera", "reference", "candle"]


def test_signal(sample_rate, seconds):
    """The formula of test_signal in benches/examples/codec_speed.rs, in f64, then f32."""
    n = int(sample_rate * seconds)
    i = np.arange(n, dtype=np.int64)
    t = i.astype(np.float64) / sample_rate
    chirp = 0.4 * np.sin(2.0 * math.pi * (100.0 + 200.0 * t) * t)
    noise = 0.05 * (((i * 2654435761 + 12345) % 65536).astype(np.float64) / 32768.0 - 1.0)
    return torch.from_numpy((chirp + noise).astype(np.float32)).reshape(1, 1, n)


class Reference:
    """The reference model of one checkpoint, with encode/decode closures for one signal."""

    def __init__(self, family, path, n_q):
        self.family, self.n_q = family, n_q
        if family == "snac":
            from snac import SNAC

            with open(os.path.join(path, "config.json")) as f:
                config = json.load(f)
            self.model = SNAC(**config)
            state = torch.load(os.path.join(path, "pytorch_model.bin"), map_location="cpu")
            self.model.load_state_dict(state)
            self.sample_rate = config["sampling_rate"]
        else:
            import transformers

            cls = {"mimi": transformers.MimiModel, "encodec": transformers.EncodecModel,
                   "dac": transformers.DacModel}[family]
            self.model = cls.from_pretrained(path, dtype=torch.float32)
            self.sample_rate = self.model.config.sampling_rate
        self.model.eval()
        self.codes = None

    def encode(self, audio):
        m = self.model
        if self.family == "snac":
            self.codes = m.encode(audio)
        elif self.family == "mimi":
            self.codes = m.encode(audio, num_quantizers=self.n_q).audio_codes
        elif self.family == "encodec":
            bandwidth = self.n_q * math.log2(m.config.codebook_size) * m.config.frame_rate / 1000
            self.codes = m.encode(audio, bandwidth=bandwidth, return_dict=False)
        else:
            self.codes = m.encode(audio, n_quantizers=self.n_q).audio_codes

    def decode(self):
        m = self.model
        if self.family == "snac":
            return m.decode(self.codes)
        if self.family == "encodec":
            codes, scales, pad = self.codes
            return m.decode(codes, scales, last_frame_pad_length=pad)
        if self.family == "mimi":
            return m.decode(self.codes)
        return m.decode(audio_codes=self.codes)

    def flops_per_audio_second(self):
        """(encode, decode) FLOPs of one second of signal, by torch's FLOP counter."""
        from torch.nn.utils import parametrize
        from torch.utils.flop_counter import FlopCounterMode

        plain = copy.deepcopy(self)
        plain.model = copy.deepcopy(self.model)
        for mod in plain.model.modules():
            if parametrize.is_parametrized(mod, "weight"):
                parametrize.remove_parametrizations(mod, "weight")
        audio = test_signal(self.sample_rate, 1.0)
        with torch.inference_mode():
            with FlopCounterMode(display=False) as fc:
                plain.encode(audio)
            enc = fc.get_total_flops()
            with FlopCounterMode(display=False) as fc:
                plain.decode()
            dec = fc.get_total_flops()
        return enc, dec


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class RustProcess:
    """codec_speed in served mode for `impls` (comma-separated): one repetition per request."""

    def __init__(self, binary, path, seconds, n_q, threads, impls):
        env = {k: v for k, v in os.environ.items() if k not in TORCH_MALLOC}
        env.update(RAYON_NUM_THREADS=str(threads), CANDLE_NUM_THREADS=str(threads))
        self.proc = subprocess.Popen(
            [binary, path, str(seconds), "stdin", "all" if n_q is None else str(n_q), impls],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        self.skipped = {}
        self._read()  # loads and warms up, then says ready

    def _read(self):
        lines = []
        for line in self.proc.stdout:
            rec = json.loads(line)
            if rec.get("ready") or rec.get("done"):
                return lines
            if "skipped" in rec:
                self.skipped[rec["impl"]] = rec["skipped"]
            else:
                lines.append(rec)
        raise RuntimeError(f"codec_speed exited with status {self.proc.wait()}")

    def rep(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return {(r["impl"], r["op"]): r["median_s"] for r in self._read()}

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def rust_binary(build):
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    if build:
        subprocess.run(["cargo", "build", "--release", "-p", "tessera-benches", "--example",
                        "codec_speed"], check=True)
    return os.path.join(target, "release", "examples", "codec_speed")


def run_codec(cid, args, binary):
    family, root_opt, n_q = CODECS[cid]
    path = os.path.join(getattr(args, root_opt), cid)
    if not os.path.exists(os.path.join(path, "config.json")):
        print(f"# {cid}: no checkpoint at {path}; see the header for how to write one",
              flush=True)
        return None
    ref = Reference(family, path, n_q)
    audio = test_signal(ref.sample_rate, args.seconds)
    rust = RustProcess(binary, path, args.seconds, n_q, args.threads, "tessera")
    peer = RustProcess(binary, path, args.seconds, n_q, args.threads, "candle")
    with torch.inference_mode():
        ref.encode(audio)  # warm-up
        ref.decode()
    rounds = []
    for r in range(args.rounds):
        row = rust.rep()
        row.update(peer.rep())
        with torch.inference_mode():
            row[("reference", "encode")] = timed(lambda: ref.encode(audio))
            row[("reference", "decode")] = timed(ref.decode)
        row["loadavg"] = os.getloadavg()[0]
        rounds.append(row)
        print(json.dumps({"codec": cid, "round": r, **{
            f"{k[0]}.{k[1]}": round(v, 4) for k, v in row.items() if k != "loadavg"},
            "loadavg": row["loadavg"]}), flush=True)
    rust.close()
    peer.close()
    rust.skipped.update(peer.skipped)
    flops = ref.flops_per_audio_second() if args.flops else None
    return {"rounds": rounds, "skipped": rust.skipped, "flops": flops, "n_q": n_q}


def summarise(cid, res, seconds):
    """Rows (op, rtf per impl, ratio tessera vs reference, vs candle) of one codec."""
    rows = []
    for op in ("encode", "decode"):
        rtf, ratio = {}, {}
        for impl in IMPLS:
            ts = [row[(impl, op)] for row in res["rounds"] if (impl, op) in row]
            if ts:
                rtf[impl] = seconds / statistics.median(ts)
                if impl != "tessera":
                    ratio[impl] = statistics.median(
                        row[(impl, op)] / row[("tessera", op)] for row in res["rounds"])
        rows.append((op, rtf, ratio))
    return rows


def fmt(x, suffix="x", digits=1):
    return "-" if x is None else f"{x:.{digits}f}{suffix}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ids", nargs="*", default=list(CODECS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flops", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--torch-default-malloc", action="store_true",
                    help="leave glibc malloc's settings for torch as they are (see the header)")
    ap.add_argument("--snac-root", default="/tmp/snac_full")
    ap.add_argument("--mimi-root", default="/tmp/mimi_full")
    ap.add_argument("--encodec-root", default="/tmp/encodec_full")
    ap.add_argument("--dac-root", default="/tmp/dac_full")
    args = ap.parse_args()
    unknown = [c for c in args.ids if c not in CODECS]
    if unknown:
        ap.error(f"unknown codec ids {unknown}; known: {list(CODECS)}")

    torch.set_num_threads(args.threads)
    binary = rust_binary(not args.no_build)
    print(f"# {args.threads} threads, {args.seconds:g} s of audio, {args.rounds} rounds, "
          f"torch {torch.__version__}, glibc malloc "
          f"{'as it comes' if args.torch_default_malloc else 'keeping freed memory'}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {}
    for cid in args.ids:
        res = run_codec(cid, args, binary)
        if res is not None:
            results[cid] = res

    print("\nreal-time factors (audio s / compute s, median over rounds); ratios: median over "
          "rounds of peer time / tessera time (> 1: tessera faster)\n")
    print("| codec | op | tessera | reference (torch) | candle-transformers "
          "| tessera / reference | tessera / candle |")
    print("|---|---|---|---|---|---|---|")
    for cid, res in results.items():
        for op, rtf, ratio in summarise(cid, res, args.seconds):
            print(f"| {cid} | {op} | {fmt(rtf.get('tessera'))} | {fmt(rtf.get('reference'))} "
                  f"| {fmt(rtf.get('candle'))} | {fmt(ratio.get('reference'), 'x', 2)} "
                  f"| {fmt(ratio.get('candle'), 'x', 2)} |")
    for cid, res in results.items():
        for impl, why in res["skipped"].items():
            print(f"\n{cid}: {impl} skipped: {why}")
    if args.flops:
        print("\nGFLOP per audio second (reference's FLOP counter) and achieved GFLOP/s\n")
        print("| codec | op | GFLOP / audio s | tessera | reference | candle |")
        print("|---|---|---|---|---|---|")
        for cid, res in results.items():
            enc, dec = res["flops"]
            for (op, rtf, _), fl in zip(summarise(cid, res, args.seconds), (enc, dec)):
                g = fl / 1e9
                cells = [fmt(rtf[i] * g if i in rtf else None, "", 1) for i in IMPLS]
                print(f"| {cid} | {op} | {g:.2f} | " + " | ".join(cells) + " |")
    loads = [row["loadavg"] for res in results.values() for row in res["rounds"]]
    if loads:
        print(f"\nload average during the rounds: {min(loads):.1f}-{max(loads):.1f}")


if __name__ == "__main__":
    sys.exit(main())
