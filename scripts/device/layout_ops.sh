#!/usr/bin/env bash
# Run ON THE DEVICE (carry .deps), in one call: builds the GPU layout-op tests and benchmark, runs
# the three tests against the CPU oracles (permutation, mask builder, profiler), the benchmark, and
# compute-sanitizer (memcheck; racecheck on the profiler) on small cases; the table comes last.
#
# Usage: scripts/device/layout_ops.sh [build] [test] [sanitize] [bench] [ncu] [ab]   (default: all but ncu, ab)
# ncu: Nsight Compute on the profiler's partial-output kernel at the NCU_SHAPES (default "wan cogvideox"); NCU_KERNELS
# (a regex, default profile_partials) and NCU_COUNT (default 1) pick other kernels and more launches; NCU_BATCH the
# batch; NCU_METRICS (comma-separated, e.g. "regex:smsp__pcsamp_warps_issue_stalled_.*") adds raw metrics, printed
# whole.
# ab: the profiler of this tree against OLD's (default ab/old, another tree, e.g. `git archive REV | tar -x -C
# ab/old`; its bench_layout_ops is built there), alternating, two rounds, at AB_CASES (default "cogvideox:1
# cogvideox:2 wan:1 wan:2 opensora hunyuan": shape[:batch]), one line each.
# Env: SHAPES (default wan,wan-cfg,cogvideox,opensora,hunyuan), RUNS (default 50); BIN (default
# build-device): where tests/ and bench/ are, e.g. binaries built elsewhere and carried, with the
# shared libraries they need in BIN/lib (then run without the build phase).
# Files under $OUT: build.log test.log sanitize.log bench.log ncu_SHAPE.txt old_build.log ab.log
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$PWD/layout-ops-logs}"
mkdir -p "$out"
phases=" ${*:-build test sanitize bench} "
has() { [[ "$phases" == *" $1 "* ]]; }
source scripts/device/lib.sh
tests=(permute_cuda_test mask_builder_cuda_test profiler_cuda_test)
bin="${BIN:-build-device}"
[ -d "$bin/lib" ] && export LD_LIBRARY_PATH="$PWD/$bin/lib:$LD_LIBRARY_PATH"
summary=()
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv,noheader

if has build; then
  start=$SECONDS
  build_device_targets "$out/build.log" "${tests[@]}" bench_layout_ops || exit 1
  summary+=("build: $((SECONDS - start)) s")
fi

if has test; then
  : >"$out/test.log"
  for t in "${tests[@]}"; do
    start=$SECONDS
    timeout 150 "$bin/tests/$t" >"$out/$t.txt" 2>&1
    rc=$?
    summary+=("$t: exit $rc, $(grep -E "^\[  (PASSED|FAILED)  \]|tests? ran" "$out/$t.txt" | tr '\n' ' ') ($((SECONDS - start)) s)")
    cat "$out/$t.txt" >>"$out/test.log" && rm "$out/$t.txt"
  done
  grep -E "FAILED|Failure|Expected|Which is|actual|error|\[ profile  \]" "$out/test.log" | head -60
fi

if has bench; then
  start=$SECONDS
  timeout 150 "$bin"/bench/bench_layout_ops --shapes "${SHAPES:-wan,wan-cfg,cogvideox,opensora,hunyuan}" \
    --runs "${RUNS:-50}" >"$out/bench.log" 2>&1
  summary+=("bench: exit $? ($((SECONDS - start)) s)")
fi

if has ncu; then
  start=$SECONDS
  for shape in ${NCU_SHAPES:-wan cogvideox}; do
    timeout 120 ncu --kernel-name "regex:${NCU_KERNELS:-profile_partials}" --launch-skip 3 --launch-count "${NCU_COUNT:-1}" \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
      ${NCU_METRICS:+--metrics "$NCU_METRICS"} \
      "$bin"/bench/bench_layout_ops --shapes "$shape" ${NCU_BATCH:+--batch "$NCU_BATCH"} --runs 3 --no-attention \
      >"$out/ncu_$shape.txt" 2>&1
    echo "== ncu $shape (exit $?)"
    grep -E "Duration|DRAM Throughput|Compute \(SM\) Throughput|Registers Per|Achieved Occupancy|Theoretical Occ|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|L1/TEX Hit|Mem Pipes Busy|Executed Ipc A" \
      "$out/ncu_$shape.txt" | head -40
    [ -n "${NCU_METRICS:-}" ] && grep -E "^ +[a-z]+__[a-z_0-9.]+ " "$out/ncu_$shape.txt" | grep -v " 0$" | head -80
  done
  summary+=("ncu: $((SECONDS - start)) s")
fi

if has sanitize; then
  : >"$out/sanitize.log"
  start=$SECONDS
  # sanitize TOOL LABEL TEST FILTER: one compute-sanitizer run and its summary line.
  sanitize() {
    timeout 60 compute-sanitizer --tool "$1" --error-exitcode 9 "$bin/tests/$3" --gtest_filter="$4" \
      >>"$out/sanitize.log" 2>&1
    summary+=("$1 $2: exit $?, $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$out/sanitize.log" | tail -1)")
  }
  sanitize memcheck "mask builder" mask_builder_cuda_test '*Rebuilds*:*Capacity*'
  sanitize memcheck permute permute_cuda_test '*Undoes*'
  sanitize memcheck profiler profiler_cuda_test '*DenseFallback*'
  sanitize racecheck profiler profiler_cuda_test '*DenseFallback*'
  sanitize racecheck "profiler, far candidates" profiler_cuda_test '*FarBelow*'
  summary+=("sanitize: $((SECONDS - start)) s")
fi

if has ab; then
  start=$SECONDS
  old="${OLD:-ab/old}"
  (cd "$old" && build_device_targets "$out/old_build.log" bench_layout_ops) || exit 1
  : >"$out/ab.log"
  for case in ${AB_CASES:-cogvideox:1 cogvideox:2 wan:1 wan:2 opensora hunyuan}; do
    shape=${case%%:*} batch=
    [[ "$case" == *:* ]] && batch=${case#*:}
    for round in 1 2; do
      for tree in this "$old"; do
        b="$bin"
        [ "$tree" = this ] || b="$old/build-device"
        r=$(timeout 60 "$b"/bench/bench_layout_ops --shapes "$shape" ${batch:+--batch "$batch"} --runs "${RUNS:-50}" \
          --no-attention 2>&1 | grep -o "profile [0-9.]* us ([0-9]* [a-z]*)")
        echo "$shape batch ${batch:-default}, $tree: $r" | tee -a "$out/ab.log"
      done
    done
  done
  summary+=("ab: $((SECONDS - start)) s")
fi

echo
printf '%s\n' "${summary[@]}"
[ -f "$out/bench.log" ] && { echo; grep -v "^|" "$out/bench.log" | tail -8; echo; grep "^|" "$out/bench.log"; }
exit 0
