#include "kernels/cuda/sm90_device.h"

#include <cuda_runtime_api.h>

namespace vdit::cuda {

bool is_sm90_device(int index) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, index) != cudaSuccess)
    return false;
  return major == 9 && minor == 0;
}

bool current_device_is_sm90() {
  int device = 0;
  return cudaGetDevice(&device) == cudaSuccess && is_sm90_device(device);
}

}  // namespace vdit::cuda
