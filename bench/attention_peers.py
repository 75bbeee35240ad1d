#!/usr/bin/env python3
"""Times cuDNN SDPA (dense) and FlexAttention (the same block masks) on the shapes and masks that
bench_attention timed, and prints one table with our times and the ratios.

Reads <dir>/ours_*.json and <dir>/<shape>.masks.safetensors written by bench_attention; writes
<dir>/peers.json and <dir>/attention_table.md (attention_table.py). Runs on the GPU machine (PyTorch with
cuDNN, Triton).
Usage: attention_peers.py --dir DIR [--runs 10] [--no-flex]
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from attention_table import load_ours, table_text  # (beside this script)

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
    table = table_text(ours, order, kernels, peers)
    open(os.path.join(directory, "attention_table.md"), "w").write(table + "\n")
    if final:
        print("\n" + table)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-flex", action="store_true")
    args = parser.parse_args()

    ours, order, kernels = load_ours(args.dir)
    if not order:
        sys.exit(f"attention_peers: no ours_*.json in {args.dir}")

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
