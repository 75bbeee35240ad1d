#!/usr/bin/env bash
# Run ON THE DEVICE (carry .deps), in one call: the SM clock and power while the sm_90a flash kernel
# runs one row of FlashSm90.Timing at a time (built by flash_sm90.sh), sampled by nvidia-smi every
# 20 ms; the mean over the samples above 300 W (the GPU under load) beside the row's time.
# Env: SHAPE (default CogVideoX; a FlashSm90.Timing shape name), PATTERNS (default
# "dense spatial:0.15 temporal:0.15"), ROUNDS (default 2), CALLS (timed calls a row: dense 400,
# others 2000 by default, a few seconds each). Files under $OUT: build.txt smi_N.csv
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/clocks}"
mkdir -p "$out"
shape="${SHAPE:-CogVideoX}"
OUT="$out" SANITIZERS="" RUNS=3 VDIT_FLASH_SM90_BENCH_ONLY="$shape" VDIT_FLASH_SM90_BENCH_PATTERNS=dense \
  scripts/device/flash_sm90.sh >"$out/build.txt" 2>&1 || { tail -20 "$out/build.txt"; exit 1; }
n=0
echo "| row | SM clock MHz | power W | samples | timing |"
echo "| --- | --- | --- | --- | --- |"
for round in $(seq "${ROUNDS:-2}"); do
  for p in ${PATTERNS:-dense spatial:0.15 temporal:0.15}; do
    n=$((n + 1))
    calls=${CALLS:-$([ "$p" = dense ] && echo 400 || echo 2000)}
    nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits -lms 20 >"$out/smi_$n.csv" &
    smi=$!
    sleep 0.3
    row=$(VDIT_FLASH_SM90_BENCH_ONLY="$shape" VDIT_FLASH_SM90_BENCH_PATTERNS="$p" VDIT_FLASH_SM90_BENCH=1 \
      VDIT_FLASH_SM90_BENCH_RUNS="$calls" timeout 120 build-device-sm90/flash_sm90_test.0 --gtest_filter='FlashSm90.Timing' 2>&1 |
      grep "^| $shape" | tail -1)
    kill "$smi"
    wait "$smi" 2>/dev/null
    load=$(awk -F', ' '$2 > 300 {c += $1; w += $2; k++} END {if (k) printf "%.0f | %.0f | %d", c / k, w / k, k; else print "- | - | 0"}' "$out/smi_$n.csv")
    echo "| $p | $load | $(echo "$row" | awk -F'|' '{printf "%s ms, %s TFLOP/s eff", $8 + 0, $10 + 0}') |"
  done
done
