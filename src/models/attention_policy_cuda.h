// The attention policy's GPU path (attention_policy_cuda.cpp, CUDA builds only): the permutation and
// the attention run on the GPU, under masks the policy's MaskCache uploaded.
#pragma once

#include <span>

#include "models/attention_policy.h"

namespace vdit::policy_cuda {

// O of q, k, v [B, S, H, D] on the GPU under an uploaded `mask` (H or B*H slots), the slots whose
// flag in `permute` (u8 on the GPU; undefined: none) is set gathered to token-major order around the call.
Tensor attend_masked(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                     const VideoLayout& layout, const GpuBlockMask& mask, const Tensor& permute);

}  // namespace vdit::policy_cuda
