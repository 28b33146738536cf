"""Fixtures for tessera-core's weight loading (core/tests/weights_*.rs).

Writes small checkpoints in the layouts Hugging Face repositories use, saved by torch itself, and
the weights torch computes from them, so the Rust loader is checked against torch's own
weight-norm folding and pickle format.

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/weights.py
"""
import json
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "core", "tests", "fixtures", "weights")
torch.manual_seed(0)


class Net(torch.nn.Module):
    def __init__(self, wn):
        super().__init__()
        self.conv = wn(torch.nn.Conv1d(3, 5, 7))
        self.up = wn(torch.nn.ConvTranspose1d(5, 4, 4, stride=2))
        # weight_norm over dim 1 (the output channels of a transposed conv).
        self.up1 = wn(torch.nn.ConvTranspose1d(4, 6, 3), dim=1)
        self.lin = torch.nn.Linear(6, 2)


def folded(net):
    with torch.no_grad():
        # The old weight_norm API recomputes `.weight` in a forward pre-hook only.
        net.conv(torch.zeros(1, 3, 7))
        net.up(torch.zeros(1, 5, 3))
        net.up1(torch.zeros(1, 4, 3))
        return {
            "conv.weight": net.conv.weight.detach().clone(),
            "conv.bias": net.conv.bias.detach().clone(),
            "up.weight": net.up.weight.detach().clone(),
            "up.bias": net.up.bias.detach().clone(),
            "up1.weight": net.up1.weight.detach().clone(),
            "up1.bias": net.up1.bias.detach().clone(),
            "lin.weight": net.lin.weight.detach().clone(),
            "lin.bias": net.lin.bias.detach().clone(),
        }


def randomise(net):
    # weight_norm initialises g = ||v||, which would make folding a no-op; break that.
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p))


def save_dir(name, state, fmt, wrap=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "fixture", "hidden": 6}, f)
    state = {k: v.contiguous() for k, v in state.items()}
    if fmt == "bin":
        torch.save(state if wrap is None else {wrap: state, "epoch": 3}, os.path.join(d, "pytorch_model.bin"))
    else:
        save_file(state, os.path.join(d, "model.safetensors"))
    return d


# Old API (weight_g / weight_v), as the encodec and dac packages save, in a pickle.
old = Net(torch.nn.utils.weight_norm)
randomise(old)
save_dir("weight_norm_old_bin", old.state_dict(), "bin")
save_file({k: v.contiguous() for k, v in folded(old).items()}, os.path.join(OUT, "weight_norm_old_bin", "expected.safetensors"))

# New parametrization API (original0 / original1), as snac saves, in safetensors.
new = Net(torch.nn.utils.parametrizations.weight_norm)
randomise(new)
save_dir("weight_norm_param_st", new.state_dict(), "st")
save_file({k: v.contiguous() for k, v in folded(new).items()}, os.path.join(OUT, "weight_norm_param_st", "expected.safetensors"))

# A pickle whose state dict sits under "state_dict" (Lightning-style), with a model. prefix.
plain = {"model." + k: v for k, v in folded(old).items()}
save_dir("wrapped_bin", plain, "bin", wrap="state_dict")

# A sharded safetensors checkpoint with an index, in bf16.
d = os.path.join(OUT, "sharded")
os.makedirs(d, exist_ok=True)
with open(os.path.join(d, "config.json"), "w") as f:
    json.dump({"model_type": "fixture"}, f)
tensors = {f"layers.{i}.weight": torch.randn(4, 3).to(torch.bfloat16) for i in range(4)}
shard_of = {}
for i, (k, v) in enumerate(sorted(tensors.items())):
    shard = f"model-0000{1 + i // 2}-of-00002.safetensors"
    shard_of[k] = shard
for shard in sorted(set(shard_of.values())):
    save_file({k: v for k, v in tensors.items() if shard_of[k] == shard}, os.path.join(d, shard))
with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": 96}, "weight_map": shard_of}, f, indent=1)
save_file({k: v.float() for k, v in tensors.items()}, os.path.join(d, "expected_f32.safetensors"))
print("wrote", OUT)
