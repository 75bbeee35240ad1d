// Device memory of CUDA tensors (CUDA builds only: allocator_cuda.cpp): a per-device caching arena.
//
// The arena is CUDA's own stream-ordered pool, the device's default cudaMemPool_t, with its release
// threshold raised to "never", so memory a dead tensor gave back stays cached in the process (the pool
// keeps its own size-bucketed free lists) instead of returning to the driver at each synchronisation.
// vdit holds no allocator state of its own: the cache is the one CUDA keeps per device and process,
// shared with whatever else in the process allocates from the default pool (cudaMallocAsync).
//
// Stream order: allocations and frees are enqueued on the legacy default stream, which every blocking
// stream synchronises with. A tensor used by work on a blocking stream (cudaStreamCreate) may therefore
// die before that work ends: its memory is reused only after it. Streams created with
// cudaStreamNonBlocking are not ordered with the default stream: their work must end before its tensors
// die and start after the default stream's earlier work (synchronise in between).
// Devices without memory pools fall back to synchronous cudaMalloc/cudaFree.
#pragma once

#include <cstddef>
#include <memory>

#include "vdit/tensor.h"

namespace vdit {

// `bytes` (0 allowed) of device memory on `device`, freed back to the cache when the returned owner's
// last reference dies. Throws ErrorCode::cuda naming the device and size when the device has none left.
std::shared_ptr<void> cuda_allocate(size_t bytes, Device device);

// What the device's cache holds, in bytes: in use by live allocations and reserved from the driver,
// each now and at its peak since the last reset_cuda_memory_peaks.
struct CudaMemoryStats {
  size_t used = 0, used_peak = 0, reserved = 0, reserved_peak = 0;
};
CudaMemoryStats cuda_memory_stats(Device device);
void reset_cuda_memory_peaks(Device device);

// Waits for the device and gives the memory the cache holds unused back to the driver.
void release_cuda_cache(Device device);

}  // namespace vdit
