#!/usr/bin/env python3
"""The attention benchmark's table: bench_attention's timings (<dir>/ours_*.json) beside the peers' that
attention_peers.py measured (<dir>/peers.json), as markdown.

Fractions of dense and ratios to the peers are rounded down, so that a value under a target line never prints
on it (1.4996x reads 1.499x, 89.96% reads 89.9%). "alone" divides a row's effective TFLOP/s by its dense row's
at the faster of the dense row's two timings (before the shape's rows and again after them), so that the clock's
drift over a shape cannot lift it; "in turn" is bench_attention's fraction with the dense call timed in turn.

Usage: attention_table.py DIR   (writes DIR/attention_table.md from the JSON there and prints it)
"""
import glob
import json
import math
import os
import sys


def load_ours(directory):
    """(ours, order, kernels): ours[(shape, pattern)][kernel] = bench_attention's record, rows in file order."""
    ours, order = {}, []
    for path in sorted(glob.glob(os.path.join(directory, "ours_*.json"))):
        for r in json.load(open(path)):
            key = (r["shape"], r["pattern"])
            if key not in ours:
                ours[key] = {}
                order.append(key)
            ours[key][r["kernel"]] = r
    return ours, order, sorted({k for v in ours.values() for k in v})


def down(x, digits):
    """x rounded down to `digits` decimals, as text (the 1e-9 keeps 1.15 from reading 1.149)."""
    scale = 10 ** digits
    return f"{math.floor(x * scale + 1e-9) / scale:.{digits}f}"


def table_text(ours, order, kernels, peers):
    """The markdown table of the rows in `order`, then each shape's dense drift lines."""
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
    for shape, pattern in order:
        rec = ours[(shape, pattern)]
        peer = peers.get(f"{shape}/{pattern}", {})
        row = [shape, pattern, fmt(next(iter(rec.values()))["density"], 3)]
        for kern in kernels:
            r = rec.get(kern)
            sparse = r is not None and pattern != "dense"
            dense = ours.get((shape, "dense"), {}).get(kern)
            alone = None
            if sparse and dense:
                faster_ms = min(dense["ms"], dense.get("ms_again") or dense["ms"])
                alone = r["effective_tflops"] / (dense["effective_tflops"] * dense["ms"] / faster_ms)
            of_dense = r.get("of_dense") if sparse else None
            row += [fmt(r and r["ms"], 3), fmt(r and r["dense_tflops"], 0), fmt(r and r["effective_tflops"], 0),
                    down(100 * alone, 1) + "%" if alone else "-", down(100 * of_dense, 1) + "%" if of_dense else "-"]
        cudnn_ms, flex_ms = peer.get("cudnn_ms"), peer.get("flex_ms")
        row += [fmt(cudnn_ms, 3), fmt(flex_ms, 3) if flex_ms else (peer.get("flex_note") or "-")]
        for kern in kernels:
            ms = rec[kern]["ms"] if kern in rec else None
            row += [down(cudnn_ms / ms, 3) + "x" if cudnn_ms and ms else "-",
                    down(flex_ms / ms, 3) + "x" if flex_ms and ms else "-"]
        lines.append("| " + " | ".join(row) + " |")
    drift = [f"{shape} {kern}: dense again after the rows {r['ms_again']:.3f} ms, {100 * r['ms_again'] / r['ms']:.1f}%"
             for (shape, pattern), rec in ours.items() if pattern == "dense"
             for kern, r in rec.items() if r.get("ms_again")]
    if drift:
        drift.insert(0, "(\"alone\": a row's effective TFLOP/s over its dense row's at the faster of its two timings)")
    return "\n".join(lines + ([""] + drift if drift else []))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: attention_table.py DIR")
    directory = sys.argv[1]
    ours, order, kernels = load_ours(directory)
    if not order:
        sys.exit(f"attention_table: no ours_*.json in {directory}")
    peers_path = os.path.join(directory, "peers.json")
    peers = json.load(open(peers_path)) if os.path.exists(peers_path) else {}
    table = table_text(ours, order, kernels, peers)
    open(os.path.join(directory, "attention_table.md"), "w").write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
