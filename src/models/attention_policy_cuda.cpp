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
                     const VideoLayout& layout, const BlockMask& mask, std::span<const uint8_t> permute) {
  const GpuBlockMask gpu_mask = upload_block_mask(mask, ctx.device);
  if (std::none_of(permute.begin(), permute.end(), [](uint8_t p) { return p != 0; }))
    return attention(q, k, v, gpu_mask, 0.0f, nullptr, ctx.stream);

  Tensor host_flags = Tensor::empty(Shape{static_cast<int64_t>(permute.size())}, DType::u8);
  std::copy(permute.begin(), permute.end(), host_flags.data<uint8_t>());
  const Tensor flags = host_flags.to(ctx.device);
  const std::vector<Tensor> in = {q.contiguous(), k.contiguous(), v.contiguous()};
  const std::vector<Tensor> gathered = empty_like(in);
  gather_to_token_major_gpu(in, gathered, layout, flags, ctx.stream);
  const std::vector<Tensor> o = {attention(gathered[0], gathered[1], gathered[2], gpu_mask, 0.0f, nullptr, ctx.stream)};
  const std::vector<Tensor> out = empty_like(o);
  scatter_from_token_major_gpu(o, out, layout, flags, ctx.stream);
  return out[0];
}

}  // namespace vdit::policy_cuda
