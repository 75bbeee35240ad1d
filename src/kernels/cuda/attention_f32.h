// Attention forward in f32 on the CUDA cores: the f32 path of vdit::attention, where the flash
// kernels (flash_fwd.h) are bf16/f16 tensor-core kernels. Plain f32 FMA math (no tensor cores, no
// TF32), so that f32 models keep f32 accuracy. Same params (flash_params.h, with `f32` set) and the
// same semantics as flash_fwd_sm80: dense and block-sparse (CSR), masks per head or per (batch,
// head), K/V of another length than Q without a mask, optional LSE, rows with no kept key block
// O = 0 and LSE = -inf. Mask blocks may be any size; data need not be 16-byte aligned.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/flash_params.h"

namespace vdit::cuda {

bool attention_f32_supports(const FlashParams& params);
// Enqueues on `stream`; launch errors stay for cudaGetLastError.
void attention_f32(const FlashParams& params, cudaStream_t stream);

}  // namespace vdit::cuda
