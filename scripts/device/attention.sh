#!/usr/bin/env bash
# Run ON THE DEVICE (H100, carry .deps), in one call: builds the attention test and benchmark with
# CUDA, runs the GPU tests against the CPU reference (each flash kernel in its own process),
# compute-sanitizer memcheck and racecheck on the small cases, the benchmark on the ANCHORS shapes
# and the peers (cuDNN SDPA, FlexAttention) on the same masks; a summary and the table come last.
#
# Usage: scripts/device/attention.sh [build] [test] [sanitize] [bench] [profile] [peers]
#        (default: all but profile, which runs Nsight Compute on the sm80 kernel's dense launches).
# Env: KERNELS (default: sm80 sm90), SHAPES (default: all four), RUNS (default 10), BLOCK_Q (the masks'
# query blocks, bench_attention --block-q: default 128; 128,192 adds d = 64's rows at 192), PROFILE
# (shape:launches-to-skip pairs for ncu, default "wan:0 cogvideox:0", the dense launches), DEADLINE
# (seconds after which the peers are cut off; default 570, inside the device tool's 600 s limit).
# Files under $OUT (at most 8): build.log test.log sanitize.log bench.log profile.log peers.log
# results.tar.gz
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$PWD/attention-logs}"
mkdir -p "$out"
phases=" ${*:-build test sanitize bench peers} "
deadline="${DEADLINE:-570}"
has() { [[ "$phases" == *" $1 "* ]]; }
kernels="${KERNELS:-sm80 sm90}"
shapes="${SHAPES:-cogvideox,wan,opensora,hunyuan}"
runs="${RUNS:-10}"
block_q="${BLOCK_Q:-128}"
work=/tmp/vdit_attention_bench
summary=()
source scripts/device/lib.sh
test_bin=build-device/tests/attention_cuda_test
bench_bin=build-device/bench/bench_attention
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader

if has build; then
  start=$SECONDS
  build_device_targets "$out/build.log" attention_cuda_test bench_attention || exit 1
  summary+=("build: $((SECONDS - start)) s")
fi

if has test; then
  : >"$out/test.log"
  for k in $kernels; do
    start=$SECONDS
    VDIT_TEST_FLASH_KERNELS=$k timeout 300 "$test_bin" >>"$out/test.log" 2>&1
    rc=$?
    summary+=("test $k: exit $rc, $(grep -E "^\[  (PASSED|FAILED)  \]" "$out/test.log" | tail -2 | tr '\n' ' ') ($((SECONDS - start)) s)")
  done
  grep -E "^\[ [a-z0-9_]+ +sm[89]0 \]|FAILED|Failure|error" "$out/test.log" | head -80
fi

if has sanitize; then
  : >"$out/sanitize.log"
  for tool in memcheck racecheck; do
    start=$SECONDS
    VDIT_TEST_FLASH_KERNELS=sm80 timeout 300 compute-sanitizer --tool "$tool" --error-exitcode 9 "$test_bin" \
      --gtest_filter='*small*' >>"$out/sanitize.log" 2>&1
    rc=$?
    summary+=("compute-sanitizer $tool (sm80, small cases): exit $rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize.log" | tail -1) ($((SECONDS - start)) s)")
  done
fi

if has bench; then
  rm -rf "$work" && mkdir -p "$work"
  : >"$out/bench.log"
  masks=()
  for k in $kernels; do
    start=$SECONDS
    timeout 330 "$bench_bin" --kernel "$k" --dir "$work" --shapes "$shapes" --runs "$runs" --block-q "$block_q" \
      "${masks[@]}" 2>&1 | tee -a "$out/bench.log"
    summary+=("bench $k: exit ${PIPESTATUS[0]} ($((SECONDS - start)) s)")
    [ -e "$work/ours_$k.json" ] && masks=(--no-masks)
  done
fi

if has profile; then
  : >"$out/profile.log"
  for target in ${PROFILE:-wan:0 cogvideox:0}; do  # shape:launches to skip (4 a pattern with --runs 1)
    shape=${target%:*}
    timeout 120 ncu --clock-control none -k regex:flash_fwd_sm80_kernel -s "${target#*:}" -c 1 --section SpeedOfLight \
      --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
      --section WarpStateStats --section Occupancy --section LaunchStats --section InstructionStats \
      "$bench_bin" --kernel sm80 --shapes "$shape" --runs 1 --dir /tmp/vdit_profile --no-masks >>"$out/profile.log" 2>&1
    summary+=("ncu $target: exit $?")
  done
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Executed Ipc A|Shared.*Bank|Achieved Occupancy|Registers Per|Stall|L1/TEX Hit|L2 Hit" "$out/profile.log" | head -40
fi

if has peers; then
  start=$SECONDS
  PYTHONUNBUFFERED=1 timeout $((deadline > SECONDS + 30 ? deadline - SECONDS : 30)) python3 bench/attention_peers.py --dir "$work" --runs "$runs" >"$out/peers.log" 2>&1
  summary+=("peers: exit $? ($((SECONDS - start)) s)")
  tail -5 "$out/peers.log" | grep -v "^|"
fi
[ -d "$work" ] && tar -czf "$out/results.tar.gz" -C "$work" $(cd "$work" && ls *.json *.md 2>/dev/null)

echo
printf '%s\n' "${summary[@]}"
[ -f "$work/attention_table.md" ] && { echo; cat "$work/attention_table.md"; }
exit 0
