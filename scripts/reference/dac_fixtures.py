"""Fixtures for tessera's DAC (codec/tests/dac_*.rs), from transformers' DacModel.

Builds tiny DAC models of the real architecture (the 16/24 kHz layout with an odd stride, the
44.1 kHz layout with even strides, and one with an explicit hidden_size and non-reversed
upsampling ratios), gives every parameter random values (snake alphas, conv weights and biases,
codebooks, quantizer projections; weight-norm magnitudes that differ from ||v|| where the
checkpoint is weight-normed), and writes for each, in the layout of the descript/dac_* repositories:

  codec/tests/fixtures/dac/<name>/config.json         DacConfig.save_pretrained
  codec/tests/fixtures/dac/<name>/model.safetensors   DacModel.save_pretrained
  codec/tests/fixtures/dac/<name>/io.safetensors      inputs and the reference's outputs:
      audio.<i>        [1, 1, T_i] f32 input clip (several lengths are not a multiple of the hop)
      codes.<i>        [1, n_codebooks, F_i] i64: DacModel.encode of the clip padded on the right
                       with zeros to a multiple of hop_length, as DacFeatureExtractor and the
                       descript package's DAC.preprocess pad it
      codes_nq.<i>     [1, N_Q, F_i] i64: the same with n_quantizers = N_Q
      decoded.<i>      [1, T'] f32: DacModel.decode(audio_codes=codes.<i>).audio_values
      decoded_nq.<i>   [1, T'] f32: the same from codes_nq.<i>
      n_q              [1] i64: N_Q

The hub checkpoints hold plain conv weights (transformers' conversion folds the weight norm
before saving, and DacModel.from_pretrained loads nothing else), so `tiny_odd` is saved that way.
`tiny_even` is saved with the weight norm of DacModel.apply_weight_norm
(`parametrizations.weight.original0/1`) and `tiny_custom` with torch's older
`weight_g`/`weight_v`, so that tessera's folding is checked against torch's own: the reference
outputs are computed with the weight norm active.

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/dac_fixtures.py
"""
import math
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import DacConfig, DacModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "codec", "tests", "fixtures", "dac")


def conv_modules(model):
    return [m for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]


def apply_weight_norm(model, style):
    """'plain': none; 'parametrizations': DacModel.apply_weight_norm; 'legacy': weight_g/weight_v."""
    if style == "parametrizations":
        model.apply_weight_norm()
    elif style == "legacy":
        for m in conv_modules(model):
            torch.nn.utils.weight_norm(m)
    elif style != "plain":
        raise ValueError(style)


def randomise(model, gen):
    """Random values for every parameter, scaled so that signals neither vanish nor saturate."""
    seen = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            seen += 1
            if name.endswith(("original0", "weight_g")):  # weight-norm magnitude g (!= ||v||)
                p.copy_(torch.empty_like(p).uniform_(0.4, 1.0, generator=gen))
            elif name.endswith(("original1", "weight_v")):  # weight-norm direction v
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("alpha"):
                p.copy_(torch.empty_like(p).uniform_(0.5, 2.0, generator=gen))
            elif name.endswith("codebook.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("weight") and p.dim() == 3:  # a plain conv weight
                # Rows of norm 0.4..1, as a weight norm with such magnitudes gives.
                v = torch.randn(p.shape, generator=gen)
                dims = tuple(range(1, v.dim()))
                g = torch.empty((p.shape[0],) + (1,) * (v.dim() - 1)).uniform_(0.4, 1.0, generator=gen)
                p.copy_(g * v / v.norm(dim=dims, keepdim=True))
            else:
                raise ValueError(f"parameter {name} {tuple(p.shape)} is not randomised")
    assert seen > 0


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


def build(config, seed, weight_norm="plain"):
    gen = torch.Generator().manual_seed(seed)
    model = DacModel(DacConfig(**config)).eval()
    apply_weight_norm(model, weight_norm)
    randomise(model, gen)
    return model, gen


def pad_to_hop(audio, hop):
    n = audio.shape[-1]
    return torch.nn.functional.pad(audio, (0, -n % hop))


def reference_outputs(model, clips, n_q):
    hop = model.config.hop_length
    tensors = {"n_q": torch.tensor([n_q], dtype=torch.int64)}
    with torch.inference_mode():
        for i, audio in enumerate(clips):
            x = pad_to_hop(audio, hop)
            codes = model.encode(x).audio_codes
            codes_nq = model.encode(x, n_quantizers=n_q).audio_codes
            assert torch.equal(codes_nq, codes[:, :n_q])
            tensors[f"audio.{i}"] = audio.contiguous()
            tensors[f"codes.{i}"] = codes.to(torch.int64).contiguous()
            tensors[f"codes_nq.{i}"] = codes_nq.to(torch.int64).contiguous()
            tensors[f"decoded.{i}"] = model.decode(audio_codes=codes).audio_values.contiguous()
            tensors[f"decoded_nq.{i}"] = model.decode(audio_codes=codes_nq).audio_values.contiguous()
    return tensors


def describe(name, model, tensors):
    dec = torch.cat([v.flatten() for k, v in tensors.items() if k.startswith("decoded.")])
    codes = [v for k, v in tensors.items() if k.startswith("codes.")]
    distinct = sorted({len(torch.unique(c[0, q])) for c in codes for q in range(c.shape[1])})
    print(
        f"{name}: {sum(p.numel() for p in model.parameters())} params, "
        f"decoded |max| {dec.abs().max():.3f} std {dec.std():.3f}, "
        f"saturated {(dec.abs() > 0.999).float().mean():.4f}, distinct codes per codebook {distinct}",
        file=sys.stderr,
    )


TINY = {
    # The 16/24 kHz layout (an odd stride of 5: decoded audio is shorter than hop * frames),
    # plain weights as on the hub.
    "tiny_odd": dict(
        config=dict(
            encoder_hidden_size=4,
            downsampling_ratios=[2, 5],
            decoder_hidden_size=32,
            n_codebooks=4,
            codebook_size=64,
            codebook_dim=4,
            sampling_rate=8000,
        ),
        weight_norm="plain",
        lengths=[200, 157, 9, 1003],
        n_q=2,
    ),
    # The 44.1 kHz layout (even strides), weight-normed as DacModel.apply_weight_norm leaves it.
    "tiny_even": dict(
        config=dict(
            encoder_hidden_size=2,
            downsampling_ratios=[2, 4, 2],
            decoder_hidden_size=32,
            n_codebooks=3,
            codebook_size=32,
            codebook_dim=2,
            sampling_rate=11025,
        ),
        weight_norm="parametrizations",
        lengths=[160, 250, 1001],
        n_q=1,
    ),
    # hidden_size and upsampling_ratios given explicitly (transformers honours both), legacy
    # weight_g/weight_v keys.
    "tiny_custom": dict(
        config=dict(
            encoder_hidden_size=3,
            downsampling_ratios=[2, 3],
            upsampling_ratios=[2, 3],
            hidden_size=10,
            decoder_hidden_size=20,
            n_codebooks=5,
            codebook_size=16,
            codebook_dim=3,
            sampling_rate=6000,
        ),
        weight_norm="legacy",
        lengths=[60, 61, 1, 500],
        n_q=3,
    ),
}


def main():
    torch.set_num_threads(1)
    for seed, (name, spec) in enumerate(TINY.items()):
        model, gen = build(spec["config"], seed, spec["weight_norm"])
        out_dir = os.path.join(OUT, name)
        os.makedirs(out_dir, exist_ok=True)
        model.save_pretrained(out_dir)
        sr = spec["config"]["sampling_rate"]
        clips = [test_signal(n, sr, gen) for n in spec["lengths"]]
        tensors = reference_outputs(model, clips, spec["n_q"])
        save_file(tensors, os.path.join(out_dir, "io.safetensors"))
        describe(name, model, tensors)


if __name__ == "__main__":
    main()
