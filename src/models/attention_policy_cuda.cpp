#include "models/attention_policy_cuda.h"

#include <algorithm>
#include <vector>

namespace vdit::policy_cuda {
namespace {

// Fresh tensors shaped like each of `like`, on its device.
std::vector<Tensor> empty_like(std::span<const Tensor> like) {
  std::vector<Tensor> out;
  for (const Tensor& t : like) out.push_back(Tensor::empty(t.shape(), t.dtype(), t.device()));
  return out;
}

}  // namespace

Tensor attend_masked(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                     const VideoLayout& layout, const GpuBlockMask& mask, const Tensor& permute) {
  if (!permute.defined()) return attention(q, k, v, mask, 0.0f, nullptr, ctx.stream);
  const std::vector<Tensor> in = {q.contiguous(), k.contiguous(), v.contiguous()};
  const std::vector<Tensor> gathered = empty_like(in);
  gather_to_token_major_gpu(in, gathered, layout, permute, ctx.stream);
  const std::vector<Tensor> o = {attention(gathered[0], gathered[1], gathered[2], mask, 0.0f, nullptr, ctx.stream)};
  const std::vector<Tensor> out = empty_like(o);
  scatter_from_token_major_gpu(o, out, layout, permute, ctx.stream);
  return out[0];
}

}  // namespace vdit::policy_cuda
