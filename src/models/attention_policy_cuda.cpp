#include "models/attention_policy_cuda.h"

#include <algorithm>
#include <vector>

#include <cuda_runtime_api.h>

#include "attention/attention_cuda.h"
#include "kernels/cuda/profiler.h"
#include "ops/op_timeline.h"

namespace vdit::policy_cuda {
namespace {

// Fresh tensors shaped like each of `like`, on its device.
std::vector<Tensor> empty_like(std::span<const Tensor> like) {
  std::vector<Tensor> out;
  for (const Tensor& t : like) out.push_back(Tensor::empty(t.shape(), t.dtype(), t.device()));
  return out;
}

void check_cuda(cudaError_t error, const char* what) {
  VDIT_CHECK(error == cudaSuccess, ErrorCode::cuda, "{}: {}", what, cudaGetErrorString(error));
}

}  // namespace

Tensor attend_masked(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                     const VideoLayout& layout, const GpuBlockMask& mask, const Tensor& permute) {
  if (!permute.defined()) return attention(q, k, v, mask, 0.0f, nullptr, ctx.stream);
  const std::vector<Tensor> in = {q.contiguous(), k.contiguous(), v.contiguous()};
  const std::vector<Tensor> gathered = empty_like(in);
  const Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  // O comes back in frame-major order. On sm90 only the permuted slots are gathered (the kernel reads
  // the others from the frame-major tensors) and there is no scatter pass.
  const bool sm90 = flash_kernel_available(FlashKernel::sm90, q.device()) && q.dtype() != DType::f32;
  gather_to_token_major_gpu(in, gathered, layout, permute, ctx.stream, sm90);
  mark_op(ctx, "attention: gather to token-major");
  const TokenMajorSlots token_major{permute, layout, sm90 ? gathered.data() : nullptr};
  if (sm90) {
    attention_cuda(in[0], in[1], in[2], &mask, 0.0f, out, nullptr, ctx.stream, FlashKernel::sm90, &token_major);
  } else {
    attention_cuda(gathered[0], gathered[1], gathered[2], &mask, 0.0f, out, nullptr, ctx.stream,
                   FlashKernel::automatic, &token_major);
  }
  return out;
}

bool ProfiledGpu::supports(const Tensor& q, std::span<const Pattern> candidates) {
  if (!q.defined() || !q.device().is_cuda() || q.rank() != 4) return false;
  if (q.dtype() != DType::bf16 && q.dtype() != DType::f16) return false;
  const int64_t d = q.size(3);
  if (d != 64 && d != 96 && d != 128) return false;
  if (candidates.empty() || candidates.size() > static_cast<size_t>(cuda::kProfileMaxCandidates)) return false;
  return std::none_of(candidates.begin(), candidates.end(),
                      [](const Pattern& c) { return c.kind == Pattern::Kind::tile; });
}

Tensor ProfiledGpu::attend(const ExecContext& ctx, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                           const VideoLayout& layout, const ProfiledOptions& options, Tensor* choice,
                           std::vector<double>* code_density) {
  const ProfileOptions& po = options.profile;
  const std::span<const Pattern> candidates = options.candidates;
  if (!have_patterns_ || patterns_.layout != layout || patterns_.block_q != po.block_q ||
      patterns_.block_k != po.block_k || patterns_.table.device() != ctx.device ||
      !std::equal(patterns_.candidates.begin(), patterns_.candidates.end(), candidates.begin(), candidates.end())) {
    patterns_ = make_gpu_patterns(layout, candidates, po.block_q, po.block_k, ctx.device);
    // One slot's density under each code, as BlockMask::density computes it (partial edge blocks
    // weighted by their extent): the host masks are built once per layout.
    code_density_.assign(1, 1.0);
    for (const Pattern& c : candidates)
      code_density_.push_back(build_block_mask(layout, c, 1, po.block_q, po.block_k).density());
    have_patterns_ = true;
    have_profile_ = false;
  }
  const int batch = static_cast<int>(q_in.size(0)), heads = static_cast<int>(q_in.size(2));
  const int head_dim = static_cast<int>(q_in.size(3));
  if (!have_profile_ || profile_.batch != batch || profile_.heads != heads || profile_.head_dim != head_dim ||
      profile_.dtype != q_in.dtype() ||
      profile_.options.sample_rows != po.sample_rows || profile_.options.seed != po.seed) {
    profile_ = allocate_gpu_profile(patterns_, batch, heads, head_dim, q_in.dtype(), po);
    // Code -1 (dense) only comes from the dense fallback.
    mask_ = allocate_gpu_block_mask(patterns_, batch * heads, po.dense_fallback > 0.0);
    have_profile_ = true;
  }
  const Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  profile_heads_gpu(q, k, v, patterns_, po, profile_, ctx.stream);
  mark_op(ctx, "attention: profiler");
  build_block_mask_gpu(patterns_, profile_.choice, mask_, ctx.stream);
  // The record's copy of the codes: device to device on the stream (the profile's buffer is reused
  // by the next call); the host reads it when the records are asked for.
  *choice = Tensor::empty(profile_.choice.shape(), DType::i32, ctx.device);
  check_cuda(cudaMemcpyAsync(choice->raw_data(), profile_.choice.raw_data(), profile_.choice.nbytes(),
                             cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(ctx.stream)),
             "profiled policy: copy of the slot codes");
  *code_density = code_density_;
  mark_op(ctx, "attention: mask builder");
  return attend_masked(ctx, q, k, v, layout, mask_, profile_.permute);
}

void synchronize() { check_cuda(cudaDeviceSynchronize(), "profiled policy: waiting for the choices"); }

}  // namespace vdit::policy_cuda
