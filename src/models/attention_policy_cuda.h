// The attention policy's GPU path (attention_policy_cuda.cpp, CUDA builds only): masks are uploaded,
// the permutation and the attention run on the GPU.
#pragma once

#include <span>

#include "models/attention_policy.h"

namespace vdit::policy_cuda {

// O of q, k, v [B, S, H, D] on the GPU under a host `mask` (H or B*H slots), the slots with
// permute[slot] set gathered to token-major order around the call.
Tensor attend_masked(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                     const VideoLayout& layout, const BlockMask& mask, std::span<const uint8_t> permute);

}  // namespace vdit::policy_cuda
