#!/usr/bin/env python3
"""Writes the committed conformance fixtures under tests/data/models/{wan,cogvideox,cogvideox15}/.

For each architecture: a tiny random checkpoint (scripts/make_tiny_checkpoint.py) in transformer/,
and reference.safetensors holding fixed random inputs and the output of diffusers' own model on them,
computed in float32 on the CPU. The model is loaded back with from_pretrained, so the reference runs
on exactly the committed weights. CI never runs this; rerun it only to change the fixtures.

    pip install -r scripts/requirements-reference.txt
    python scripts/make_reference_fixtures.py [--out tests/data/models]
    python scripts/make_reference_fixtures.py --out /tmp/gpu-fixtures --head-dim 64   # for the GPU kernels
"""
import argparse
import os
import shutil
import types

import diffusers
import torch
from safetensors.torch import save_file

from make_tiny_checkpoint import make_model, save

VAE_SCALE_FACTOR_SPATIAL = 8  # the pipelines' latent-to-pixel factor, used for CogVideoX's rotary grid


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def wan_case(model_dir: str):
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(1)
    inputs = {
        "hidden_states": torch.randn(2, 4, 3, 6, 8, generator=g),  # [B, C, F, H, W]
        "timestep": torch.tensor([999.0, 333.25]),
        "encoder_hidden_states": torch.randn(2, 5, 24, generator=g),
    }

    def run(m, dtype):
        args = {k: v.to(dtype) if k != "timestep" else v for k, v in inputs.items()}
        with torch.no_grad():
            return m(**args, return_dict=False)[0]

    return model, inputs, run


def cogvideox_rotary(model, latent_height: int, latent_width: int, frames: int):
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline

    pipeline = types.SimpleNamespace(vae_scale_factor_spatial=VAE_SCALE_FACTOR_SPATIAL, transformer=model)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(
        pipeline,
        latent_height * VAE_SCALE_FACTOR_SPATIAL,
        latent_width * VAE_SCALE_FACTOR_SPATIAL,
        frames,
        torch.device("cpu"),
    )


def cogvideox_case(model_dir: str, frames: int = 3):
    from diffusers import CogVideoXTransformer3DModel

    model = CogVideoXTransformer3DModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(2)
    inputs = {
        "hidden_states": torch.randn(2, frames, 4, 6, 8, generator=g),  # [B, F, C, H, W]
        "timestep": torch.tensor([999.0, 421.5]),
        "encoder_hidden_states": torch.randn(2, 7, 40, generator=g),
    }
    rotary = cogvideox_rotary(model, 6, 8, frames)

    def run(m, dtype):
        args = {k: v.to(dtype) if k != "timestep" else v for k, v in inputs.items()}
        emb = tuple(r.to(dtype) for r in rotary)
        with torch.no_grad():
            return m(**args, image_rotary_emb=emb, return_dict=False)[0]

    return model, inputs, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "models"))
    parser.add_argument("--head-dim", type=int, default=16, help="attention_head_dim of both models")
    args = parser.parse_args()
    torch.manual_seed(0)

    # name: (architecture, config overrides, case, shard size). Wan is sharded to exercise the index.
    # cogvideox15 is the CogVideoX 1.5 shape: temporal patches (a Linear patch embedding) and rotary
    # positions that are plain patch indices.
    cases = {
        "wan": ("wan", {}, wan_case, "60KB"),
        "cogvideox": ("cogvideox", {}, cogvideox_case, None),
        "cogvideox15": ("cogvideox", {"patch_size_t": 2, "patch_bias": False}, lambda d: cogvideox_case(d, 4), None),
    }
    for name, (arch, overrides, case, shard) in cases.items():
        folder = os.path.join(args.out, name)
        model_dir = os.path.join(folder, "transformer")
        shutil.rmtree(model_dir, ignore_errors=True)
        save(make_model(arch, seed=0, attention_head_dim=args.head_dim, **overrides), model_dir, "f32", shard)

        model, inputs, run = case(model_dir)
        expected = run(model, torch.float32)
        exact = run(model.double(), torch.float64)
        tensors = {k: v.float().contiguous() for k, v in inputs.items()}
        tensors["expected"] = expected.float().contiguous()
        metadata = {"diffusers": diffusers.__version__, "torch": torch.__version__, "dtype": "float32"}
        save_file(tensors, os.path.join(folder, "reference.safetensors"), metadata=metadata)
        print(f"{name}: output {tuple(expected.shape)}, float32 reference vs float64: "
              f"relative L2 {relative_l2(expected, exact):.2e}")


if __name__ == "__main__":
    main()
