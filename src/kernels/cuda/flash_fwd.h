// Flash-attention forward launchers, dense and block-sparse, one per architecture path. Each takes
// the one params struct (flash_params.h), enqueues on `stream` and leaves launch errors to
// cudaGetLastError. Callers check `*_supports` first; attention_cuda.cpp picks the path.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/flash_params.h"

namespace vdit::cuda {

// sm_80 path (mma.sync, cp.async): runs on every GPU from sm_80 on, H100 included. Query tiles are
// 128 rows; key tiles 128 (d = 64) or 64 (d = 96, 128), so mask blocks must be multiples of 128.
inline constexpr int kSm80BlockQ = 128;
inline constexpr int kSm80MaskBlockMultiple = 128;
bool flash_fwd_sm80_supports(const FlashParams& params);
void flash_fwd_sm80(const FlashParams& params, cudaStream_t stream);

// sm_90a path (wgmma, TMA, producer/consumer warpgroups): flash_fwd_sm90.cu. Hopper only.
bool flash_fwd_sm90_supports(const FlashParams& params);
void flash_fwd_sm90(const FlashParams& params, cudaStream_t stream);

}  // namespace vdit::cuda
