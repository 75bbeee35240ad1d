#!/usr/bin/env python3
"""bench/attention_table.py: the benchmark table's fractions and ratios against hand-computed values, rounded
down so that a value under a target line never prints on it; the drift lines; missing peers; regeneration from
a directory's JSON."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
sys.path.insert(0, BENCH)
import attention_table  # noqa: E402


def record(pattern, density, ms, eff, of_dense=1.0, again=None):
    r = {"shape": "cog", "pattern": pattern, "kernel": "sm90", "tokens": 100, "heads": 2, "head_dim": 64,
         "density": density, "ms": ms, "dense_tflops": eff / density, "effective_tflops": eff, "of_dense": of_dense}
    if again is not None:
        r["ms_again"] = again
    return r


def cells(table, pattern):
    for line in table.splitlines():
        parts = [c.strip() for c in line.strip("|").split("|")]
        if len(parts) > 1 and parts[1] == pattern:
            return parts
    raise AssertionError(f"no row {pattern} in\n{table}")


class AttentionTableTest(unittest.TestCase):
    def setUp(self):
        # dense: 10 ms first, 9.5 ms again after the rows -> "alone" divides by 500 * 10 / 9.5 = 526.3 TFLOP/s
        self.records = [record("dense", 1.0, 10.0, 500.0, again=9.5),
                        record("tile:1", 0.2, 2.2, 473.6, of_dense=0.89996),
                        record("spatial:0.1", 0.1, 1.0, 480.0, of_dense=0.93)]
        self.peers = {"cog/dense": {"cudnn_ms": 12.0, "flex_ms": 14.9962},
                      "cog/tile:1": {"cudnn_ms": 12.0, "flex_ms": 3.29912},
                      "cog/spatial:0.1": {"cudnn_ms": 12.0, "flex_ms": None, "flex_note": "OOM"}}
        ours, order = {}, []
        for r in self.records:
            ours[(r["shape"], r["pattern"])] = {"sm90": r}
            order.append((r["shape"], r["pattern"]))
        self.table = attention_table.table_text(ours, order, ["sm90"], self.peers)

    def test_alone_divides_by_the_faster_dense_timing(self):
        # 473.6 / (500 * 10 / 9.5) = 0.899840 -> 89.9% (rounded to nearest it would read 90.0%)
        self.assertEqual(cells(self.table, "tile:1")[6], "89.9%")
        # 480 / 526.315... = 0.912 -> 91.2%
        self.assertEqual(cells(self.table, "spatial:0.1")[6], "91.2%")
        self.assertEqual(cells(self.table, "dense")[6], "-")

    def test_in_turn_rounds_down(self):
        self.assertEqual(cells(self.table, "tile:1")[7], "89.9%")  # 89.996%
        self.assertEqual(cells(self.table, "spatial:0.1")[7], "93.0%")

    def test_peer_ratios_round_down(self):
        row = cells(self.table, "tile:1")
        self.assertEqual(row[10], "5.454x")  # 12 / 2.2 = 5.4545
        self.assertEqual(row[11], "1.499x")  # 3.29912 / 2.2 = 1.49960
        self.assertEqual(cells(self.table, "dense")[11], "1.499x")  # 14.9962 / 10
        self.assertEqual(cells(self.table, "spatial:0.1")[9], "OOM")
        self.assertEqual(cells(self.table, "spatial:0.1")[11], "-")

    def test_drift_lines(self):
        self.assertIn("cog sm90: dense again after the rows 9.500 ms, 95.0%", self.table)

    def test_down(self):
        self.assertEqual(attention_table.down(1.15, 2), "1.15")
        self.assertEqual(attention_table.down(1.4999, 3), "1.499")
        self.assertEqual(attention_table.down(90.0, 1), "90.0")

    def test_regenerates_from_a_directory(self):
        with tempfile.TemporaryDirectory() as d:
            json.dump(self.records, open(os.path.join(d, "ours_sm90.json"), "w"))
            json.dump(self.peers, open(os.path.join(d, "peers.json"), "w"))
            out = subprocess.run([sys.executable, os.path.join(BENCH, "attention_table.py"), d], capture_output=True,
                                 text=True, check=True).stdout
            self.assertEqual(out.strip(), self.table)
            self.assertEqual(open(os.path.join(d, "attention_table.md")).read().strip(), self.table)
            empty = os.path.join(d, "empty")
            os.mkdir(empty)
            failed = subprocess.run([sys.executable, os.path.join(BENCH, "attention_table.py"), empty],
                                    capture_output=True, text=True)
            self.assertNotEqual(failed.returncode, 0)
            self.assertIn("no ours_*.json", failed.stderr)


if __name__ == "__main__":
    unittest.main()
