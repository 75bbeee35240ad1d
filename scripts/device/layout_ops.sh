#!/usr/bin/env bash
# Run ON THE DEVICE (carry .deps), in one call: builds the GPU layout-op tests and benchmark, runs
# the three tests against the CPU oracles (permutation, mask builder, profiler), the benchmark, and
# compute-sanitizer (memcheck; racecheck on the profiler) on small cases; the table comes last.
#
# Usage: scripts/device/layout_ops.sh [build] [test] [sanitize] [bench]   (default: all)
# Env: SHAPES (default wan,wan-cfg,cogvideox,opensora,hunyuan), RUNS (default 50); BIN (default
# build-device): where tests/ and bench/ are, e.g. binaries built elsewhere and carried, with the
# shared libraries they need in BIN/lib (then run without the build phase).
# Files under $OUT: build.log test.log sanitize.log bench.log
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$PWD/layout-ops-logs}"
mkdir -p "$out"
phases=" ${*:-build test sanitize bench} "
has() { [[ "$phases" == *" $1 "* ]]; }
root="$PWD/.deps/root"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/openblas-pthread:${LD_LIBRARY_PATH:-}"
export PATH="$PATH:/usr/local/cuda/bin"
tests=(permute_cuda_test mask_builder_cuda_test profiler_cuda_test)
bin="${BIN:-build-device}"
[ -d "$bin/lib" ] && export LD_LIBRARY_PATH="$PWD/$bin/lib:$LD_LIBRARY_PATH"
summary=()
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv,noheader

if has build; then
  start=$SECONDS
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  # The same configuration as scripts/device/build.sh, building only this script's targets.
  cmake -S . -B build-device "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DVDIT_CUDA=ON \
    -DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_INCLUDE_PATH="$root/usr/include" \
    -DCMAKE_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu;$root/usr/lib/x86_64-linux-gnu/openblas-pthread" \
    -DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20 \
    >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  cmake --build build-device -j "$(nproc)" --target "${tests[@]}" bench_layout_ops >>"$out/build.log" 2>&1 ||
    { grep -B2 -A12 -m5 "error" "$out/build.log"; tail -20 "$out/build.log"; exit 1; }
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

if has sanitize; then
  : >"$out/sanitize.log"
  start=$SECONDS
  timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 "$bin"/tests/mask_builder_cuda_test \
    --gtest_filter='*Rebuilds*:*Capacity*' >>"$out/sanitize.log" 2>&1
  summary+=("memcheck mask builder: exit $?, $(grep -E 'ERROR SUMMARY' "$out/sanitize.log" | tail -1)")
  timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 "$bin"/tests/permute_cuda_test \
    --gtest_filter='*Undoes*' >>"$out/sanitize.log" 2>&1
  summary+=("memcheck permute: exit $?, $(grep -E 'ERROR SUMMARY' "$out/sanitize.log" | tail -1)")
  timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 "$bin"/tests/profiler_cuda_test \
    --gtest_filter='*DenseFallback*' >>"$out/sanitize.log" 2>&1
  summary+=("memcheck profiler: exit $?, $(grep -E 'ERROR SUMMARY' "$out/sanitize.log" | tail -1)")
  timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 "$bin"/tests/profiler_cuda_test \
    --gtest_filter='*DenseFallback*' >>"$out/sanitize.log" 2>&1
  summary+=("racecheck profiler: exit $?, $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$out/sanitize.log" | tail -1) ($((SECONDS - start)) s)")
fi

echo
printf '%s\n' "${summary[@]}"
[ -f "$out/bench.log" ] && { echo; grep -v "^|" "$out/bench.log" | tail -8; echo; grep "^|" "$out/bench.log"; }
exit 0
