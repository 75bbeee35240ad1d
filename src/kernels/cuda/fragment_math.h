// Register-level helpers the mma.sync and wgmma kernels share: two floats packed into one register
// of 16-bit values (P as an MMA operand, the output), the fast base-2 exponential of the online
// softmax, and an L2 policy for streamed loads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace vdit::cuda {

// Two floats -> one register of two 16-bit values, the first in the low half.
template <bool kBf16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (kBf16) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

// 2^x by ex2.approx.ftz (denormal inputs and results flush to zero).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// An L2 eviction policy (sm_80 on) for loads of data read once, the profilers' K and V: their lines
// go first, so the partial records the combine reads next stay in L2.
__device__ __forceinline__ uint64_t l2_evict_first() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

}  // namespace vdit::cuda
