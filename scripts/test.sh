#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test (CTest), then a bounded fuzz run of the
# safetensors parser. GPU tests skip themselves where there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
scripts/fuzz.sh 60
