#!/usr/bin/env bash
# Run ON THE DEVICE (H100/H200, carry .deps): builds vdit with CUDA, runs the sm_90a flash kernel's
# test against the CPU reference, compute-sanitizer memcheck and racecheck on the small dense cases,
# then the timing of dense and sparse masks (Wan 1.3B S=32760 H=12 D=128, CogVideoX S=17550 H=48
# D=64), whose table is printed last. Logs go to $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp}"
root="$PWD/.deps/root"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/openblas-pthread:${LD_LIBRARY_PATH:-}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build-device "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DVDIT_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_INCLUDE_PATH="$root/usr/include" \
  -DCMAKE_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu;$root/usr/lib/x86_64-linux-gnu/openblas-pthread" \
  >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
cmake --build build-device -j "$(nproc)" --target flash_sm90_test >"$out/build.log" 2>&1 ||
  { grep -B2 -A12 -m5 "error" "$out/build.log"; tail -20 "$out/build.log"; exit 1; }
test=build-device/tests/flash_sm90_test
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader

status=0
timeout 150 "$test" --gtest_filter='FlashSm90.Dense:FlashSm90.Sparse' 2>&1 | tee "$out/test.log" | grep -v "^\[ *RUN\|^\[ *OK" || status=1
grep -q "FAILED\|PASSED" "$out/test.log" || { echo "test did not finish (hang?)"; exit 1; }
grep -q "FAILED" "$out/test.log" && status=1
export PATH="$PATH:/usr/local/cuda/bin"
if command -v compute-sanitizer >/dev/null; then
  for tool in ${SANITIZERS:-memcheck racecheck}; do
    timeout 120 compute-sanitizer --tool "$tool" "$test" --gtest_filter='FlashSm90.Dense' >"$out/$tool.log" 2>&1
    echo "compute-sanitizer $tool: exit $?; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/$tool.log" | tail -1)"
  done
fi
VDIT_FLASH_SM90_BENCH=1 timeout 120 "$test" --gtest_filter='FlashSm90.Timing' 2>&1 | tee "$out/timing.log" | grep "^|"
exit $status
