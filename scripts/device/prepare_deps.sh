#!/usr/bin/env bash
# Run HERE (not on the device): the GPU machine has nvcc, CMake and PyTorch but none of vdit's
# C++ libraries and no network. This downloads their Debian packages and unpacks them into
# .deps/root (ignored by git); device calls carry `.deps` and build with scripts/device/build.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.deps/' .git/info/exclude 2>/dev/null || echo '/.deps/' >> .git/info/exclude
rm -rf .deps && mkdir -p .deps/debs .deps/root
(cd .deps/debs && apt-get download libfmt-dev libfmt9 nlohmann-json3-dev libcli11-dev libpng-dev \
   libpng16-16 zlib1g-dev libgtest-dev libopenblas-dev libopenblas0-pthread libopenblas-pthread-dev \
   libgfortran5 >/dev/null)
for f in .deps/debs/*.deb; do dpkg -x "$f" .deps/root; done
rm -rf .deps/debs .deps/root/usr/share/doc .deps/root/usr/share/man
# Static archives are not needed (but for GoogleTest, which ships only those); keep the carry small.
find .deps/root -name "*.a" ! -name "libgtest*.a" -delete
du -sh .deps
