"""Full-size Mimi check: the real config of kyutai/mimi with random weights, run through
transformers' MimiModel, for codec/tests/mimi_full_check.rs (ignored by default) to compare
against.

Writes into OUT (default /tmp/mimi_full, never committed):
  mimi/config.json, mimi/model.safetensors   the hub layout, random weights
  mimi/io.safetensors                        inputs and reference outputs, as in
                                             mimi_fixtures.py (few = 8 codebooks)
and prints the reference's encode/decode times on this machine. The default clip is 12 s, longer
than the transformers' 250-frame (10 s) window.

Codebooks: in 256 dimensions, codebooks drawn at random from residuals (as the tiny fixtures do)
quantize so poorly that the residual never shrinks and every later stage picks among near-equal
distances; the reference then changes its own codes when a latent moves by 1e-6 (encoding a
prefix of a clip changes about half the codes of the later codebooks). So here each stage's
codebook holds the residual frames of the test clips themselves, plus noise at 0.8 times their
scale: every stage has a clear nearest entry and the residual shrinks by 0.8 per stage, as in a
trained model.

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/mimi_full_check.py [OUT] [SECONDS]
then: TESSERA_MIMI_FULL=OUT cargo test --release -p tessera-codec --test mimi_full_check \
        -- --ignored --nocapture
"""
import os
import sys
import time

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mimi_fixtures import build, reference_outputs, save, test_signal  # noqa: E402

SHRINK = 0.8


def fit_rvq_to(rvq, latents, gen):
    """Stage codebooks from the given latents' own residual frames (see the module doc)."""
    residual = latents if rvq.input_proj is None else rvq.input_proj(latents)
    residual = residual.transpose(1, 2).reshape(-1, residual.shape[1])
    for layer in rvq.layers:
        cb = layer.codebook
        k = cb.embed_sum.shape[0]
        n = residual.shape[0]
        assert n <= k
        scale = residual.pow(2).mean().sqrt()
        embed = residual[torch.randint(0, n, (k,), generator=gen)]
        embed = embed + scale * torch.randn(embed.shape, generator=gen)
        embed[:n] = residual + SHRINK * scale * torch.randn(residual.shape, generator=gen)
        usage = torch.empty(k).uniform_(0.5, 2.0, generator=gen)
        cb.cluster_usage.copy_(usage)
        cb.embed_sum.copy_(embed * usage[:, None])
        cb._embed = None
        d = torch.cdist(residual[None], cb.embed[None])[0]
        residual = residual - cb.embed[d.argmin(1)]


# kyutai/mimi's config.json (generic keys left out).
CONFIG = dict(
    attention_dropout=0.0, audio_channels=1, codebook_dim=256, codebook_size=2048, compress=2,
    dilation_growth_rate=2, frame_rate=12.5, head_dim=64, hidden_act="gelu", hidden_size=512,
    initializer_range=0.02, intermediate_size=2048, kernel_size=7, last_kernel_size=3,
    layer_scale_initial_scale=0.01, max_position_embeddings=8000, norm_eps=1e-05,
    num_attention_heads=8, num_filters=64, num_hidden_layers=8, num_key_value_heads=8,
    num_residual_layers=1, num_semantic_quantizers=1, pad_mode="constant",
    residual_kernel_size=3, rope_theta=10000.0, sampling_rate=24000, sliding_window=250,
    trim_right_ratio=1.0, upsample_groups=512, upsampling_ratios=[8, 6, 5, 4], use_cache=False,
    use_causal_conv=True, use_conv_shortcut=False, vector_quantization_hidden_dimension=256,
)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/mimi_full"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 12.0
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    model, gen = build(CONFIG, 400)
    sr = CONFIG["sampling_rate"]
    lengths = [int(seconds * sr), int(seconds * sr * 0.7) + 123]
    clips = [test_signal(n, sr, gen) for n in lengths]
    with torch.inference_mode():
        latents = torch.cat([model.encoder(c).latents for c in clips], dim=2)
    with torch.no_grad():
        fit_rvq_to(model.quantizer.semantic_residual_vector_quantizer, latents, gen)
        fit_rvq_to(model.quantizer.acoustic_residual_vector_quantizer, latents, gen)
    out_dir = os.path.join(out, "mimi")
    model = save(model, out_dir, hub_config=True)
    with torch.inference_mode():
        t0 = time.perf_counter()
        codes = model.encode(clips[0], num_quantizers=8).audio_codes
        t1 = time.perf_counter()
        model.decode(codes)
        t2 = time.perf_counter()
    print(
        f"mimi: reference on {torch.get_num_threads()} threads, {lengths[0] / sr:.1f} s of audio, "
        f"8 codebooks: encode {t1 - t0:.2f} s ({lengths[0] / sr / (t1 - t0):.1f}x real time), "
        f"decode {t2 - t1:.2f} s ({lengths[0] / sr / (t2 - t1):.1f}x)",
        flush=True,
    )
    save_file(reference_outputs(model, clips, 8), os.path.join(out_dir, "io.safetensors"))


if __name__ == "__main__":
    main()
