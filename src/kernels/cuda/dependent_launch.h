// Programmatic dependent launch (Hopper and later): a kernel launched with launch_dependent may
// start while the stream's previous kernel still runs (once that kernel has called
// allow_dependents(), or as its blocks end), so its launch and set-up overlap that kernel's tail.
// Before dependency_wait() it may touch no global memory that an earlier kernel of the stream
// writes or reads (inputs, and outputs an earlier kernel may still be reading): after it, every
// earlier kernel has completed and its writes are visible. On older GPUs these are ordinary
// launches, and the device calls compile to nothing.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace vdit::cuda {

__device__ __forceinline__ void dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

template <class... Params, class... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                             Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace vdit::cuda
