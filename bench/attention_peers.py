#!/usr/bin/env python3
"""Times cuDNN SDPA (dense) and FlexAttention (the same block masks) on the shapes and masks that
bench_attention timed, and prints one table with our times and the ratios.

Reads <dir>/ours_*.json and <dir>/<shape>.masks.safetensors written by bench_attention; writes
<dir>/peers.json and <dir>/attention_table.md. Runs on the GPU machine (PyTorch with cuDNN, Triton).
Usage: attention_peers.py --dir DIR [--runs 10] [--no-flex]
"""
import argparse
import glob
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, flex_attention

BLOCK = 128


WARMUP_MS = 1000.0  # as bench_attention: calls before timing, so that the GPU clock settles
SETTLE_MS = 5000.0  # as bench_attention: before a shape's first timing (its cuDNN dense call)
SHORT_SHAPE_RUNS = 5  # as bench_attention: 5x the runs where a call takes a few ms


def median_ms(fn, runs, warmup, warmup_ms=WARMUP_MS):
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    for _ in range(min(10000, int(warmup_ms / max(start.elapsed_time(end), 1e-3)))):
        fn()
    torch.cuda.synchronize()
    pairs = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in pairs)
    n = len(times)
    return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])


def block_q_of(pattern):
    """The query block of a row's mask: "spatial:0.15@192" is 192 x 128 (bench_attention --block-q)."""
    return int(pattern.split("@")[1]) if "@" in pattern else BLOCK


def flex_mask(row_offsets, key_blocks, heads, tokens, block_q=BLOCK):
    """A FlexAttention BlockMask with the CSR's key blocks (per head, block_q x 128)."""
    q_blocks = math.ceil(tokens / block_q)
    k_blocks = math.ceil(tokens / BLOCK)
    dev = "cuda"
    offsets = row_offsets.to(dev, torch.int64)
    blocks = key_blocks.to(dev, torch.int64)
    lengths = offsets[1:] - offsets[:-1]
    rows = torch.repeat_interleave(torch.arange(heads * q_blocks, device=dev), lengths)
    position = torch.arange(blocks.numel(), device=dev) - offsets[:-1][rows]
    indices = torch.zeros(heads * q_blocks, k_blocks, dtype=torch.int32, device=dev)
    indices[rows, position] = blocks.to(torch.int32)
    num = lengths.to(torch.int32).view(1, heads, q_blocks)
    indices = indices.view(1, heads, q_blocks, k_blocks)
    size = BLOCK if block_q == BLOCK else (block_q, BLOCK)
    try:
        return BlockMask.from_kv_blocks(num, indices, BLOCK_SIZE=size, seq_lengths=(tokens, tokens),
                                        compute_q_blocks=False)
    except TypeError:  # older signature
        return BlockMask.from_kv_blocks(num, indices, BLOCK_SIZE=size)


def write_table(directory, ours, order, kernels, peers, final=False):
    """Writes peers.json and attention_table.md (rows measured so far); prints the table at the end."""
    json.dump(peers, open(os.path.join(directory, "peers.json"), "w"), indent=1)

    def fmt(x, digits=2):
        return "-" if x is None else f"{x:.{digits}f}"

    head = ["shape", "pattern", "density"]
    for kern in kernels:
        head += [f"{kern} ms", f"{kern} TF/s dense-eq", f"{kern} TF/s eff", f"{kern} eff / dense (alone)",
                 f"{kern} eff / dense (in turn)"]
    head += ["cuDNN dense ms", "Flex ms"]
    for kern in kernels:
        head += [f"{kern} vs cuDNN dense", f"{kern} vs Flex"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key in order:
        shape, pattern = key
        rec = ours[key]
        peer = peers.get(f"{shape}/{pattern}", {})
        row = [shape, pattern, fmt(next(iter(rec.values()))["density"], 3)]
        for kern in kernels:
            r = rec.get(kern)
            of_dense = r and r.get("of_dense")
            # alone: against the faster of the dense row's two timings (first, and again after the rows)
            dense = ours.get((shape, "dense"), {}).get(kern)
            dense_ms = dense and min(dense["ms"], dense.get("ms_again") or dense["ms"])
            alone = (r["effective_tflops"] * dense_ms / dense["ms"] / dense["effective_tflops"]
                     if r and dense and pattern != "dense" else None)
            row += [fmt(r and r["ms"], 3), fmt(r and r["dense_tflops"], 0), fmt(r and r["effective_tflops"], 0),
                    f"{100 * alone:.1f}%" if alone else "-",
                    f"{100 * of_dense:.1f}%" if of_dense and pattern != "dense" else "-"]
        cudnn_ms, flex_ms = peer.get("cudnn_ms"), peer.get("flex_ms")
        row += [fmt(cudnn_ms, 3), fmt(flex_ms, 3) if flex_ms else (peer.get("flex_note") or "-")]
        for kern in kernels:
            ms = rec[kern]["ms"] if kern in rec else None
            # three decimals: a ratio of 1.4996 must not read as the 1.5 line
            row += [f"{cudnn_ms / ms:.3f}x" if cudnn_ms and ms else "-",
                    f"{flex_ms / ms:.3f}x" if flex_ms and ms else "-"]
        lines.append("| " + " | ".join(row) + " |")
    # each shape's dense call timed again after its rows (bench_attention): the clock's drift over the shape
    drift = [f"{shape} {kern}: dense again after the rows {r['ms_again']:.3f} ms, {100 * r['ms_again'] / r['ms']:.1f}%"
             for (shape, pattern), rec in ours.items() if pattern == "dense"
             for kern, r in rec.items() if r.get("ms_again")]
    if drift:
        drift.insert(0, "(\"alone\": a row's effective TFLOP/s over its dense row's at the faster of its two timings)")
    table = "\n".join(lines + ([""] + drift if drift else []))
    open(os.path.join(directory, "attention_table.md"), "w").write(table + "\n")
    if final:
        print("\n" + table)



def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-flex", action="store_true")
    args = parser.parse_args()

    ours = {}  # (shape, pattern) -> {kernel: record}
    order = []
    for path in sorted(glob.glob(os.path.join(args.dir, "ours_*.json"))):
        for r in json.load(open(path)):
            key = (r["shape"], r["pattern"])
            if key not in ours:
                ours[key] = {}
                order.append(key)
            ours[key][r["kernel"]] = r
    if not order:
        sys.exit(f"attention_peers: no ours_*.json in {args.dir}")
    kernels = sorted({k for v in ours.values() for k in v})

    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}",
          flush=True)
    flex = torch.compile(flex_attention, dynamic=False)
    peers = {}
    shapes = []
    for shape, _ in order:
        if shape not in shapes:
            shapes.append(shape)
    for shape in shapes:
        any_record = next(iter(ours[next(k for k in order if k[0] == shape)].values()))
        S, H, D = any_record["tokens"], any_record["heads"], any_record["head_dim"]
        dense_flop = 4.0 * S * S * D * H
        warmup = 1 if dense_flop > 5e13 else 3
        runs = args.runs if dense_flop > 5e13 else SHORT_SHAPE_RUNS * args.runs  # as bench_attention
        gen = torch.Generator(device="cuda").manual_seed(0)
        q, k, v = (torch.randn(1, H, S, D, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
        masks_path = os.path.join(args.dir, f"{shape}.masks.safetensors")
        masks = load_file(masks_path) if os.path.exists(masks_path) else {}

        try:
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                cudnn_ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v), runs, warmup, SETTLE_MS)
        except Exception as e:  # noqa: BLE001 - record, never crash the table
            cudnn_ms = None
            print(f"{shape}: cuDNN SDPA failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
        for sh, pattern in order:
            if sh != shape:
                continue
            entry = {"cudnn_ms": cudnn_ms, "flex_ms": None, "flex_note": ""}
            if not args.no_flex:
                try:
                    block_q = block_q_of(pattern)
                    if pattern == "dense":
                        block_mask = None
                    else:
                        block_mask = flex_mask(masks[f"{pattern}.row_offsets"], masks[f"{pattern}.key_blocks"], H, S,
                                               block_q)
                    # Flex's query tile must divide the mask's query block: 64 rows for 192-row blocks.
                    options = None if block_q % BLOCK == 0 else {"BLOCK_M": math.gcd(block_q, BLOCK)}
                    if options:
                        entry["flex_note"] = f"BLOCK_M {options['BLOCK_M']}"
                    entry["flex_ms"] = median_ms(lambda: flex(q, k, v, block_mask=block_mask, kernel_options=options),
                                                 runs, warmup)
                except torch.cuda.OutOfMemoryError:
                    entry["flex_note"] = "OOM"
                except Exception as e:  # noqa: BLE001
                    entry["flex_note"] = f"{type(e).__name__}"
                    print(f"{shape} {pattern}: Flex failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                torch.cuda.empty_cache()
            peers[f"{shape}/{pattern}"] = entry
            print(f"{shape:10s} {pattern:26s} cuDNN {cudnn_ms} ms  Flex {entry['flex_ms']} ms {entry['flex_note']}",
                  flush=True)
        del q, k, v
        torch.cuda.empty_cache()
        write_table(args.dir, ours, order, kernels, peers)
    write_table(args.dir, ours, order, kernels, peers, final=True)

if __name__ == "__main__":
    main()
