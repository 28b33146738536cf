"""Fixtures for tessera's EnCodec (codec/tests/encodec_*.rs), from transformers' EncodecModel.

Builds tiny EnCodec models of the real architectures, gives every parameter random values
(weight-norm magnitudes that differ from ||v||, LSTM weights, group norms, biases) and draws each
residual codebook from the residuals the encoder actually produces (so that codes are diverse
and every stage matters), then writes for each, in the layout of the facebook/encodec_*
repositories:

  codec/tests/fixtures/encodec/<name>/config.json        as save_pretrained writes it
  codec/tests/fixtures/encodec/<name>/model.safetensors  the state dict (weight norms as
                                                         weight_g/weight_v, as the hub files
                                                         have them, or as parametrizations)
  codec/tests/fixtures/encodec/<name>/io.safetensors     inputs and the reference's outputs:
      audio.<i>               [B, C, T_i] f32 input clips (lengths that are not multiples of the
                              hop, one shorter than the first conv's padding)
      codes.<i>.<j>           [chunks, B, n_q, frames] i64, encode(audio.<i>, bandwidth j)
      last_pad.<i>.<j>        [1] i64, last_frame_pad_length
      scales.<i>.<j>          [chunks, B] f32 (normalising models only)
      decoded.<i>.<j>         [B, C, T] f32, decode(codes, scales, last_frame_pad_length)
      bandwidths              [n] f64, the config's target_bandwidths (j indexes them)

The checkpoint is reloaded with from_pretrained before the outputs are computed, so the saved
files are what the reference reads. Run:
  HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/encodec_fixtures.py
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import EncodecConfig, EncodecModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "codec", "tests", "fixtures", "encodec")


def randomise(model, gen):
    """Random values for every parameter, scaled so that signals neither vanish nor explode."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original0"):  # weight-norm magnitude g (!= ||v||)
                p.copy_(torch.empty_like(p).uniform_(0.5, 1.5, generator=gen))
            elif name.endswith("original1"):  # weight-norm direction v
                p.copy_(torch.randn(p.shape, generator=gen))
            elif ".lstm." in name:
                bound = 1.5 / math.sqrt(p.shape[-1] if p.dim() == 2 else p.shape[0] / 4)
                p.copy_(torch.empty_like(p).uniform_(-bound, bound, generator=gen))
            elif ".norm." in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("conv.weight"):  # plain convs (no weight norm)
                fan_in = p.shape[1] * p.shape[2]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                raise ValueError(f"parameter {name} {tuple(p.shape)} is not randomised")


def test_signal(n, sr, gen, channels=1, batch=1):
    """A few partials plus noise, the kind of input a codec sees, at moderate level."""
    t = torch.arange(n, dtype=torch.float64) / sr
    out = torch.zeros(batch, channels, n, dtype=torch.float64)
    for b in range(batch):
        for c in range(channels):
            for _ in range(4):
                f = float(torch.empty(1).uniform_(20.0, sr / 4, generator=gen))
                a = float(torch.empty(1).uniform_(0.05, 0.3, generator=gen))
                out[b, c] += a * torch.sin(2 * math.pi * f * t + float(torch.rand(1, generator=gen)) * 6.28)
            out[b, c] += 0.05 * torch.randn(n, generator=gen, dtype=torch.float64)
    return out.float()


def fit_codebooks(model, gen, sr, channels):
    """Each stage's codebook: frames of the residual it sees on a training signal, plus noise."""
    x = test_signal(4 * sr, sr, gen, channels)
    with torch.no_grad():
        if model.config.normalize:
            x = x / (x.mean(1, keepdim=True).pow(2).mean(-1, keepdim=True).sqrt() + 1e-8)
        residual = model.encoder(x)[0].t()  # [frames, dim]
        for layer in model.quantizer.layers:
            cb = layer.codebook
            k = cb.embed.shape[0]
            idx = torch.randint(0, residual.shape[0], (k,), generator=gen)
            spread = residual.std() + 1e-6
            embed = residual[idx] + 0.3 * spread * torch.randn(residual[idx].shape, generator=gen)
            cb.embed.copy_(embed)
            cb.embed_avg.copy_(embed)
            cb.cluster_size.copy_(torch.rand(k, generator=gen))
            d = (residual.pow(2).sum(1, keepdim=True) - 2 * residual @ embed.t() + embed.pow(2).sum(1))
            residual = residual - embed[d.argmin(1)]


def to_hub_weight_norm(path):
    """Rename parametrizations.weight.original0/1 to weight_g/weight_v, as the hub files have."""
    sd = load_file(path)
    renamed = {}
    for k, v in sd.items():
        k = k.replace(".parametrizations.weight.original0", ".weight_g")
        k = k.replace(".parametrizations.weight.original1", ".weight_v")
        renamed[k] = v
    save_file(renamed, path, metadata={"format": "pt"})


TINY = {
    # The 24 kHz layout: causal, reflect padding, weight norm, 2-layer LSTM, conv shortcuts,
    # no chunking; bandwidths give 1, 2 and 4 codebooks. Hub-style weight_g/weight_v names.
    "tiny_24k": dict(
        config=dict(
            sampling_rate=2400,
            audio_channels=1,
            num_filters=2,
            hidden_size=8,
            codebook_size=64,
            upsampling_ratios=[3, 2, 2],
            target_bandwidths=[1.2, 2.4, 4.8],
            num_lstm_layers=2,
        ),
        lengths=[240, 1001, 37, 5],
        batch=1,
        hub_names=True,
    ),
    # The 48 kHz layout: stereo, non-causal, time group norm, normalised chunks with overlap,
    # two residual blocks per stage with a wider dilated kernel; batch of two.
    "tiny_48k": dict(
        config=dict(
            sampling_rate=4000,
            audio_channels=2,
            num_filters=4,
            hidden_size=8,
            codebook_size=32,
            upsampling_ratios=[2, 5],
            target_bandwidths=[2.0, 6.0],
            norm_type="time_group_norm",
            use_causal_conv=False,
            normalize=True,
            chunk_length_s=0.1,
            overlap=0.1,
            num_residual_layers=2,
            residual_kernel_size=5,
            dilation_growth_rate=3,
            num_lstm_layers=1,
        ),
        lengths=[800, 150],
        batch=2,
        hub_names=False,
    ),
    # Other knobs: constant padding, causal with a trim ratio of 0.5 (left and right trims),
    # identity shortcuts, other first/last kernels, a 1-layer LSTM.
    "tiny_plain": dict(
        config=dict(
            sampling_rate=3000,
            audio_channels=1,
            num_filters=3,
            hidden_size=12,
            codebook_size=32,
            upsampling_ratios=[5, 3],
            target_bandwidths=[1.0, 3.0],
            pad_mode="constant",
            trim_right_ratio=0.5,
            use_conv_shortcut=False,
            kernel_size=5,
            last_kernel_size=3,
            compress=3,
            num_lstm_layers=1,
        ),
        lengths=[450, 1234],
        batch=1,
        hub_names=False,
    ),
}


def reference_outputs(model, clips):
    tensors = {}
    bws = model.config.target_bandwidths
    tensors["bandwidths"] = torch.tensor(bws, dtype=torch.float64)
    with torch.inference_mode():
        for i, audio in enumerate(clips):
            tensors[f"audio.{i}"] = audio.contiguous()
            for j, bw in enumerate(bws):
                codes, scales, last_pad = model.encode(audio, bandwidth=bw, return_dict=False)
                tensors[f"codes.{i}.{j}"] = codes.to(torch.int64).contiguous()
                tensors[f"last_pad.{i}.{j}"] = torch.tensor([last_pad], dtype=torch.int64)
                if scales[0] is not None:
                    tensors[f"scales.{i}.{j}"] = torch.stack([s.view(-1) for s in scales]).contiguous()
                decoded = model.decode(codes, scales, last_frame_pad_length=last_pad, return_dict=False)[0]
                tensors[f"decoded.{i}.{j}"] = decoded.contiguous()
    return tensors


def describe(name, model, tensors):
    dec = torch.cat([v.flatten() for k, v in tensors.items() if k.startswith("decoded.")])
    codes = [v for k, v in tensors.items() if k.startswith("codes.")]
    distinct = sorted({len(torch.unique(c[:, :, q])) for c in codes for q in range(c.shape[2])})
    print(
        f"{name}: {sum(p.numel() for p in model.parameters())} params, decoded |max| "
        f"{dec.abs().max():.3f} std {dec.std():.3f}, distinct codes per codebook {distinct}",
        file=sys.stderr,
    )


def main():
    torch.set_num_threads(1)
    for seed, (name, spec) in enumerate(TINY.items()):
        gen = torch.Generator().manual_seed(100 + seed)
        cfg = spec["config"]
        model = EncodecModel(EncodecConfig(**cfg)).eval()
        randomise(model, gen)
        fit_codebooks(model, gen, cfg["sampling_rate"], cfg["audio_channels"])
        out_dir = os.path.join(OUT, name)
        model.save_pretrained(out_dir)
        if spec["hub_names"]:
            to_hub_weight_norm(os.path.join(out_dir, "model.safetensors"))
        reloaded = EncodecModel.from_pretrained(out_dir).eval()
        for (k, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
            assert torch.equal(a, b), f"{k} did not survive saving"
        clips = [
            test_signal(n, cfg["sampling_rate"], gen, cfg["audio_channels"], spec["batch"])
            for n in spec["lengths"]
        ]
        tensors = reference_outputs(reloaded, clips)
        save_file(tensors, os.path.join(out_dir, "io.safetensors"))
        describe(name, reloaded, tensors)


if __name__ == "__main__":
    main()
