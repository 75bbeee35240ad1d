#!/usr/bin/env bash
# Run ON THE DEVICE: builds vdit with CUDA against the carried .deps (see prepare_deps.sh).
# Usage: scripts/device/build.sh [extra cmake args]; the build goes to build-device/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD/.deps/root"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/openblas-pthread:${LD_LIBRARY_PATH:-}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build-device "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DVDIT_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_INCLUDE_PATH="$root/usr/include" \
  -DCMAKE_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu;$root/usr/lib/x86_64-linux-gnu/openblas-pthread" \
  "$@" >/dev/null
cmake --build build-device -j "$(nproc)"
