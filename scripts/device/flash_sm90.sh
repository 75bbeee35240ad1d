#!/usr/bin/env bash
# Run ON THE DEVICE (H100/H200, carry .deps): builds the sm_90a flash kernel and its test, runs the
# test against the CPU reference, compute-sanitizer memcheck and racecheck on the small dense cases,
# then the timing of dense and sparse masks (Wan 1.3B S=32760 H=12 D=128, CogVideoX S=17550 H=48
# D=64), whose table is printed last. Logs go to $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp}"
source scripts/device/lib.sh
# The test is built on its own (the kernel, the CPU reference and mask builders it needs), so that
# work in progress elsewhere in the library cannot break this script. The CMake build (CI) builds
# the same test as build/tests/flash_sm90_test.
build=build-device-sm90
mkdir -p "$build"
cuda="${CUDA_HOME:-/usr/local/cuda}"
"$cuda/bin/nvcc" -std=c++20 -O3 --threads 0 --expt-relaxed-constexpr -lineinfo -Xptxas -v \
  -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80 -Iinclude -Isrc \
  -c src/kernels/cuda/flash_fwd_sm90.cu -o "$build/flash_fwd_sm90.o" >"$out/build.log" 2>&1 &
objects=()
for source in tests/cuda/flash_sm90_test.cpp src/core/*.cpp src/attention/{reference,head_rows,block_mask,layout,pattern,permutation}.cpp; do
  object="$build/$(basename "$source" .cpp).o"
  objects+=("$object")
  g++ -std=c++20 -O2 -Iinclude -Isrc -isystem "$root/usr/include" -isystem "$cuda/include" -c "$source" \
    -o "$object" >"$object.log" 2>&1 &
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=1; done
cat "$build"/*.o.log >>"$out/build.log"
[ "$failed" = 0 ] && g++ "${objects[@]}" "$build/flash_fwd_sm90.o" -L"$root/usr/lib/x86_64-linux-gnu" \
  -lgtest_main -lgtest -lfmt -L"$cuda/lib64" -lcudart_static -ldl -lrt -lpthread \
  -o "$build/flash_sm90_test" >>"$out/build.log" 2>&1 ||
  { grep -B2 -A12 -m5 "error" "$out/build.log"; tail -20 "$out/build.log"; exit 1; }
grep -A2 "sm_90a" "$out/build.log" | grep -E "spill|Used" | sort | uniq -c
grep -E "C75[0-9][0-9]" "$out/build.log" | sort -u  # wgmma serialized, setmaxnreg ignored, ...
test="$build/flash_sm90_test"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader

status=0
timeout 150 "$test" --gtest_filter='FlashSm90.Dense:FlashSm90.CrossAttention:FlashSm90.Sparse' 2>&1 | tee "$out/test.log" | grep -v "^\[ *RUN\|^\[ *OK" || status=1
grep -q "FAILED\|PASSED" "$out/test.log" || { echo "test did not finish (hang?)"; exit 1; }
grep -q "FAILED" "$out/test.log" && status=1
if command -v compute-sanitizer >/dev/null; then
  for tool in ${SANITIZERS-memcheck racecheck}; do
    timeout 120 compute-sanitizer --tool "$tool" "$test" --gtest_filter='FlashSm90.Dense:FlashSm90.CrossAttention' >"$out/$tool.log" 2>&1
    echo "compute-sanitizer $tool: exit $?; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/$tool.log" | tail -1)"
  done
fi
VDIT_FLASH_SM90_BENCH=1 timeout 120 "$test" --gtest_filter='FlashSm90.Timing' 2>&1 | tee "$out/timing.log" | grep "^|"
exit $status
