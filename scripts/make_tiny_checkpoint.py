#!/usr/bin/env python3
"""Writes tiny random checkpoints in the real diffusers layout for the architectures vdit runs.

Each is made by diffusers' own model class with a tiny config and saved with save_pretrained, so the
folder (transformer/config.json with the real _class_name and keys, safetensors weights, sharded with
an index when asked) and every tensor name are exactly what a real checkpoint has. All parameters are
re-drawn at random (norm weights and biases too), so that no term of the forward pass is trivial.

    pip install -r scripts/requirements-reference.txt
    python scripts/make_tiny_checkpoint.py --out /tmp/tiny            # both, float32
    python scripts/make_tiny_checkpoint.py --out /tmp/tiny --arch wan --dtype bf16 --head-dim 64
"""
import argparse
import os

import torch

# Tiny configs: 2 layers, 2 heads x head dim 16 (dim 32); every other width differs from dim so that
# a transposed or misrouted weight shows up as a shape error.
WAN_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    text_dim=24,
    freq_dim=256,
    ffn_dim=64,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)

# The CogVideoX-5B shape of config (rotary positions, no learned positional embedding, patch_size_t
# None), scaled down. sample_height/width are latent sizes that differ from the test input, so the
# rotary grid is cropped to fractional positions as in the pipeline.
COGVIDEOX_CONFIG = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    flip_sin_to_cos=True,
    freq_shift=0,
    time_embed_dim=24,
    text_embed_dim=40,
    num_layers=2,
    attention_bias=True,
    sample_width=12,
    sample_height=8,
    sample_frames=49,
    patch_size=2,
    patch_size_t=None,
    temporal_compression_ratio=4,
    max_text_seq_length=226,
    activation_fn="gelu-approximate",
    timestep_activation_fn="silu",
    norm_elementwise_affine=True,
    norm_eps=1e-5,
    spatial_interpolation_scale=1.875,
    temporal_interpolation_scale=1.0,
    use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=False,
)

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Matrices ~ N(0, 1/fan_in), 1-D norm weights ~ 1 + N(0, 0.1^2), everything else ~ N(0, 0.1^2)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            if p.ndim >= 2 and "scale_shift_table" not in name:
                value = noise / (p[0].numel() ** 0.5)
            elif name.endswith("weight") and "norm" in name:
                value = 1.0 + 0.1 * noise
            else:
                value = 0.1 * noise
            p.copy_(value.to(p.dtype))


def make_model(arch: str, seed: int, **overrides) -> torch.nn.Module:
    """The tiny model of `arch` ("wan" or "cogvideox"); `overrides` replace config keys (e.g.
    attention_head_dim=64 for the GPU attention kernels, which take head dims 64, 96 and 128)."""
    from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel

    if arch == "wan":
        model = WanTransformer3DModel(**{**WAN_CONFIG, **overrides})
    else:
        model = CogVideoXTransformer3DModel(**{**COGVIDEOX_CONFIG, **overrides})
    randomize(model, seed)
    return model.eval()


def save(model: torch.nn.Module, folder: str, dtype: str = "f32", max_shard_size: str | None = None) -> None:
    """Saves as a diffusers transformer folder (config.json + safetensors, sharded past max_shard_size)."""
    kwargs = {"safe_serialization": True}
    if max_shard_size:
        kwargs["max_shard_size"] = max_shard_size
    model.to(DTYPES[dtype]).save_pretrained(folder, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write <arch>/transformer/ into")
    parser.add_argument("--arch", choices=["wan", "cogvideox", "all"], default="all")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-shard-size", default=None, help='e.g. "100KB" to write shards and an index')
    parser.add_argument("--head-dim", type=int, default=16, help="attention_head_dim (64, 96, 128 for the GPU)")
    args = parser.parse_args()
    for arch in ["wan", "cogvideox"] if args.arch == "all" else [args.arch]:
        folder = os.path.join(args.out, arch, "transformer")
        save(make_model(arch, args.seed, attention_head_dim=args.head_dim), folder, args.dtype, args.max_shard_size)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
