"""Fixtures for tessera's Mimi (codec/tests/mimi_*.rs), from transformers' MimiModel.

Builds tiny Mimi models of the real architecture (and variants of its knobs), gives every
parameter random values (convs, transformer projections, layer norms, layer scales far from
their 0.01 init, EMA codebooks whose usage is sometimes below the clamp) and draws each residual
codebook from the residuals the model actually produces, then writes for each, in the layout of
the kyutai/mimi repository:

  codec/tests/fixtures/mimi/<name>/config.json        save_pretrained's, or rewritten in the
                                                      hub's style (frame_rate, rope_theta)
  codec/tests/fixtures/mimi/<name>/model.safetensors  the state dict
  codec/tests/fixtures/mimi/<name>/io.safetensors     inputs and the reference's outputs:
      audio.<i>        [B, C, T_i] f32 input clips (multiples of the frame size and not, one
                       shorter than a frame, one longer than the attention block of 256 frames)
      codes.<i>        [B, num_quantizers, F] i64, encode(audio.<i>)
      codes_few.<i>    [B, few, F] i64, encode(audio.<i>, num_quantizers=few)
      decoded.<i>      [B, C, T] f32, decode(codes.<i>)
      decoded_few.<i>  [B, C, T] f32, decode(codes_few.<i>) (short clips only)
      few              [1] i64

The checkpoint is reloaded with from_pretrained before the outputs are computed, so the saved
files are what the reference reads. Run:
  HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/mimi_fixtures.py
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import MimiConfig, MimiModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "codec", "tests", "fixtures", "mimi")


def randomise(model, gen):
    """Random values for every parameter, scaled so that signals neither vanish nor explode."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("layer_scale.scale"):
                p.copy_(torch.empty_like(p).uniform_(0.3, 1.0, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("conv.weight") or name.endswith("proj.weight") or ".fc" in name:
                fan_in = p[0].numel()
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


def fit_rvq(rvq, latents, gen):
    """Each stage's EMA codebook from frames of the residual it sees, plus noise; a few entries
    get a usage below the clamp (1e-5) to check it."""
    residual = latents
    if rvq.input_proj is not None:
        residual = rvq.input_proj(residual)
    residual = residual.transpose(1, 2).reshape(-1, residual.shape[1])
    for layer in rvq.layers:
        cb = layer.codebook
        k = cb.embed_sum.shape[0]
        idx = torch.randint(0, residual.shape[0], (k,), generator=gen)
        spread = residual.std() + 1e-6
        embed = residual[idx] + 0.3 * spread * torch.randn(residual[idx].shape, generator=gen)
        usage = torch.empty(k).uniform_(0.5, 2.0, generator=gen)
        usage[:3] = 1e-6
        cb.cluster_usage.copy_(usage)
        cb.embed_sum.copy_(embed * usage.clamp(min=1e-5)[:, None])
        cb._embed = None
        d = torch.cdist(residual[None], cb.embed[None])[0]
        residual = residual - cb.embed[d.argmin(1)]


def fit_codebooks(model, gen, sr, channels):
    x = test_signal(4 * sr, sr, gen, channels)
    with torch.no_grad():
        latents = model.encoder(x).latents
        fit_rvq(model.quantizer.semantic_residual_vector_quantizer, latents, gen)
        fit_rvq(model.quantizer.acoustic_residual_vector_quantizer, latents, gen)


def to_hub_config(path):
    """kyutai/mimi's own style: frame_rate and rope_theta instead of _frame_rate and
    rope_parameters."""
    with open(path) as f:
        cfg = json.load(f)
    if "_frame_rate" in cfg:
        rate = cfg.pop("_frame_rate")
        if rate is not None:
            cfg["frame_rate"] = rate
    cfg["rope_theta"] = cfg.pop("rope_parameters")["rope_theta"]
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


TINY = {
    # The kyutai/mimi layout at toy size: SEANet at 100 Hz, learned 2x resampling to 50 Hz
    # (frame size 48), depthwise upsampling, 1 semantic + 5 acoustic codebooks with projections,
    # two transformer layers with a window of 5 frames. Hub-style config.
    "tiny": dict(
        config=dict(
            sampling_rate=2400, frame_rate=50, audio_channels=1, hidden_size=16, num_filters=2,
            upsampling_ratios=[4, 3, 2], codebook_size=64, codebook_dim=8,
            vector_quantization_hidden_dimension=8, num_quantizers=6, num_semantic_quantizers=1,
            upsample_groups=16, num_hidden_layers=2, intermediate_size=32, num_attention_heads=2,
            num_key_value_heads=2, head_dim=8, sliding_window=5,
        ),
        lengths=[480, 1001, 37, 6200],
        batch=1,
        few=2,
        hub_config=True,
    ),
    # Other knobs: grouped-query attention with biases, a head size unrelated to the width,
    # tanh GELU, another RoPE base, grouped (not depthwise) upsampling, replicate padding, conv
    # shortcuts, two residual blocks, 2 semantic codebooks without projections, no stated
    # frame rate (sampling_rate / (2 hop)); stereo, batch of two.
    "tiny_gqa": dict(
        config=dict(
            sampling_rate=3000, audio_channels=2, hidden_size=16, num_filters=4,
            upsampling_ratios=[5, 3], codebook_size=32, codebook_dim=16,
            vector_quantization_hidden_dimension=16, num_quantizers=4, num_semantic_quantizers=2,
            upsample_groups=4, num_hidden_layers=1, intermediate_size=24, num_attention_heads=4,
            num_key_value_heads=1, head_dim=6, attention_bias=True, hidden_act="gelu_pytorch_tanh",
            rope_parameters=dict(rope_theta=100.0, rope_type="default"), sliding_window=3,
            pad_mode="replicate", use_conv_shortcut=True, num_residual_layers=2, compress=4,
            kernel_size=5, last_kernel_size=5,
        ),
        lengths=[600, 451],
        batch=2,
        few=3,
        hub_config=False,
    ),
}


def reference_outputs(model, clips, few):
    tensors = {"few": torch.tensor([few], dtype=torch.int64)}
    with torch.inference_mode():
        for i, audio in enumerate(clips):
            tensors[f"audio.{i}"] = audio.contiguous()
            codes = model.encode(audio).audio_codes
            tensors[f"codes.{i}"] = codes.to(torch.int64).contiguous()
            tensors[f"decoded.{i}"] = model.decode(codes).audio_values.contiguous()
            codes = model.encode(audio, num_quantizers=few).audio_codes
            tensors[f"codes_few.{i}"] = codes.to(torch.int64).contiguous()
            if audio.shape[-1] < 5000:  # keeps the fixture small
                tensors[f"decoded_few.{i}"] = model.decode(codes).audio_values.contiguous()
    return tensors


def describe(name, model, tensors):
    dec = torch.cat([v.flatten() for k, v in tensors.items() if k.startswith("decoded.")])
    codes = [v for k, v in tensors.items() if k.startswith("codes.")]
    distinct = sorted({len(torch.unique(c[:, q])) for c in codes for q in range(c.shape[1])})
    print(
        f"{name}: {sum(p.numel() for p in model.parameters())} params, decoded |max| "
        f"{dec.abs().max():.3f} std {dec.std():.3f}, distinct codes per codebook {distinct}",
        file=sys.stderr,
    )


def build(cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    model = MimiModel(MimiConfig(**cfg)).eval()
    randomise(model, gen)
    fit_codebooks(model, gen, cfg["sampling_rate"], cfg["audio_channels"])
    return model, gen


def save(model, out_dir, hub_config):
    model.save_pretrained(out_dir)
    if hub_config:
        to_hub_config(os.path.join(out_dir, "config.json"))
    reloaded = MimiModel.from_pretrained(out_dir).eval()
    for (k, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), f"{k} did not survive saving"
    assert reloaded.config.frame_rate == model.config.frame_rate
    return reloaded


def main():
    torch.set_num_threads(1)
    for seed, (name, spec) in enumerate(TINY.items()):
        cfg = spec["config"]
        model, gen = build(cfg, 300 + seed)
        out_dir = os.path.join(OUT, name)
        model = save(model, out_dir, spec["hub_config"])
        clips = [
            test_signal(n, cfg["sampling_rate"], gen, cfg["audio_channels"], spec["batch"])
            for n in spec["lengths"]
        ]
        tensors = reference_outputs(model, clips, spec["few"])
        save_file(tensors, os.path.join(out_dir, "io.safetensors"))
        describe(name, model, tensors)


if __name__ == "__main__":
    main()
