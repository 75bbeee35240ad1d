// TMA tensor maps of [B, S, H, D] tensors of 16-bit elements, for the sm_90a kernels (the flash
// forward and the profiler's partial-output kernel). Host code; the driver's cuTensorMapEncodeTiled
// is reached through the runtime, so nothing links against libcuda.
#pragma once

#include <cuda.h>  // CUtensorMap and its enums only

#include <cstdint>

namespace vdit::cuda {

// Strides in elements; batch_stride is not read when batch == 1.
struct HeadMajorTensor {
  const void* data = nullptr;
  bool bf16 = true;
  int head_dim = 0, heads = 0, tokens = 0, batch = 0;
  int64_t batch_stride = 0, row_stride = 0, head_stride = 0;
};

// The tensor as a 4-d map (D, H, S, B) with boxes of `chunk` columns (64: 128-byte swizzle; 32:
// 64-byte) x `rows` rows of one head; rows past S read as zeros. `l2_promotion`: L2 fetches of 256
// bytes (the flash kernel, whose tiles other CTAs read again) or 128 (a row of one head at d = 64:
// 256 would fetch the next head's row too, which a single pass does not want). CUDA_SUCCESS, or
// the driver's error (CUDA_ERROR_NOT_FOUND: the driver has no cuTensorMapEncodeTiled).
CUresult make_head_tensor_map(CUtensorMap* map, const HeadMajorTensor& t, int rows, int chunk,
                              CUtensorMapL2promotion l2_promotion = CU_TENSOR_MAP_L2_PROMOTION_L2_256B);

}  // namespace vdit::cuda
