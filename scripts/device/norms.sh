#!/usr/bin/env bash
# Run ON THE DEVICE (carry .deps), in one call: builds the CUDA op test and bench_norms, runs the
# test (every CUDA op against the CPU op), then the norm benchmark (the model forwards' norm passes
# against the copy bandwidth); the table comes last.
#
# Usage: scripts/device/norms.sh [build] [test] [bench] [ncu]   (default: build test bench)
# ncu: Nsight Compute on the norm row kernel, one launch of each op of the NCU_SHAPES (default cogvideox).
# Env: RUNS (default 50); VARIANTS: files put in place of src/ops/kernels_cuda.cu, one more
# bench_norms built for each in the same call (A/B), all run in turn with this tree's, twice.
# Files under $OUT: build.log test.log bench.log ncu_SHAPE.txt
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$PWD/norms-logs}"
mkdir -p "$out"
phases=" ${*:-build test bench} "
has() { [[ "$phases" == *" $1 "* ]]; }
source scripts/device/lib.sh
bin=build-device
summary=()
builds=(tree)  # bench_norms builds to run: this tree's, then one per VARIANTS file (build phase)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv,noheader

if has build; then
  start=$SECONDS
  build_device_targets "$out/build.log" ops_cuda_test bench_norms || exit 1
  if [ -n "${VARIANTS:-}" ]; then
    cp "$bin/bench/bench_norms" /tmp/bench_norms.tree && cp src/ops/kernels_cuda.cu /tmp/kernels_cuda.cu.tree
    for v in $VARIANTS; do
      name=$(basename "$v" .cu)
      cp "$v" src/ops/kernels_cuda.cu &&
        cmake --build "$bin" --target bench_norms >>"$out/build.log" 2>&1 && cp "$bin/bench/bench_norms" "/tmp/bench_norms.$name" &&
        builds+=("$name")
    done
    cp /tmp/kernels_cuda.cu.tree src/ops/kernels_cuda.cu
    cmake --build "$bin" --target bench_norms >>"$out/build.log" 2>&1
  fi
  summary+=("build: $((SECONDS - start)) s")
fi

if has test; then
  start=$SECONDS
  timeout 150 "$bin/tests/ops_cuda_test" >"$out/test.log" 2>&1
  summary+=("ops_cuda_test: exit $?, $(grep -E "^\[  (PASSED|FAILED)  \]" "$out/test.log" | tr '\n' ' ') ($((SECONDS - start)) s)")
  grep -E "FAILED|Failure|Expected|Which is" "$out/test.log" | head -30
fi

if has bench; then
  start=$SECONDS
  : >"$out/bench.log"
  if ((${#builds[@]} > 1)); then
    for round in 1 2; do
      for build in "${builds[@]}"; do
        echo "== $build" >>"$out/bench.log"
        timeout 100 "/tmp/bench_norms.$build" --runs "${RUNS:-50}" >>"$out/bench.log" 2>&1
      done
    done
  else
    timeout 100 "$bin/bench/bench_norms" --runs "${RUNS:-50}" >"$out/bench.log" 2>&1
  fi
  summary+=("bench: exit $? ($((SECONDS - start)) s)")
fi

if has ncu; then
  start=$SECONDS
  for shape in ${NCU_SHAPES:-cogvideox}; do
    timeout 150 ncu --kernel-name regex:norm_rows_kernel --launch-skip 0 --launch-count 16 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --section MemoryWorkloadAnalysis \
      "$bin"/bench/bench_norms --shapes "$shape" --runs 1 >"$out/ncu_$shape.txt" 2>&1
    echo "== ncu $shape (exit $?)"
    grep -E "norm_rows_kernel|Duration|DRAM Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Theoretical Occ|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|L1/TEX Hit|L2 Hit|Block Limit" \
      "$out/ncu_$shape.txt" | cut -c1-150 | head -80
  done
  summary+=("ncu: $((SECONDS - start)) s")
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
[ -f "$out/bench.log" ] && cat "$out/bench.log"
