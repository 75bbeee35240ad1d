#!/usr/bin/env bash
# Run ON THE DEVICE (carry .deps), in one call: builds bench_gemm and times vdit's linear at the
# model benchmark's GEMM shapes, then PyTorch's (bench/gemm_peers.py) on the same shapes, in the
# same call. Env: SHAPES (bench_gemm's --shapes; default: its own), RUNS (default 20).
# Files under $OUT: build.log gemm.log peers.log
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$PWD/gemm-logs}"
mkdir -p "$out"
source scripts/device/lib.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
start=$SECONDS
build_device_targets "$out/build.log" bench_gemm || exit 1
echo "build: $((SECONDS - start)) s"
shapes=()
[ -n "${SHAPES:-}" ] && shapes=(--shapes "$SHAPES")
echo "vdit linear (cuBLASLt):"
build-device/bench/bench_gemm "${shapes[@]}" --runs "${RUNS:-20}" 2>&1 | tee "$out/gemm.log"
echo "PyTorch:"
python3 bench/gemm_peers.py "${shapes[@]}" --runs "${RUNS:-20}" 2>&1 | tee "$out/peers.log"
