"""Fixtures for tessera's SNAC (codec/tests/snac_*.rs), from the authors' package (snac==1.2.1).

Builds tiny SNAC models of the real architecture (the 24 kHz layout without attention, the
32/44 kHz layout with local attention and depthwise convs, and a dense one without noise), gives
every parameter random values (weight-norm magnitudes that differ from ||v||, snake alphas, layer
norms, codebooks), and writes for each, in the layout of the hubertsiuzdak/snac_* repositories:

  codec/tests/fixtures/snac/<name>/config.json         as SNAC.from_config reads it
  codec/tests/fixtures/snac/<name>/pytorch_model.bin   torch.save(model.state_dict())
  codec/tests/fixtures/snac/<name>/io.safetensors      inputs and the reference's outputs:
      audio.<i>          [1, 1, T_i] f32 input clips (some lengths need padding)
      codes.<i>.<k>      [1, T_ik] i64, SNAC.encode(audio.<i>)
      decoded.<i>        [1, 1, T] f32, SNAC.decode(codes.<i>) with the decoder noise set to zero
      decoded_noise.<i>  the same with the noise drawn from tessera's NormalRng(noise_seed)
                         (ported below), so the noise path itself is checked
      noise_seed         [1] i64

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/snac_fixtures.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import snac
from snac import SNAC
from snac.layers import NoiseBlock

assert snac.__version__ == "1.2.1", snac.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "codec", "tests", "fixtures", "snac")
NOISE_SEED = 1234

MASK64 = (1 << 64) - 1


class NormalRng:
    """Port of tessera_core::nn::NormalRng (SplitMix64 + Box-Muller), bit for bit."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def fill(self, n):
        out = np.empty(n, dtype=np.float32)
        scale = 1.0 / float(1 << 53)
        for i in range(0, n, 2):
            u1 = float((self.next_u64() >> 11) + 1) * scale
            u2 = float(self.next_u64() >> 11) * scale
            r = math.sqrt(-2.0 * math.log(u1))
            theta = math.tau * u2
            out[i] = np.float32(r * math.cos(theta))
            if i + 1 < n:
                out[i + 1] = np.float32(r * math.sin(theta))
        return out


class NoiseControl:
    """Replaces torch.randn in NoiseBlock: zeros, or tessera's seeded stream."""

    rng = None  # None: zero noise

    @staticmethod
    def forward(block, x):
        B, C, T = x.shape
        if NoiseControl.rng is None:
            noise = torch.zeros((B, 1, T), dtype=x.dtype)
        else:
            noise = torch.from_numpy(NoiseControl.rng.fill(B * T)).reshape(B, 1, T)
        h = block.linear(x)
        n = noise * h
        return x + n


NoiseBlock.forward = NoiseControl.forward

assert NormalRng(0).next_u64() == 0xE220A8397B1DCDAF  # pinned in core/src/nn/rng.rs too


def randomise(model, gen):
    """Random values for every parameter, scaled so that signals neither vanish nor saturate."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original0"):  # weight-norm magnitude g (!= ||v||)
                p.copy_(torch.empty_like(p).uniform_(0.4, 1.0, generator=gen))
            elif name.endswith("original1"):  # weight-norm direction v
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("alpha"):
                p.copy_(torch.empty_like(p).uniform_(0.5, 2.0, generator=gen))
            elif name.endswith("codebook.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif ".norm." in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 2:  # attention projections
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:
                raise ValueError(f"parameter {name} {tuple(p.shape)} is not randomised")


def test_signal(n, sr, gen):
    """A few partials plus noise, the kind of input a codec sees, at moderate level."""
    t = torch.arange(n, dtype=torch.float64) / sr
    x = torch.zeros(n, dtype=torch.float64)
    for _ in range(4):
        f = float(torch.empty(1).uniform_(40.0, sr / 4, generator=gen))
        a = float(torch.empty(1).uniform_(0.05, 0.3, generator=gen))
        x += a * torch.sin(2 * math.pi * f * t + float(torch.rand(1, generator=gen)) * 6.28)
    x += 0.05 * torch.randn(n, generator=gen, dtype=torch.float64)
    return x.float().reshape(1, 1, n)


def build(config, seed):
    gen = torch.Generator().manual_seed(seed)
    model = SNAC(**config).eval()
    randomise(model, gen)
    return model, gen


def reference_outputs(model, clips, noise_seed=None, noise_for=()):
    """Codes and decoded audio (zero noise; seeded noise for the clips in noise_for)."""
    tensors = {}
    with torch.inference_mode():
        for i, audio in enumerate(clips):
            codes = model.encode(audio)
            tensors[f"audio.{i}"] = audio.contiguous()
            for k, c in enumerate(codes):
                tensors[f"codes.{i}.{k}"] = c.to(torch.int64).contiguous()
            NoiseControl.rng = None
            tensors[f"decoded.{i}"] = model.decode(codes).contiguous()
            if i in noise_for:
                NoiseControl.rng = NormalRng(noise_seed)
                tensors[f"decoded_noise.{i}"] = model.decode(codes).contiguous()
                NoiseControl.rng = None
    return tensors


def save_checkpoint(model, config, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    torch.save(model.state_dict(), os.path.join(out_dir, "pytorch_model.bin"))


def describe(name, model, tensors):
    dec = [v for k, v in tensors.items() if k.startswith("decoded.")]
    pre = torch.cat([d.flatten() for d in dec])
    codes = [v for k, v in tensors.items() if k.startswith("codes.")]
    distinct = sorted({len(torch.unique(c)) for c in codes})
    print(
        f"{name}: {sum(p.numel() for p in model.parameters())} params, "
        f"decoded |max| {pre.abs().max():.3f} std {pre.std():.3f}, "
        f"saturated {(pre.abs() > 0.999).float().mean():.4f}, distinct codes per level {distinct}",
        file=sys.stderr,
    )


TINY = {
    # The 24 kHz layout (depthwise, no attention, vq_strides [4, 2, 1]) at toy sizes.
    "tiny_24k": dict(
        config=dict(
            sampling_rate=8000,
            encoder_dim=4,
            encoder_rates=[2, 4],
            decoder_dim=32,
            decoder_rates=[4, 2],
            attn_window_size=None,
            codebook_size=64,
            codebook_dim=8,
            vq_strides=[4, 2, 1],
            noise=True,
            depthwise=True,
        ),
        lengths=[256, 1000, 37],
    ),
    # The 32/44 kHz layout: local attention in encoder and decoder, depthwise, odd strides.
    # A window of 6 with vq_strides[0] = 4 makes the padding multiple hop * lcm(4, 6) = 144.
    "tiny_attn": dict(
        config=dict(
            sampling_rate=12000,
            encoder_dim=8,
            encoder_rates=[2, 3, 2],
            decoder_dim=64,
            decoder_rates=[3, 2, 2],
            attn_window_size=6,
            codebook_size=128,
            codebook_dim=8,
            vq_strides=[4, 2, 1],
            noise=True,
            depthwise=True,
        ),
        lengths=[1728, 1000, 3001],
    ),
    # Dense convs, no attention, no noise block, an explicit latent_dim, odd stride 5.
    "tiny_dense": dict(
        config=dict(
            sampling_rate=16000,
            encoder_dim=6,
            encoder_rates=[5],
            latent_dim=12,
            decoder_dim=16,
            decoder_rates=[5],
            attn_window_size=None,
            codebook_size=32,
            codebook_dim=4,
            vq_strides=[3, 1],
            noise=False,
            depthwise=False,
        ),
        lengths=[150, 401],
    ),
}


def main():
    torch.set_num_threads(1)
    for seed, (name, spec) in enumerate(TINY.items()):
        model, gen = build(spec["config"], seed)
        out_dir = os.path.join(OUT, name)
        save_checkpoint(model, spec["config"], out_dir)
        clips = [test_signal(n, spec["config"]["sampling_rate"], gen) for n in spec["lengths"]]
        noise_for = (1,) if spec["config"]["noise"] else ()
        tensors = reference_outputs(model, clips, NOISE_SEED, noise_for)
        tensors["noise_seed"] = torch.tensor([NOISE_SEED], dtype=torch.int64)
        save_file(tensors, os.path.join(out_dir, "io.safetensors"))
        describe(name, model, tensors)


if __name__ == "__main__":
    main()
