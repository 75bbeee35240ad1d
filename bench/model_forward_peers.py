#!/usr/bin/env python3
"""The diffusers side of the model benchmark (bench/model_forward.cpp), run on the GPU machine.

run: builds diffusers' own model class from a real configuration (from_config, random weights drawn on
the GPU with a fixed seed, cast to bf16), saves it with save_pretrained to DIR/transformer (the
checkpoint bench_model_forward loads, so both sides run the same weights) and loads it back as a
pipeline does (torch_dtype=bf16: the class's _keep_in_fp32_modules in float32), draws fixed random inputs,
and times one forward of the diffusers model in eager PyTorch with its default attention (SDPA): CUDA
events, median of --runs after --warmup. Peak memory is torch.cuda.max_memory_allocated (and
_reserved) over the timed forwards, weights included. One more forward runs under torch.profiler for a
breakdown of GPU time by kernel category. Writes DIR/inputs.safetensors (the inputs, and the diffusers
output as "expected") and DIR/diffusers.json.

table: reads DIR/diffusers.json and DIR/vdit.json (bench_model_forward --json) of each DIR and prints
the comparison as markdown.

    python3 bench/model_forward_peers.py run --model wan --dir /tmp/vdit_models/wan
    build-device/bench/bench_model_forward --model /tmp/vdit_models/wan/transformer \
        --inputs /tmp/vdit_models/wan/inputs.safetensors --json /tmp/vdit_models/wan/vdit.json --breakdown
    python3 bench/model_forward_peers.py table /tmp/vdit_models/wan
"""
import argparse
import json
import os
import statistics
import sys
import time

# The released configurations (diffusers' transformer/config.json of each model).
WAN_T2V_1_3B = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}
COGVIDEOX_5B = {
    "num_attention_heads": 48,
    "attention_head_dim": 64,
    "in_channels": 16,
    "out_channels": 16,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "time_embed_dim": 512,
    "text_embed_dim": 4096,
    "num_layers": 42,
    "dropout": 0.0,
    "attention_bias": True,
    "sample_width": 90,
    "sample_height": 60,
    "sample_frames": 49,
    "patch_size": 2,
    "temporal_compression_ratio": 4,
    "max_text_seq_length": 226,
    "activation_fn": "gelu-approximate",
    "timestep_activation_fn": "silu",
    "norm_elementwise_affine": True,
    "norm_eps": 1e-5,
    "spatial_interpolation_scale": 1.875,
    "temporal_interpolation_scale": 1.0,
    "use_rotary_positional_embeddings": True,
    "use_learned_positional_embeddings": False,
}
# name: (class, config, latents shape in the model's layout, text tokens, video tokens)
MODELS = {
    "wan": ("WanTransformer3DModel", WAN_T2V_1_3B, (1, 16, 21, 60, 104), 512, 21 * 30 * 52),  # 480p, 81 frames
    "cogvideox": ("CogVideoXTransformer3DModel", COGVIDEOX_5B, (1, 13, 16, 60, 90), 226, 13 * 30 * 45),  # 720x480, 49
}
VAE_SCALE_FACTOR_SPATIAL = 8


def kernel_category(name: str) -> str:
    n = name.lower()
    if any(k in n for k in ("flash", "fmha", "attention", "cudnn", "sdpa", "mha")):
        return "attention (SDPA)"
    if any(k in n for k in ("gemm", "cutlass", "xmma", "nvjet", "sm90_", "sm80_", "cublas", "matmul")):
        return "GEMM"
    if any(k in n for k in ("norm", "rms")):
        return "norms"
    if any(k in n for k in ("copy", "cat", "transpose", "permute", "index")):
        return "copies / layout"
    return "element-wise / other"


def profile_breakdown(forward):
    """GPU time of one forward by kernel category, and the top kernels, from torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        forward()
        torch.cuda.synchronize()
    totals, kernels = {}, {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = event.time_range.elapsed_us()
        kernels[event.name] = kernels.get(event.name, 0.0) + us
        cat = kernel_category(event.name)
        totals[cat] = totals.get(cat, 0.0) + us
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:12]
    return {k: v / 1000.0 for k, v in totals.items()}, [(k[:110], v / 1000.0) for k, v in top]


def run(args) -> None:
    import torch
    from safetensors.torch import save_file

    import diffusers

    cls_name, config, latents_shape, text_tokens, video_tokens = MODELS[args.model]
    cls = getattr(diffusers, cls_name)
    os.makedirs(args.dir, exist_ok=True)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    start = time.time()
    torch.manual_seed(0)
    with device:
        model = cls.from_config(config)
    model = model.to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model_dir = os.path.join(args.dir, "transformer")
    model.save_pretrained(model_dir, safe_serialization=True)
    del model
    # Loaded back as a pipeline loads it: bf16, but for the modules the class keeps in float32.
    model = cls.from_pretrained(model_dir, torch_dtype=torch.bfloat16).to(device).eval()
    kept = sorted({str(p.dtype) for p in model.parameters()})
    print(f"{args.model}: {cls_name}, {params / 1e9:.2f}B parameters, random bf16 weights saved and loaded in "
          f"{time.time() - start:.1f} s (parameter dtypes {kept})", flush=True)

    g = torch.Generator(device=device).manual_seed(1)
    text_dim = config.get("text_dim", config.get("text_embed_dim"))
    inputs = {
        "hidden_states": torch.randn(latents_shape, generator=g, device=device).to(torch.bfloat16),
        "timestep": torch.tensor([500.0], device=device),
        "encoder_hidden_states": torch.randn((1, text_tokens, text_dim), generator=g, device=device).to(torch.bfloat16),
    }
    extra = {}
    if args.model == "cogvideox":
        import types

        from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline

        frames, height, width = latents_shape[1], latents_shape[3], latents_shape[4]
        pipeline = types.SimpleNamespace(vae_scale_factor_spatial=VAE_SCALE_FACTOR_SPATIAL, transformer=model)
        extra["image_rotary_emb"] = CogVideoXPipeline._prepare_rotary_positional_embeddings(
            pipeline, height * VAE_SCALE_FACTOR_SPATIAL, width * VAE_SCALE_FACTOR_SPATIAL, frames, device)

    def forward():
        with torch.no_grad():
            return model(**inputs, **extra, return_dict=False)[0]

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = []
    out = None
    for i in range(args.warmup + args.runs):
        out = None
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            out = forward()
            end.record()
            end.synchronize()
            ms = begin.elapsed_time(end)
        else:  # --device cpu: only to try the script without a GPU
            t0 = time.perf_counter()
            out = forward()
            ms = 1000 * (time.perf_counter() - t0)
        if i >= args.warmup:
            times.append(ms)
    allocated, reserved = (torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()) if cuda else (0, 0)
    free, total = torch.cuda.mem_get_info() if cuda else (0, 0)
    ms = statistics.median(times)
    finite = bool(torch.isfinite(out).all())
    print(f"  diffusers eager (SDPA) {ms:9.2f} ms/forward (median of {args.runs}; min {min(times):.2f}, max "
          f"{max(times):.2f})  peak allocated {allocated / 2**30:.2f} GiB, reserved {reserved / 2**30:.2f} GiB, "
          f"device in use {(total - free) / 2**30:.2f} GiB  finite {finite}", flush=True)

    tensors = {k: v.contiguous().cpu() for k, v in inputs.items()}
    tensors["expected"] = out.contiguous().cpu()
    save_file(tensors, os.path.join(args.dir, "inputs.safetensors"),
              metadata={"diffusers": diffusers.__version__, "torch": torch.__version__})
    report = {
        "label": args.model, "class": cls_name, "parameters": params,
        "gpu": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "diffusers": diffusers.__version__,
        "latents": list(latents_shape), "text_tokens": text_tokens, "video_tokens": video_tokens,
        "ms": ms, "times_ms": times, "peak_allocated_bytes": allocated, "peak_reserved_bytes": reserved,
        "device_in_use_bytes": total - free, "finite": finite,
    }
    if args.profile and cuda:
        try:
            totals, top = profile_breakdown(forward)
            report["breakdown_ms"], report["top_kernels_ms"] = totals, top
            print(f"  diffusers GPU time by kernel category (torch.profiler, one forward): "
                  f"{sum(totals.values()):.2f} ms in all")
            for k, v in sorted(totals.items(), key=lambda kv: -kv[1]):
                print(f"    {k:28s} {v:9.2f} ms")
            for k, v in top:
                print(f"      {v:9.2f} ms  {k}")
        except Exception as e:  # the profiler is a nicety; the timing above stands without it
            print(f"  torch.profiler failed: {e!r}")
    with open(os.path.join(args.dir, "diffusers.json"), "w") as f:
        json.dump(report, f, indent=2)


def table(args) -> None:
    rows, breakdowns = [], []
    for d in args.dirs:
        try:
            with open(os.path.join(d, "diffusers.json")) as f:
                ref = json.load(f)
            with open(os.path.join(d, "vdit.json")) as f:
                ours = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{d}: no results ({e})")
            continue
        tokens = ref["video_tokens"] + (ref["text_tokens"] if ref["class"].startswith("CogVideoX") else 0)
        name = f"{ref['label']} ({ref['class']}, {tokens} tokens)"
        rows.append(f"| {name} | diffusers eager, SDPA | 1.000 | {ref['ms']:.1f} | 1.00x | "
                    f"{ref['peak_allocated_bytes'] / 2**30:.2f} | {ref['peak_reserved_bytes'] / 2**30:.2f} | - |")
        for policy, r in ours.get("policies", {}).items():
            err = r["relative_l2_vs_diffusers"]
            rows.append(f"| {name} | vdit {policy} | {r['density']:.3f} | {r['ms']:.1f} | {ref['ms'] / r['ms']:.2f}x | "
                        f"{r['peak_used_bytes'] / 2**30:.2f} | {r['peak_reserved_bytes'] / 2**30:.2f} | "
                        f"{err:.2e} |")
            if "breakdown_ms" in r:
                total = r["breakdown_total_ms"]
                calls = r.get("breakdown_calls", {})
                ordered = sorted(r["breakdown_ms"].items(), key=lambda kv: -kv[1])
                lines = [f"| {k} | {v:.1f} | {100 * v / total:.1f}% | {calls.get(k, '')} |" for k, v in ordered]
                breakdowns.append((f"{ref['label']}, vdit {policy}: per-op times {total:.1f} ms "
                                   f"(forward measured {r['ms']:.1f} ms)", lines))
        if "breakdown_ms" in ref:
            total = sum(ref["breakdown_ms"].values())
            lines = [f"| {k} | {v:.1f} | {100 * v / total:.1f}% | - |"
                     for k, v in sorted(ref["breakdown_ms"].items(), key=lambda kv: -kv[1])]
            breakdowns.append((f"{ref['label']}, diffusers: GPU kernel time {total:.1f} ms (torch.profiler)", lines))
    for title, lines in breakdowns:
        print(f"\n{title}\n\n| op category | ms | share | calls |\n| --- | --- | --- | --- |")
        print("\n".join(lines))
    print("\n| model | implementation | attention density | ms / forward | speed-up vs diffusers | peak allocated GiB "
          "| peak reserved GiB | rel. L2 vs diffusers output |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", choices=sorted(MODELS), required=True)
    r.add_argument("--dir", required=True)
    r.add_argument("--runs", type=int, default=5)
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--no-profile", dest="profile", action="store_false")
    r.add_argument("--device", default="cuda")
    t = sub.add_parser("table")
    t.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
