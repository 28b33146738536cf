#!/usr/bin/env python3
"""Writes the quantizer fixtures of tessera-core from the reference implementations.

    HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/quantizers.py [--full DIR]

References (nothing is reimplemented here; every expected value comes from the package):
  encodec_rvq        encodec.quantization.core_vq.ResidualVectorQuantization (Euclidean)
  encodec_proj_rvq   the same with codebook_dim < dim (Linear projections per stage)
  dac_rvq            dac.nn.quantize.ResidualVectorQuantize (factorised, l2-normalised codes)
  moshi_rvq          moshi.quantization.vq.ResidualVectorQuantizer (EMA codebooks, cdist search,
                     input/output projections around the stack)
  fsq_proj, fsq      vector_quantize_pytorch.FSQ
  lfq_proj, lfq      vector_quantize_pytorch.LFQ

Each file holds the parameters under the key names of the module's own state dict (weight norm
folded into plain `weight` for DAC), the input, the expected codes (int64) and the expected
outputs. By default the small fixtures go to core/tests/fixtures/quant/; `--full DIR` writes the
same files with the real default sizes of each codec (not committed: read by the ignored test
`quant_reference_full` through TESSERA_QUANT_FULL=DIR).
"""

import argparse
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from dac.nn.quantize import ResidualVectorQuantize as DacRvq
from encodec.quantization.core_vq import ResidualVectorQuantization as EncodecRvq
from moshi.quantization.vq import ResidualVectorQuantizer as MoshiRvq
from vector_quantize_pytorch import FSQ, LFQ

ROOT = Path(__file__).resolve().parents[2]

SMALL = dict(
    batch=2,
    frames=50,
    encodec=dict(dim=32, bins=64, n_q=4, codebook_dim=16),
    dac=dict(dim=32, bins=64, n_q=4, codebook_dim=8),
    moshi=dict(dim=16, input_dim=32, bins=64, n_q=4),
    fsq=dict(levels=[8, 5, 5, 5], dim=32, plain_levels=[7, 5, 4, 3]),
    lfq=dict(bits=10, dim=32, scale=0.5),
)

# Default sizes of the real models: EnCodec 24 kHz (128-dim, 1024 bins, 32 stages), DAC 44 kHz
# (1024-dim, 9 stages of 1024 x 8), Mimi (256-dim codebooks of 2048 behind 512-dim projections),
# FSQ/LFQ at the sizes of published audio/image tokenizers.
FULL = dict(
    batch=1,
    frames=750,
    encodec=dict(dim=128, bins=1024, n_q=32, codebook_dim=64),
    dac=dict(dim=1024, bins=1024, n_q=9, codebook_dim=8),
    moshi=dict(dim=256, input_dim=512, bins=2048, n_q=8),
    fsq=dict(levels=[8, 8, 8, 5, 5, 5], dim=512, plain_levels=[8, 8, 8, 6, 5]),
    lfq=dict(bits=18, dim=256, scale=0.5),
)


def contiguous(tensors):
    return {k: v.detach().contiguous() for k, v in tensors.items()}


def encodec_rvq(cfg, batch, frames, codebook_dim):
    c = cfg["encodec"]
    rvq = EncodecRvq(
        num_quantizers=c["n_q"],
        dim=c["dim"],
        codebook_size=c["bins"],
        codebook_dim=codebook_dim,
        kmeans_init=False,
    ).eval()
    inner = codebook_dim or c["dim"]
    with torch.no_grad():
        for layer in rvq.layers:
            layer._codebook.embed.copy_(torch.randn(c["bins"], inner) * 0.5)
    x = torch.randn(batch, c["dim"], frames)
    params = {
        k: v for k, v in rvq.state_dict().items() if "embed_avg" not in k and "cluster_size" not in k
        and "inited" not in k
    }
    with torch.no_grad():
        out = {"input": x}
        for n_q in (c["n_q"], 2):
            codes = rvq.encode(x, n_q=n_q)  # [n_q, B, T]
            out[f"codes_nq{n_q}"] = codes.transpose(0, 1)
            out[f"decoded_nq{n_q}"] = rvq.decode(codes)
            # The forward pass in eval mode agrees with encode/decode, so only those are kept.
            quantized, codes_fwd, _ = rvq(x, n_q=n_q)
            assert torch.equal(codes_fwd, codes)
            assert torch.equal(quantized, out[f"decoded_nq{n_q}"])
    return contiguous({**params, **out})


def fold_weight_norm(conv):
    g, v = conv.weight_g, conv.weight_v
    return torch._weight_norm(v, g, 0)


def dac_rvq(cfg, batch, frames):
    c = cfg["dac"]
    rvq = DacRvq(
        input_dim=c["dim"], n_codebooks=c["n_q"], codebook_size=c["bins"],
        codebook_dim=c["codebook_dim"],
    ).eval()
    params = {}
    for i, q in enumerate(rvq.quantizers):
        for name in ("in_proj", "out_proj"):
            conv = getattr(q, name)
            params[f"quantizers.{i}.{name}.weight"] = fold_weight_norm(conv)
            params[f"quantizers.{i}.{name}.bias"] = conv.bias
        params[f"quantizers.{i}.codebook.weight"] = q.codebook.weight
    x = torch.randn(batch, c["dim"], frames)
    with torch.no_grad():
        out = {"input": x}
        for n_q in (c["n_q"], 2):
            z_q, codes, _, _, _ = rvq(x, n_quantizers=n_q)
            out[f"codes_nq{n_q}"] = codes
            out[f"quantized_nq{n_q}"] = z_q
            out[f"decoded_nq{n_q}"] = rvq.from_codes(codes)[0]
    return contiguous({**params, **out})


def moshi_rvq(cfg, batch, frames):
    c = cfg["moshi"]
    rvq = MoshiRvq(
        dimension=c["dim"], input_dimension=c["input_dim"], output_dimension=c["input_dim"],
        n_q=c["n_q"], bins=c["bins"],
    ).eval()
    with torch.no_grad():
        for layer in rvq.vq.layers:
            book = layer._codebook
            usage = torch.rand(c["bins"]) * 4
            usage[:3] = torch.tensor([0.0, 1e-7, 2e-5])  # below and near the 1e-5 clamp
            book.cluster_usage.copy_(usage)
            book.embedding_sum.copy_(torch.randn(c["bins"], c["dim"]) * usage[:, None].clamp(min=1e-5))
            book._initialized.fill_(1)
            book.register_buffer("_embedding", None, persistent=False)
    params = {
        k: v for k, v in rvq.state_dict().items()
        if "embedding_sum" in k or "cluster_usage" in k or k.endswith("proj.weight")
    }
    x = torch.randn(batch, c["input_dim"], frames)
    with torch.no_grad():
        out = {"input": x}
        for n_q in (c["n_q"], 2):
            rvq.set_num_codebooks(n_q)
            codes = rvq.encode(x)  # [B, n_q, T]
            out[f"codes_nq{n_q}"] = codes
            out[f"decoded_nq{n_q}"] = rvq.decode(codes)
        rvq.set_num_codebooks(c["n_q"])
        # The EMA codebooks exactly as moshi divides them, to check the Rust division.
        for i, layer in enumerate(rvq.vq.layers):
            out[f"embedding.{i}"] = layer._codebook.embedding
    return contiguous({**params, **out})


def fsq(levels, dim, batch, frames):
    q = FSQ(levels=levels, dim=dim, channel_first=True).eval()
    x = torch.randn(batch, dim, frames) * 2.0
    x[0, :, 0] = 0.0  # tanh(shift) must land back on the centre level
    with torch.no_grad():
        quantized, indices = q(x)
        decoded = q.indices_to_codes(indices)
        lv = q._levels
        half_l = (lv - 1) * (1 + 1e-3) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
    params = {k: v for k, v in q.state_dict().items()}
    out = {
        "levels": torch.tensor(levels, dtype=torch.int64),
        "input": x,
        "codes": indices.to(torch.int64),
        "quantized": quantized,
        "decoded": decoded,
        "half_l": half_l,
        "offset": offset,
        "shift": shift,
    }
    return contiguous({**params, **out})


def lfq(bits, dim, scale, batch, frames):
    q = LFQ(dim=dim, codebook_size=2**bits, codebook_scale=scale, channel_first=True).eval()
    x = torch.randn(batch, dim, frames)
    x[0, :, :3] = 0.0  # zero is not positive: bit 0
    with torch.no_grad():
        quantized, indices, _ = q(x)
        decoded = q.indices_to_codes(indices)
    params = {k: v for k, v in q.state_dict().items() if k.startswith("project_")}
    out = {
        "bits": torch.tensor([bits], dtype=torch.int64),
        "scale": torch.tensor([scale], dtype=torch.float64),
        "input": x,
        "codes": indices.to(torch.int64),
        "quantized": quantized,
        "decoded": decoded,
    }
    return contiguous({**params, **out})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", type=Path, help="write full-size fixtures to this directory")
    args = parser.parse_args()
    cfg = FULL if args.full else SMALL
    out_dir = args.full or ROOT / "core/tests/fixtures/quant"
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    b, t = cfg["batch"], cfg["frames"]

    def write(name, tensors, seed_used):
        path = out_dir / f"{name}.safetensors"
        # One metadata key: safetensors writes several in hash order, which would make
        # regenerated files differ byte-wise.
        save_file(tensors, path,
                  metadata={"generator": f"scripts/reference/quantizers.py, seed {seed_used}"})
        print(f"{path}: {os.path.getsize(path)} bytes")

    torch.manual_seed(1)
    write("encodec_rvq", encodec_rvq(cfg, b, t, None), 1)
    torch.manual_seed(2)
    write("encodec_proj_rvq", encodec_rvq(cfg, b, t, cfg["encodec"]["codebook_dim"]), 2)
    torch.manual_seed(3)
    write("dac_rvq", dac_rvq(cfg, b, t), 3)
    torch.manual_seed(4)
    write("moshi_rvq", moshi_rvq(cfg, b, t), 4)
    f = cfg["fsq"]
    torch.manual_seed(5)
    write("fsq_proj", fsq(f["levels"], f["dim"], b, t), 5)
    torch.manual_seed(6)
    write("fsq", fsq(f["plain_levels"], len(f["plain_levels"]), b, t), 6)
    lq = cfg["lfq"]
    torch.manual_seed(7)
    write("lfq_proj", lfq(lq["bits"], lq["dim"], 1.0, b, t), 7)
    torch.manual_seed(8)
    write("lfq", lfq(lq["bits"], lq["bits"], lq["scale"], b, t), 8)


if __name__ == "__main__":
    main()
