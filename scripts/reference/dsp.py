"""Reference fixtures for tessera's DSP (codec/src/dsp): windows, STFT/iSTFT, mel filterbanks,
mel spectrograms and log-mel recipes, computed with torch / torchaudio / librosa.

Run with the reference environment (see shared REFERENCE.md):

    HF_HUB_OFFLINE=1 /path/to/refenv/bin/python scripts/reference/dsp.py

Writes dsp.json and {signals,windows,stft,mel}.safetensors into codec/tests/fixtures/dsp/.
dsp.json lists every case with its parameters and the names of its tensors; the Rust tests
(codec/tests/dsp_*.rs) read it and never run Python.

Mel filterbanks are stored sparsely (flat indices + values of the non-zero entries of the
[n_mels, n_freqs] matrix) because dense ones would be most of the fixture budget; the test
densifies them and compares every entry, zeros included.
"""

import json
from pathlib import Path

import librosa
import numpy as np
import torch
import torchaudio
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parents[2] / "codec" / "tests" / "fixtures" / "dsp"

torch.set_num_threads(1)


def make_signal(sample_rate: int, seconds: float, seed: int) -> np.ndarray:
    """A log chirp from 60 Hz to 0.45 * sample_rate, a 440 Hz tone, white noise and a stretch of
    digital silence (so that log floors and clamps are exercised)."""
    n = int(sample_rate * seconds)
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0, f1 = 60.0, 0.45 * sample_rate
    k = np.log(f1 / f0) / seconds
    chirp = 0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1.0) / k)
    tone = 0.2 * np.sin(2 * np.pi * 440.0 * t)
    noise = 0.02 * np.random.default_rng(seed).standard_normal(n)
    x = chirp + tone + noise
    silence = slice(int(0.6 * n), int(0.7 * n))
    x[silence] = 0.0
    return x.astype(np.float32)


SIGNALS = {
    "sig16k": (16000, make_signal(16000, 0.3, 1)),
    "sig24k": (24000, make_signal(24000, 0.3, 2)),
}


def torch_window(kind: str, length: int, periodic: bool) -> torch.Tensor:
    if kind == "hann":
        return torch.hann_window(length, periodic=periodic)
    if kind == "hamming":
        return torch.hamming_window(length, periodic=periodic)
    if kind == "blackman":
        return torch.blackman_window(length, periodic=periodic)
    if kind == "rectangular":
        return torch.ones(length)
    if kind == "povey":
        # torchaudio.compliance.kaldi's povey window: a Hann window raised to 0.85.
        return torch.hann_window(length, periodic=periodic).pow(0.85)
    raise ValueError(kind)


def window_cases(tensors: dict) -> list:
    cases = []
    for kind in ["hann", "hamming", "blackman", "rectangular", "povey"]:
        for length in [1, 2, 7, 64, 400]:
            for periodic in [True, False]:
                name = f"window.{kind}.{length}.{'periodic' if periodic else 'symmetric'}"
                tensors[name] = torch_window(kind, length, periodic).numpy()
                cases.append({"name": name, "kind": kind, "len": length, "periodic": periodic})
    return cases


STFT_CASES = [
    # Whisper framing.
    dict(name="whisper", signal="sig16k", n=2400, n_fft=400, hop_length=160, win_length=400,
         window="hann", periodic=True, center=True, pad_mode="reflect", normalized=False,
         onesided=True, istft_length=None),
    # Vocos framing, istft asked for the exact original length.
    dict(name="vocos", signal="sig24k", n=2048, n_fft=1024, hop_length=256, win_length=1024,
         window="hann", periodic=True, center=True, pad_mode="reflect", normalized=False,
         onesided=True, istft_length=2048),
    # A window shorter than n_fft (zero-padded, centred); istft asked for more than it has.
    dict(name="long_frames", signal="sig24k", n=1200, n_fft=2048, hop_length=300, win_length=1200,
         window="hann", periodic=True, center=True, pad_mode="reflect", normalized=False,
         onesided=True, istft_length=1300),
    # Two-sided, normalised, constant padding, symmetric hamming shorter than n_fft.
    dict(name="twosided", signal="sig16k", n=1000, n_fft=64, hop_length=24, win_length=48,
         window="hamming", periodic=False, center=True, pad_mode="constant", normalized=True,
         onesided=False, istft_length=1000),
    # No centring (hamming keeps the overlap-add envelope non-zero at the edges).
    dict(name="uncentered", signal="sig16k", n=1400, n_fft=512, hop_length=128, win_length=512,
         window="hamming", periodic=True, center=False, pad_mode="reflect", normalized=False,
         onesided=True, istft_length=None),
    # Odd n_fft, replicate padding, blackman. (hop_length 50 keeps the overlap-add envelope away
    # from the window's near-zero tails at the end, where istft would be ill-conditioned.)
    dict(name="odd", signal="sig16k", n=1500, n_fft=255, hop_length=50, win_length=200,
         window="blackman", periodic=True, center=True, pad_mode="replicate", normalized=False,
         onesided=True, istft_length=1500),
]


def stft_cases(tensors: dict) -> list:
    cases = []
    for case in STFT_CASES:
        sr, full = SIGNALS[case["signal"]]
        x = torch.from_numpy(full[: case["n"]].copy())
        window = torch_window(case["window"], case["win_length"], case["periodic"])
        kwargs = dict(n_fft=case["n_fft"], hop_length=case["hop_length"],
                      win_length=case["win_length"], window=window, center=case["center"],
                      normalized=case["normalized"], onesided=case["onesided"])
        spec = torch.stft(x, pad_mode=case["pad_mode"], return_complex=True, **kwargs)
        y = torch.istft(spec, length=case["istft_length"], **kwargs)
        prefix = f"stft.{case['name']}"
        tensors[f"{prefix}.re"] = spec.real.contiguous().numpy()
        tensors[f"{prefix}.im"] = spec.imag.contiguous().numpy()
        tensors[f"{prefix}.istft"] = y.numpy()
        cases.append(dict(case, sample_rate=sr, re=f"{prefix}.re", im=f"{prefix}.im",
                          istft=f"{prefix}.istft"))
    return cases


FBANK_CASES = [
    dict(source="torchaudio", sample_rate=16000, n_fft=400, n_mels=80, f_min=0.0, f_max=None,
         scale="htk", norm=None),
    dict(source="torchaudio", sample_rate=16000, n_fft=400, n_mels=80, f_min=0.0, f_max=None,
         scale="slaney", norm="slaney"),
    dict(source="torchaudio", sample_rate=24000, n_fft=1024, n_mels=100, f_min=0.0, f_max=None,
         scale="htk", norm="slaney"),
    dict(source="torchaudio", sample_rate=24000, n_fft=2048, n_mels=128, f_min=20.0, f_max=11000.0,
         scale="slaney", norm=None),
    dict(source="torchaudio", sample_rate=22050, n_fft=511, n_mels=40, f_min=30.0, f_max=None,
         scale="htk", norm=None),
    dict(source="librosa", sample_rate=16000, n_fft=400, n_mels=80, f_min=0.0, f_max=None,
         scale="slaney", norm="slaney"),
    dict(source="librosa", sample_rate=16000, n_fft=400, n_mels=128, f_min=0.0, f_max=None,
         scale="slaney", norm="slaney"),
    dict(source="librosa", sample_rate=24000, n_fft=1024, n_mels=100, f_min=0.0, f_max=None,
         scale="htk", norm=None),
    dict(source="librosa", sample_rate=22050, n_fft=511, n_mels=40, f_min=30.0, f_max=None,
         scale="slaney", norm=None),
    dict(source="librosa", sample_rate=44100, n_fft=2048, n_mels=128, f_min=0.0, f_max=16000.0,
         scale="slaney", norm="slaney"),
]


def reference_fbank(case: dict) -> np.ndarray:
    """The filterbank as [n_mels, n_freqs]."""
    n_freqs = case["n_fft"] // 2 + 1
    if case["source"] == "torchaudio":
        f_max = case["f_max"] if case["f_max"] is not None else float(case["sample_rate"] // 2)
        fb = torchaudio.functional.melscale_fbanks(
            n_freqs, case["f_min"], f_max, case["n_mels"], case["sample_rate"],
            norm=case["norm"], mel_scale=case["scale"])
        return fb.T.contiguous().numpy()
    return librosa.filters.mel(
        sr=case["sample_rate"], n_fft=case["n_fft"], n_mels=case["n_mels"], fmin=case["f_min"],
        fmax=case["f_max"], htk=case["scale"] == "htk", norm=case["norm"], dtype=np.float32)


def fbank_cases(tensors: dict) -> list:
    cases = []
    for case in FBANK_CASES:
        name = (f"fbank.{case['source']}.{case['sample_rate']}.{case['n_fft']}.{case['n_mels']}."
                f"{case['scale']}.{case['norm']}")
        fb = reference_fbank(case)
        flat = fb.reshape(-1)
        nz = np.nonzero(flat)[0]
        tensors[f"{name}.index"] = nz.astype(np.int32)
        tensors[f"{name}.value"] = flat[nz].astype(np.float32)
        cases.append(dict(case, name=name, index=f"{name}.index", value=f"{name}.value",
                          shape=list(fb.shape)))
    return cases


def torchaudio_mel(x: torch.Tensor, case: dict) -> torch.Tensor:
    f_max = case["f_max"] if case["f_max"] is not None else None
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=case["sample_rate"], n_fft=case["n_fft"], win_length=case["win_length"],
        hop_length=case["hop_length"], f_min=case["f_min"], f_max=f_max, n_mels=case["n_mels"],
        power=case["power"], center=case["center"], pad_mode=case["pad_mode"],
        norm=case["norm"], mel_scale=case["scale"])(x)


def whisper_log_mel(x: torch.Tensor, case: dict) -> torch.Tensor:
    """openai-whisper's whisper.audio.log_mel_spectrogram, with its mel_filters.npz rebuilt the
    way whisper built it (librosa.filters.mel(sr=16000, n_fft=400, n_mels=80 or 128))."""
    window = torch.hann_window(case["n_fft"])
    stft = torch.stft(x, case["n_fft"], case["hop_length"], window=window, return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2
    filters = torch.from_numpy(librosa.filters.mel(sr=case["sample_rate"], n_fft=case["n_fft"],
                                                   n_mels=case["n_mels"]))
    mel_spec = filters @ magnitudes
    log_spec = torch.clamp(mel_spec, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def librosa_db_mel(x: np.ndarray, case: dict) -> np.ndarray:
    """librosa.feature.melspectrogram (constant padding, slaney mel) then power_to_db; the mel
    basis in the input's precision."""
    mel = librosa.feature.melspectrogram(
        y=x, sr=case["sample_rate"], n_fft=case["n_fft"], hop_length=case["hop_length"],
        win_length=case["win_length"], center=case["center"], pad_mode=case["pad_mode"],
        power=case["power"], n_mels=case["n_mels"], fmin=case["f_min"], fmax=case["f_max"],
        htk=case["scale"] == "htk", norm=case["norm"], dtype=x.dtype)
    return librosa.power_to_db(mel, ref=1.0, amin=case["log"]["amin"], top_db=case["log"]["top_db"])


def apply_log(mel: torch.Tensor, log: dict) -> torch.Tensor:
    if log["kind"] == "none":
        return mel
    if log["kind"] == "ln":
        return torch.log(torch.clamp(mel, min=log["floor"]))
    if log["kind"] == "db":
        stype = "power" if log["multiplier"] == 10.0 else "magnitude"
        to_db = torchaudio.transforms.AmplitudeToDB(stype=stype, top_db=log["top_db"])
        assert to_db.amin == log["amin"]
        return to_db(mel)
    raise ValueError(log)


def mel_case(name, signal, n, n_fft, hop_length, n_mels, log, *, win_length=None, center=True,
             pad_mode="reflect", power=2.0, f_min=0.0, f_max=None, scale="htk", norm=None,
             convention="torchaudio", window_precision="torch"):
    return dict(name=name, signal=signal, n=n, n_fft=n_fft, hop_length=hop_length,
                win_length=win_length or n_fft, center=center, pad_mode=pad_mode, power=power,
                n_mels=n_mels, f_min=f_min, f_max=f_max, scale=scale, norm=norm,
                convention=convention, window_precision=window_precision, log=log,
                sample_rate=SIGNALS[signal][0])


LN_1E5 = {"kind": "ln", "floor": 1e-5}
LN_1E7 = {"kind": "ln", "floor": 1e-7}
NONE = {"kind": "none"}
WHISPER = {"kind": "whisper"}


def db(multiplier, top_db):
    return {"kind": "db", "multiplier": multiplier, "amin": 1e-10, "top_db": top_db}


MEL_CASES = [
    mel_case("whisper80", "sig16k", 4800, 400, 160, 80, WHISPER, scale="slaney", norm="slaney",
             convention="librosa"),
    mel_case("whisper128", "sig16k", 4800, 400, 160, 128, WHISPER, scale="slaney", norm="slaney",
             convention="librosa"),
    mel_case("ta16k_power_raw", "sig16k", 4800, 400, 160, 80, NONE),
    mel_case("ta16k_power_db", "sig16k", 4800, 400, 160, 80, db(10.0, 80.0)),
    mel_case("ta16k_uncentered_mag_ln", "sig16k", 4800, 400, 160, 80, LN_1E5, center=False,
             power=1.0),
    mel_case("vocos", "sig24k", 7200, 1024, 256, 100, LN_1E7, power=1.0),
    mel_case("ta24k_uncentered_power_db", "sig24k", 7200, 1024, 256, 100, db(10.0, None),
             center=False),
    mel_case("long_frames_slaney_ln", "sig24k", 7200, 2048, 300, 128, LN_1E5, win_length=1200,
             power=1.0, scale="slaney", norm="slaney", f_max=12000.0),
    mel_case("long_frames_mag_db", "sig24k", 7200, 2048, 300, 128, db(20.0, 80.0),
             win_length=1200, power=1.0),
    # librosa evaluates its window (scipy.signal.get_window) in float64.
    mel_case("librosa_db", "sig16k", 4800, 512, 128, 64, db(10.0, 80.0), pad_mode="constant",
             scale="slaney", norm="slaney", convention="librosa", window_precision="f64"),
]


def mel_reference(x: np.ndarray, case: dict) -> np.ndarray:
    """The case's recipe in the precision of `x`: float32 is what users get; float64 (with
    torch's default dtype switched, so that windows and filterbanks are float64 too) is the exact
    value of the same algorithm."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if x.dtype == np.float64 else torch.float32)
    try:
        if case["log"]["kind"] == "whisper":
            return whisper_log_mel(torch.from_numpy(x), case).numpy()
        if case["convention"] == "librosa":
            return librosa_db_mel(x, case)
        return apply_log(torchaudio_mel(torch.from_numpy(x), case), case["log"]).numpy()
    finally:
        torch.set_default_dtype(previous)


def mel_cases(tensors: dict) -> list:
    """Every case in float32. Decibel and raw cases also in float64: 10 log10 turns the float32
    rounding inside the reference (window, filterbank, FFT) into errors of about 1e-3 dB in weak
    bins, so those cases are also checked against the exactly evaluated algorithm, and
    `reference_f32_error` records how far the float32 reference itself is from it."""
    cases = []
    for case in MEL_CASES:
        x = SIGNALS[case["signal"]][1][: case["n"]].copy()
        out32 = mel_reference(x, case)
        key = f"mel.{case['name']}"
        tensors[key] = np.ascontiguousarray(out32, dtype=np.float32)
        entry = dict(case, output=key)
        if case["log"]["kind"] in ("db", "none"):
            out64 = mel_reference(x.astype(np.float64), case)
            tensors[f"{key}.f64"] = np.ascontiguousarray(out64, dtype=np.float32)
            entry["output_f64"] = f"{key}.f64"
            scale = np.maximum(np.abs(out64), 1.0) if case["log"]["kind"] == "none" else 1.0
            entry["reference_f32_error"] = float(np.max(np.abs(out32 - out64) / scale))
            print(f"{key}: float32 reference vs float64: {entry['reference_f32_error']:.3e}")
        cases.append(entry)
    return cases


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    windows, stft, mel, signals = {}, {}, {}, {}
    manifest = {
        "generator": "scripts/reference/dsp.py",
        "versions": {"torch": torch.__version__, "torchaudio": torchaudio.__version__,
                     "librosa": librosa.__version__, "numpy": np.__version__},
        "signals": {k: {"sample_rate": sr, "len": len(x)} for k, (sr, x) in SIGNALS.items()},
        "windows": window_cases(windows),
        "stft": stft_cases(stft),
        "fbanks": fbank_cases(mel),
        "mel": mel_cases(mel),
    }
    for key, (_, x) in SIGNALS.items():
        signals[key] = x
    save_file(signals, str(OUT / "signals.safetensors"))
    save_file(windows, str(OUT / "windows.safetensors"))
    save_file(stft, str(OUT / "stft.safetensors"))
    save_file(mel, str(OUT / "mel.safetensors"))
    (OUT / "dsp.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for f in sorted(OUT.iterdir()):
        print(f"{f.name}: {f.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
