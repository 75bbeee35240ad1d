#!/usr/bin/env bash
# Run ON THE DEVICE (H100; carry .deps and .whl), in one call: builds the model targets with CUDA,
# runs the CUDA op tests and the allocator test, makes GPU conformance fixtures with diffusers
# (scripts/make_reference_fixtures.py --head-dim 64) and runs the model conformance test on them (f32
# and bf16, and the sparse policies in f32 against the CPU), then the model benchmark: diffusers
# eager (bench/model_forward_peers.py) and vdit (bench_model_forward) on the same random weights of
# the real Wan2.1-T2V-1.3B config at 480p/81 frames, then CogVideoX-5B at 720x480/49 frames if time
# is left; each with --breakdown (the per-op times of the real forward). A summary and the table
# come last. The `attention` phase (not in the default) runs attention_cuda_test (flash kernels and
# the f32 kernel) and compute-sanitizer memcheck and racecheck on the f32 kernel's small cases.
#
# Usage: scripts/device/models.sh [build] [test] [attention] [wan] [cogvideox]
#        (default: build test wan cogvideox)
# Env: RUNS (default 5), WARMUP (default 2), POLICIES (default dense,mix), DEADLINE (seconds after
# which nothing new starts; default 520, inside the device tool's 600 s limit).
# Wheels: .whl/ holds diffusers (pure Python; its other needs are on the device).
# Files under $OUT (at most 8): build.log tests.log fixtures.log attention.log wan.log cogvideox.log
# table.md results.tar.gz
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$PWD/models-logs}"
mkdir -p "$out"
phases=" ${*:-build test wan cogvideox} "
has() { [[ "$phases" == *" $1 "* ]]; }
deadline="${DEADLINE:-520}"
runs="${RUNS:-5}"
warmup="${WARMUP:-2}"
policies="${POLICIES:-dense,mix}"
work=/tmp/vdit_models
bin=build-device
summary=()
# shellcheck source=scripts/device/lib.sh
source scripts/device/lib.sh  # the .deps environment and configure_build_device (into build-device/)
export PYTHONUNBUFFERED=1
# Seconds a step may take: `want`, or what is left before the deadline (at least 10).
limit() { local left=$((deadline - SECONDS)); ((left < 10)) && left=10; echo $(($1 < left ? $1 : left)); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv,noheader
rm -rf "$work" && mkdir -p "$work"

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import diffusers, torch; print('diffusers', diffusers.__version__, 'torch', torch.__version__)" ||
  summary+=("diffusers: cannot import")

if has test; then
  # CPU only (torch on the CPU, tiny models): overlaps the build.
  (timeout 240 python3 scripts/make_reference_fixtures.py --out "$work/fixtures" --head-dim 64 \
    >"$out/fixtures.log" 2>&1; echo "exit $?" >>"$out/fixtures.log") &
  fixtures_pid=$!
fi

if has build; then
  start=$SECONDS
  # The configuration of scripts/device/build.sh, building only this script's targets.
  targets=()
  has test && targets+=(ops_cuda_test allocator_cuda_test models_cuda_test)
  has attention && targets+=(attention_cuda_test)
  (has wan || has cogvideox) && targets+=(bench_model_forward)
  configure_build_device >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  timeout "$(limit 300)" cmake --build "$bin" -j "$(nproc)" --target "${targets[@]}" >>"$out/build.log" 2>&1 ||
    { grep -B2 -A12 -m5 "error" "$out/build.log"; tail -20 "$out/build.log"; exit 1; }
  summary+=("build: $((SECONDS - start)) s")
fi

if has test; then
  : >"$out/tests.log"
  for t in ops_cuda_test allocator_cuda_test; do
    start=$SECONDS
    timeout "$(limit 120)" "$bin/tests/$t" >"$work/$t.txt" 2>&1
    rc=$?
    result=$(grep -E "^\[  (PASSED|FAILED)  \]" "$work/$t.txt" | tr '\n' ' ')
    summary+=("$t: exit $rc, $result ($((SECONDS - start)) s)")
    cat "$work/$t.txt" >>"$out/tests.log"
  done
  wait "$fixtures_pid"
  summary+=("fixtures: $(tail -1 "$out/fixtures.log")")
  start=$SECONDS
  VDIT_GPU_MODEL_FIXTURES="$work/fixtures" timeout "$(limit 120)" "$bin/tests/models_cuda_test" \
    >"$work/models_cuda_test.txt" 2>&1
  rc=$?
  result=$(grep -E "^\[  (PASSED|FAILED)  \]" "$work/models_cuda_test.txt" | tr '\n' ' ')
  summary+=("models_cuda_test: exit $rc, $result ($((SECONDS - start)) s)")
  cat "$work/models_cuda_test.txt" >>"$out/tests.log"
  grep -E "relative L2|\[ allocator \]|FAILED|Failure|Expected|Which is|error" "$out/tests.log" | head -40
fi

if has attention; then
  start=$SECONDS
  timeout "$(limit 240)" "$bin/tests/attention_cuda_test" >"$out/attention.log" 2>&1
  rc=$?
  summary+=("attention_cuda_test: exit $rc, $(grep -E "^\[  (PASSED|FAILED)  \]" "$out/attention.log" | tr '\n' ' ')($((SECONDS - start)) s)")
  grep -E "^\[ [a-z0-9_]+ +(sm[89]0|f32) \]|FAILED|Failure" "$out/attention.log" | head -80
  for tool in memcheck racecheck; do
    start=$SECONDS
    timeout "$(limit 60)" compute-sanitizer --tool "$tool" --error-exitcode 9 "$bin/tests/attention_cuda_test" \
      --gtest_filter='*AttentionCudaF32*small*' >>"$out/attention.log" 2>&1
    rc=$?
    summary+=("compute-sanitizer $tool (f32, small cases): exit $rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/attention.log" | tail -1) ($((SECONDS - start)) s)")
  done
fi

# bench_model <name> <peers timeout> <vdit timeout> [vdit args]: diffusers first (writes the
# checkpoint and inputs), then vdit on them; the checkpoint is deleted afterwards (disk).
bench_model() {
  local name=$1 peers_s=$2 vdit_s=$3
  shift 3
  local dir="$work/$name" start=$SECONDS
  : >"$out/$name.log"
  timeout "$(limit "$peers_s")" python3 bench/model_forward_peers.py run --model "$name" --dir "$dir" \
    --runs "$runs" --warmup "$warmup" 2>&1 | grep -v "^There are modules" | tee -a "$out/$name.log"
  summary+=("$name diffusers: exit ${PIPESTATUS[0]} ($((SECONDS - start)) s)")
  if [ -f "$dir/inputs.safetensors" ]; then
    start=$SECONDS
    timeout "$(limit "$vdit_s")" "$bin/bench/bench_model_forward" --model "$dir/transformer" \
      --inputs "$dir/inputs.safetensors" --label "$name" --json "$dir/vdit.json" --runs "$runs" --warmup "$warmup" \
      --policies "$policies" "$@" 2>&1 | tee -a "$out/$name.log"
    summary+=("$name vdit: exit ${PIPESTATUS[0]} ($((SECONDS - start)) s)")
  fi
  rm -rf "$dir/transformer"
}

has wan && bench_model wan 200 150 --breakdown
if has cogvideox; then
  if ((deadline - SECONDS > 200)); then
    bench_model cogvideox 200 150 --breakdown
  else
    summary+=("cogvideox: skipped, $((deadline - SECONDS)) s left")
  fi
fi

dirs=()
for d in "$work/wan" "$work/cogvideox"; do [ -d "$d" ] && dirs+=("$d"); done
((${#dirs[@]})) && python3 bench/model_forward_peers.py table "${dirs[@]}" >"$out/table.md" 2>&1
(cd "$work" && tar -czf "$out/results.tar.gz" $(ls -d */*.json 2>/dev/null) 2>/dev/null)

echo
printf '%s\n' "${summary[@]}"
[ -f "$out/table.md" ] && { echo; cat "$out/table.md"; }
exit 0
