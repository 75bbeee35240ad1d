#!/usr/bin/env bash
# Installs what vdit builds and tests with, from Debian's packages. Idempotent; needs root (or sudo).
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config git python3
          libfmt-dev nlohmann-json3-dev libcli11-dev libpng-dev libgtest-dev libopenblas-dev
          clang libclang-rt-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
