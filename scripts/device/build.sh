#!/usr/bin/env bash
# Run ON THE DEVICE: builds vdit with CUDA against the carried .deps (see prepare_deps.sh).
# Usage: scripts/device/build.sh [extra cmake args]; the build goes to build-device/.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/lib.sh
configure_build_device "$@" >/dev/null
cmake --build build-device -j "$(nproc)"
