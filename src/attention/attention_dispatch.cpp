// vdit::attention: the CPU reference for CPU tensors, the flash kernels (attention_cuda.cpp) for
// CUDA tensors. Built everywhere; without CUDA the GPU path reports `unsupported`.
#include <algorithm>
#include <climits>

#include "vdit/attention.h"

#ifdef VDIT_HAVE_CUDA
#include "attention/attention_cuda.h"
#endif

namespace vdit {
namespace {

bool any_cuda(const Tensor& q, const Tensor& k, const Tensor& v) {
  return (q.defined() && q.device().is_cuda()) || (k.defined() && k.device().is_cuda()) ||
         (v.defined() && v.device().is_cuda());
}

Tensor attention_gpu(const Tensor& q, const Tensor& k, const Tensor& v, const GpuBlockMask* mask, float scale,
                     Tensor* lse, void* stream) {
#ifdef VDIT_HAVE_CUDA
  VDIT_CHECK(q.defined(), ErrorCode::invalid_argument, "attention: q is undefined");
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  attention_cuda(q, k, v, mask, scale, out, lse, stream);
  return out;
#else
  (void)k, (void)v, (void)mask, (void)scale, (void)lse, (void)stream;
  fail(ErrorCode::unsupported, "attention: q is on {}; GPU attention needs a build with CUDA (-DVDIT_CUDA=ON)",
       q.device().to_string());
#endif
}

}  // namespace

GpuBlockMask upload_block_mask(const BlockMask& mask, Device device) {
  mask.validate();
  VDIT_CHECK(mask.kept_tiles() <= INT_MAX, ErrorCode::unsupported,
             "upload_block_mask: {} kept tiles, more than the GPU kernels' int32 CSR holds", mask.kept_tiles());
  Tensor offsets = Tensor::empty({static_cast<int64_t>(mask.row_offsets.size())}, DType::i32);
  std::transform(mask.row_offsets.begin(), mask.row_offsets.end(), offsets.data<int32_t>(),
                 [](int64_t offset) { return static_cast<int32_t>(offset); });
  Tensor blocks = Tensor::empty({std::max<int64_t>(mask.kept_tiles(), 1)}, DType::i32);
  std::copy(mask.key_blocks.begin(), mask.key_blocks.end(), blocks.data<int32_t>());
  GpuBlockMask gpu;
  gpu.tokens = mask.tokens;
  gpu.block_q = mask.block_q;
  gpu.block_k = mask.block_k;
  gpu.slots = mask.heads;
  gpu.row_offsets = offsets.to(device);
  gpu.key_blocks = blocks.to(device);
  return gpu;
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options, Tensor* lse,
                 void* stream) {
  if (!any_cuda(q, k, v)) return attention_reference(q, k, v, options, lse);
  if (options.mask == nullptr) return attention_gpu(q, k, v, nullptr, options.scale, lse, stream);
  const GpuBlockMask mask = upload_block_mask(*options.mask, q.device());
  return attention_gpu(q, k, v, &mask, options.scale, lse, stream);
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const GpuBlockMask& mask, float scale,
                 Tensor* lse, void* stream) {
  VDIT_CHECK(any_cuda(q, k, v), ErrorCode::invalid_argument,
             "attention: a GpuBlockMask needs CUDA tensors; for CPU tensors pass the host BlockMask");
  return attention_gpu(q, k, v, &mask, scale, lse, stream);
}

}  // namespace vdit
