// The attention policy's GPU path (attention_policy_cuda.cpp, CUDA builds only): the permutation and
// the attention run on the GPU, under masks the policy's MaskCache uploaded, and the profiled policy's
// profiler -> mask builder -> permutation -> attention chain runs on the GPU with no host round trip.
#pragma once

#include <span>
#include <vector>

#include "models/attention_policy.h"

namespace vdit::policy_cuda {

// O of q, k, v [B, S, H, D] on the GPU under an uploaded `mask` (H or B*H slots), the slots whose
// flag in `permute` (u8 on the GPU; undefined: none) is set gathered to token-major order around the call.
Tensor attend_masked(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                     const VideoLayout& layout, const GpuBlockMask& mask, const Tensor& permute);

// The profiled policy on the GPU: profile_heads_gpu picks each (batch item, head) slot's code,
// build_block_mask_gpu builds the B*H-slot mask from the codes and the profiler's permute flags drive
// the gather/scatter around the flash attention, all enqueued on ctx.stream without waiting.
// Holds the GPU patterns, profile buffers and mask of the last layout and shape it was called with
// (rebuilt when either changes); consecutive calls reuse them in stream order, so calls sharing one
// object must run on one stream (or on blocking streams).
class ProfiledGpu {
 public:
  // Whether the GPU profiler takes this call: q bf16 or f16, head dim 64, 96 or 128, 1 to 3
  // candidates of dense, spatial and temporal kinds. Otherwise the policy profiles on host copies.
  static bool supports(const Tensor& q, std::span<const Pattern> candidates);

  // O of q, k, v [B, S, H, D] under the profiled patterns. `choice` receives a fresh GPU copy of the
  // slot codes (i32 [B*H], -1 dense, else an index into options.candidates), enqueued on the stream
  // and not waited for; `code_density` the density of one slot under each code (index code + 1),
  // as BlockMask::density computes it, so the record's density is the mean over the slots' codes.
  Tensor attend(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v, const VideoLayout& layout,
                const ProfiledOptions& options, Tensor* choice, std::vector<double>* code_density);

 private:
  bool have_patterns_ = false;
  GpuPatterns patterns_;
  std::vector<double> code_density_;
  GpuProfile profile_;
  GpuBlockMask mask_;
  bool have_profile_ = false;
};

// Waits for all work on the current GPU (the policy's records read back the choices after it).
void synchronize();

}  // namespace vdit::policy_cuda
