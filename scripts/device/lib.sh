# Sourced by the device scripts, from the repository root: the environment for the carried .deps
# (see prepare_deps.sh), and the CMake build in build-device/ against them.
root="$PWD/.deps/root"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/openblas-pthread:${LD_LIBRARY_PATH:-}"
export PATH="$PATH:/usr/local/cuda/bin"

# Configures build-device/ with CUDA; arguments go to cmake.
configure_build_device() {
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B build-device "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DVDIT_CUDA=ON \
    -DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_INCLUDE_PATH="$root/usr/include" \
    -DCMAKE_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu;$root/usr/lib/x86_64-linux-gnu/openblas-pthread" "$@"
}

# build_device_targets LOG TARGET...: configures build-device/ and builds the targets, logging to
# LOG; on failure prints the errors and returns 1.
build_device_targets() {
  local log=$1
  shift
  configure_build_device >"$log" 2>&1 || { tail -30 "$log"; return 1; }
  cmake --build build-device -j "$(nproc)" --target "$@" >>"$log" 2>&1 ||
    { grep -B2 -A12 -m5 "error" "$log"; tail -20 "$log"; return 1; }
}
