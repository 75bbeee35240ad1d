#include "core/allocator_cuda.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace vdit {
namespace {

// Makes `index` the current device for its lifetime, then restores the previous one. Never throws:
// the deleters use it too, possibly after the runtime has shut down at exit.
class CurrentDevice {
 public:
  explicit CurrentDevice(int index) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != index) status_ = cudaSetDevice(index);
  }
  ~CurrentDevice() {
    if (previous_ >= 0 && switched()) cudaSetDevice(previous_);
  }
  CurrentDevice(const CurrentDevice&) = delete;
  CurrentDevice& operator=(const CurrentDevice&) = delete;
  cudaError_t status() const { return status_; }

 private:
  bool switched() const { return status_ == cudaSuccess; }
  int previous_ = -1;
  cudaError_t status_ = cudaSuccess;
};

void check(cudaError_t err, Device device, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // a failed allocation is not sticky: keep it from later launch checks
  fail(ErrorCode::cuda, "CUDA allocator on {}: {}: {}", device.to_string(), what, cudaGetErrorString(err));
}

// The device's default pool with caching on (the release threshold at its maximum), or null when
// the device has no memory pools.
cudaMemPool_t caching_pool(Device device) {
  int supported = 0;
  check(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device.index), device,
        "cudaDeviceGetAttribute(MemoryPoolsSupported)");
  if (!supported) return nullptr;
  cudaMemPool_t pool = nullptr;
  check(cudaDeviceGetDefaultMemPool(&pool, device.index), device, "cudaDeviceGetDefaultMemPool");
  uint64_t threshold = 0;
  check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), device,
        "cudaMemPoolGetAttribute(ReleaseThreshold)");
  if (threshold != UINT64_MAX) {
    threshold = UINT64_MAX;
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), device,
          "cudaMemPoolSetAttribute(ReleaseThreshold)");
  }
  return pool;
}

void free_memory(int index, void* p, bool pooled) {
  const CurrentDevice current(index);
  if (pooled) {
    cudaFreeAsync(p, nullptr);
  } else {
    cudaFree(p);
  }
}

size_t pool_attribute(cudaMemPool_t pool, cudaMemPoolAttr attribute, Device device) {
  uint64_t value = 0;
  check(cudaMemPoolGetAttribute(pool, attribute, &value), device, "cudaMemPoolGetAttribute");
  return static_cast<size_t>(value);
}

}  // namespace

std::shared_ptr<void> cuda_allocate(size_t bytes, Device device) {
  VDIT_CHECK(device.is_cuda(), ErrorCode::invalid_argument, "CUDA allocator: {} is not a CUDA device",
             device.to_string());
  const CurrentDevice current(device.index);
  check(current.status(), device, "cudaSetDevice");
  const cudaMemPool_t pool = caching_pool(device);
  const size_t size = bytes ? bytes : 1;
  void* p = nullptr;
  cudaError_t err = pool ? cudaMallocFromPoolAsync(&p, size, pool, nullptr) : cudaMalloc(&p, size);
  if (err == cudaErrorMemoryAllocation && pool) {
    // The cache may hold enough in pieces of the wrong sizes: wait for pending frees, give the cache
    // back to the driver, and try once more.
    cudaGetLastError();
    check(cudaDeviceSynchronize(), device, "cudaDeviceSynchronize");
    check(cudaMemPoolTrimTo(pool, 0), device, "cudaMemPoolTrimTo");
    err = cudaMallocFromPoolAsync(&p, size, pool, nullptr);
  }
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    fail(ErrorCode::cuda, "CUDA allocator: {} bytes on {}: {} ({} of {} bytes free)", bytes, device.to_string(),
         cudaGetErrorString(err), free, total);
  }
  const bool pooled = pool != nullptr;
  return std::shared_ptr<void>(p, [index = device.index, pooled](void* q) { free_memory(index, q, pooled); });
}

CudaMemoryStats cuda_memory_stats(Device device) {
  const CurrentDevice current(device.index);
  check(current.status(), device, "cudaSetDevice");
  CudaMemoryStats stats;
  const cudaMemPool_t pool = caching_pool(device);
  if (!pool) {
    size_t free = 0, total = 0;
    check(cudaMemGetInfo(&free, &total), device, "cudaMemGetInfo");
    stats.used = stats.used_peak = stats.reserved = stats.reserved_peak = total - free;
    return stats;
  }
  stats.used = pool_attribute(pool, cudaMemPoolAttrUsedMemCurrent, device);
  stats.used_peak = pool_attribute(pool, cudaMemPoolAttrUsedMemHigh, device);
  stats.reserved = pool_attribute(pool, cudaMemPoolAttrReservedMemCurrent, device);
  stats.reserved_peak = pool_attribute(pool, cudaMemPoolAttrReservedMemHigh, device);
  return stats;
}

void reset_cuda_memory_peaks(Device device) {
  const CurrentDevice current(device.index);
  check(current.status(), device, "cudaSetDevice");
  const cudaMemPool_t pool = caching_pool(device);
  if (!pool) return;
  uint64_t zero = 0;  // the only value these attributes take: the peak restarts from the current value
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero), device, "reset UsedMemHigh");
  zero = 0;
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero), device, "reset ReservedMemHigh");
}

void release_cuda_cache(Device device) {
  const CurrentDevice current(device.index);
  check(current.status(), device, "cudaSetDevice");
  check(cudaDeviceSynchronize(), device, "cudaDeviceSynchronize");
  if (const cudaMemPool_t pool = caching_pool(device)) check(cudaMemPoolTrimTo(pool, 0), device, "cudaMemPoolTrimTo");
}

}  // namespace vdit
