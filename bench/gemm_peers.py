"""PyTorch's GEMMs at bench_gemm's shapes (bench/gemm.cpp): F.linear with bias (cuBLAS/cuBLASLt, as
diffusers calls it), and for :gelu shapes also F.linear then F.gelu(tanh) (diffusers) and
torch._addmm_activation (the fused GELU epilogue). bf16, CUDA events, median of --runs after
--warmup; the GPU kernel each call ran (torch.profiler), so the tile configurations can be compared.

Usage: python3 bench/gemm_peers.py [--shapes M:K:N[:gelu][:nobias],...] [--runs 20] [--warmup 3]
"""
import argparse

import torch
import torch.nn.functional as F

DEFAULT = ("32760:1536:1536,32760:1536:8960:gelu,32760:8960:1536,"
           "17776:3072:3072,17776:3072:12288:gelu,17776:12288:3072")


def timed(fn, runs, warmup):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(warmup + runs):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def kernels(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return "; ".join(e.key[:70] for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=DEFAULT)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    g = torch.Generator(device="cuda").manual_seed(0)
    for item in args.shapes.split(","):
        parts = item.split(":")
        m, k, n = (int(v) for v in parts[:3])
        gelu, bias = "gelu" in parts[3:], "nobias" not in parts[3:]
        x = torch.rand(m, k, device="cuda", generator=g, dtype=torch.bfloat16) * 2 - 1
        w = (torch.rand(n, k, device="cuda", generator=g, dtype=torch.bfloat16) * 2 - 1) / k ** 0.5
        b = torch.rand(n, device="cuda", generator=g, dtype=torch.bfloat16) if bias else None
        flops = 2.0 * m * k * n
        calls = {"F.linear": lambda: F.linear(x, w, b)}
        if gelu:
            calls["F.linear + F.gelu(tanh)"] = lambda: F.gelu(F.linear(x, w, b), approximate="tanh")
            if bias:
                calls["_addmm_activation(gelu)"] = lambda: torch._addmm_activation(b, x, w.t(), use_gelu=True)
        for name, fn in calls.items():
            ms = timed(fn, args.runs, args.warmup)
            print(f"{item:26s} {name:26s} {ms:8.3f} ms  {flops / ms / 1e9:6.1f} TFLOP/s  [{kernels(fn)}]")


if __name__ == "__main__":
    main()
