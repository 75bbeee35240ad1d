#!/usr/bin/env bash
# Run ON THE DEVICE (H100/H200, carry .deps): builds the sm_90a flash kernel and its test, runs the
# test against the CPU reference, compute-sanitizer memcheck and racecheck on the small dense cases,
# then the timing of dense and sparse masks (Wan 1.3B S=32760 H=12 D=128, CogVideoX S=17550 H=48
# D=64, HunyuanVideo S=118800 H=24 D=128), whose table is printed last. Logs go to $OUT when set.
# VARIANTS="ab/x.cu ...": files put in place of src/kernels/cuda/flash_fwd_sm90.cu, one more test
# binary each (A/B in one call): every build is tested and sanitized, then all are timed in turn, ROUNDS
# times (default 2).
# RUNS: timed calls a row (median; default 10). VDIT_FLASH_SM90_BENCH_PATTERNS="dense,tile:4": the masks
# timed; VDIT_FLASH_SM90_BENCH_INPUTS=independent: Q, K and V drawn apart, as bench_attention draws them;
# VDIT_FLASH_SM90_BENCH_WARMUP_MS=1000: each row timed at the clock the GPU holds (default 300, bursts).
# STATS=1: every build with the per-item cycle counts (-DVDIT_FLASH_SM90_STATS; timings then include
# them), one line a row after the table.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp}"
mkdir -p "$out"
source scripts/device/lib.sh
# The test is built on its own (the kernel, the CPU reference and mask builders it needs), so that
# work in progress elsewhere in the library cannot break this script. The CMake build (CI) builds
# the same test as build/tests/flash_sm90_test.
build=build-device-sm90
mkdir -p "$build"
cuda="${CUDA_HOME:-/usr/local/cuda}"
builds=(tree)  # kernel sources: this tree's, then one per VARIANTS file
kernel_source() { [ "$1" = tree ] && echo src/kernels/cuda/flash_fwd_sm90.cu || echo "$1"; }
for v in ${VARIANTS:-}; do builds+=("$v"); done
: >"$out/build.log"
for i in "${!builds[@]}"; do
  "$cuda/bin/nvcc" -std=c++20 -O3 --threads 0 --expt-relaxed-constexpr -lineinfo -Xptxas -v ${STATS:+-DVDIT_FLASH_SM90_STATS} \
    -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80 -Iinclude -Isrc \
    -x cu -c "$(kernel_source "${builds[$i]}")" -o "$build/flash_fwd_sm90.$i.o" >"$build/kernel.$i.log" 2>&1 &
done
objects=()
for source in src/kernels/cuda/{tensor_map,sm90_device}.cu; do  # (shared with the GPU profiler)
  object="$build/$(basename "$source" .cu).o"
  objects+=("$object")
  "$cuda/bin/nvcc" -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a -Iinclude -Isrc -c "$source" -o "$object" \
    >"$object.log" 2>&1 &
done
for source in tests/cuda/flash_sm90_test.cpp src/core/*.cpp src/attention/{reference,head_rows,block_mask,layout,pattern,permutation}.cpp; do
  object="$build/$(basename "$source" .cpp).o"
  objects+=("$object")
  g++ -std=c++20 -O2 -Iinclude -Isrc -isystem "$root/usr/include" -isystem "$cuda/include" -c "$source" \
    -o "$object" >"$object.log" 2>&1 &
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=1; done
cat "$build"/*.o.log >>"$out/build.log"
[ "$failed" = 0 ] || { grep -B2 -A12 -m5 "error" "$out/build.log"; tail -20 "$out/build.log"; exit 1; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
status=0
for i in "${!builds[@]}"; do
  echo "== ${builds[$i]}"
  cat "$build/kernel.$i.log" >>"$out/build.log"
  g++ "${objects[@]}" "$build/flash_fwd_sm90.$i.o" -L"$root/usr/lib/x86_64-linux-gnu" \
    -lgtest_main -lgtest -lfmt -L"$cuda/lib64" -lcudart_static -ldl -lrt -lpthread \
    -o "$build/flash_sm90_test.$i" >>"$out/build.log" 2>&1 ||
    { grep -B2 -A12 -m5 "error" "$build/kernel.$i.log" "$out/build.log"; status=1; continue; }
  grep -A2 "sm_90a" "$build/kernel.$i.log" | grep -E "spill|Used" | sort | uniq -c
  grep -E "C75[0-9][0-9]" "$build/kernel.$i.log" | sort -u  # wgmma serialized, setmaxnreg ignored, ...
  test="$build/flash_sm90_test.$i"
  timeout 150 "$test" --gtest_filter='FlashSm90.Dense:FlashSm90.CrossAttention:FlashSm90.Sparse*:FlashSm90.MaskBlocks' >"$out/test.$i.log" 2>&1
  grep -v "^\[ *RUN\|^\[ *OK" "$out/test.$i.log" | grep -E "FAILED|PASSED|Failure|Expected|Which is|error" | head -20
  # a build that hangs is not timed (nor sanitized)
  grep -q "FAILED\|PASSED" "$out/test.$i.log" || { echo "test did not finish (hang?)"; status=1; mv "$test" "$test.hung"; continue; }
  grep -q "FAILED" "$out/test.$i.log" && status=1
  if command -v compute-sanitizer >/dev/null; then
    for tool in ${SANITIZERS-memcheck racecheck}; do
      timeout 120 compute-sanitizer --tool "$tool" "$test" --gtest_filter='FlashSm90.Dense:FlashSm90.CrossAttention:FlashSm90.SparseSmall' >"$out/$tool.$i.log" 2>&1
      echo "compute-sanitizer $tool: exit $?; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/$tool.$i.log" | tail -1)"
    done
  fi
done
rounds=1
((${#builds[@]} > 1)) && rounds=${ROUNDS:-2}
: >"$out/timing.log"
for round in $(seq $rounds); do
  for i in "${!builds[@]}"; do
    [ -x "$build/flash_sm90_test.$i" ] || continue
    echo "== ${builds[$i]} (round $round)" | tee -a "$out/timing.log"
    VDIT_FLASH_SM90_BENCH=1 VDIT_FLASH_SM90_BENCH_RUNS="${RUNS:-10}" timeout 120 "$build/flash_sm90_test.$i" --gtest_filter='FlashSm90.Timing' 2>&1 |
      tee -a "$out/timing.log" | grep "^|" | { ((${#builds[@]} > 1)) && cat >/dev/null || cat; }
  done
done
if ((${#builds[@]} > 1)); then  # A/B: one line a row, ms of every build and round
  echo "| shape | mask | $(printf '%s | ' "${builds[@]}")"
  awk -F'|' '/^== /{b=$0; sub(/^== /,"",b); sub(/ \(round.*/,"",b); if(!(b in seen)){seen[b]=1; order[++n]=b}; next}
    /^\| (Wan|CogVideoX|HunyuanVideo)/{k=$2"|"$6; gsub(/  +/," ",k); if(!(k in rs)){rs[k]=1; rows[++m]=k}; ms[k,b]=ms[k,b] (ms[k,b]==""?"":" / ") $8+0}
    END{for(r=1;r<=m;r++){line="|" rows[r] "|"; for(i=1;i<=n;i++) line=line " " ms[rows[r],order[i]] " |"; print line}}' "$out/timing.log"
fi
if [ -n "${STATS:-}" ]; then  # the counts of each row's last launch
  awk '/^== /{b=$0} /^timing /{row=$0} /^stats: /{last[b" | "row]=$0; if(!(b" | "row in seen)){seen[b" | "row]=1; keys[++n]=b" | "row}}
    END{for(i=1;i<=n;i++) print keys[i] " | " last[keys[i]]}' "$out/timing.log"
fi
exit $status
