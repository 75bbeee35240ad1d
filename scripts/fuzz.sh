#!/usr/bin/env bash
# A bounded libFuzzer run of the safetensors parser (clang, AddressSanitizer, UBSan), built in
# build-fuzz/. Usage: scripts/fuzz.sh [SECONDS, default 60]. Exits non-zero if the fuzzer finds
# anything; the input that triggered it is left in build-fuzz/artifacts/. Installs nothing:
# scripts/install_deps.sh provides clang and libclang-rt-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

if ! command -v clang++ >/dev/null || ! command -v clang >/dev/null; then
  echo "fuzz.sh: clang/clang++ not found; install them with scripts/install_deps.sh (Debian: clang libclang-rt-dev)" >&2
  exit 2
fi
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' >"$probe/probe.cpp"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cpp" -o "$probe/probe" 2>"$probe/log"; then
  cat "$probe/log" >&2
  echo "fuzz.sh: clang++ cannot link libFuzzer; install libclang-rt-dev (scripts/install_deps.sh)" >&2
  exit 2
fi

cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DVDIT_CUDA=OFF -DVDIT_TESTS=OFF -DVDIT_FUZZ=ON >/dev/null
cmake --build build-fuzz --target safetensors_fuzz
mkdir -p build-fuzz/corpus build-fuzz/artifacts
# New inputs go to build-fuzz/corpus; the seeds in fuzz/corpus are only read.
build-fuzz/fuzz/safetensors_fuzz -max_total_time="$seconds" -timeout=10 -dict=fuzz/safetensors.dict \
  -artifact_prefix=build-fuzz/artifacts/ -print_final_stats=1 build-fuzz/corpus fuzz/corpus
