// cross_attention on CUDA. bf16/f16 with head dim 64, 96 or 128: the dense flash kernel
// (vdit::attention, K/V of another length than Q), which never writes the scores out. Otherwise,
// per batch item and chunk of queries, scores S = scale Q K^T for all heads in one batched cuBLASLt
// call (f32 out), a row softmax into P (the inputs' dtype), and O = P V in a second batched call.
// Heads are the batch: their matrices sit D elements apart in [.., H, D] rows.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "ops/blas_cuda.h"
#include "ops/common.h"
#include "ops/kernels_cuda.h"
#include "ops/ops_cuda.h"
#include "vdit/attention.h"

namespace vdit::ops::cuda {
namespace {

constexpr int64_t kScoreFloats = int64_t{1} << 26;  // f32 scores held at once (256 MiB)

kernels::Float float_of(DType dtype) {
  return dtype == DType::f32 ? kernels::Float::f32 : dtype == DType::f16 ? kernels::Float::f16 : kernels::Float::bf16;
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0; }

// What the flash kernel takes (contiguous inputs are checked by the caller): 16-bit floats, its
// head dims, 16-byte aligned data, a positive scale.
bool flash_applies(const Tensor& q, const Tensor& k, const Tensor& v, float scale) {
  const int64_t dim = q.size(3);
  return (q.dtype() == DType::bf16 || q.dtype() == DType::f16) && (dim == 64 || dim == 96 || dim == 128) &&
         aligned16(q) && aligned16(k) && aligned16(v) && scale > 0.0f;
}

}  // namespace

Tensor cross_attention(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v, float scale) {
  const DType dtype = q.dtype();
  for (const auto& [t, arg] : {std::pair{&q, "q"}, std::pair{&k, "k"}, std::pair{&v, "v"}}) {
    VDIT_CHECK(t->dtype() == dtype && t->is_contiguous(), ErrorCode::invalid_argument,
               "cross_attention on CUDA: {} is {}, expected a contiguous {} tensor", arg, t->describe(),
               dtype_name(dtype));
  }
  if (flash_applies(q, k, v, scale)) {
    vdit::AttentionOptions options;
    options.scale = scale;
    return vdit::attention(q, k, v, options, nullptr, ctx.stream);
  }
  const cudaDataType_t type = blas_type(dtype, "cross_attention");
  const int64_t batch = q.size(0), sq = q.size(1), heads = q.size(2), dim = q.size(3), sk = k.size(1);
  const int64_t ld = heads * dim, esize = static_cast<int64_t>(dtype_size(dtype));
  const int h = static_cast<int>(heads);
  Tensor out = Tensor::empty(q.shape(), dtype, ctx.device);
  const int64_t chunk = std::max<int64_t>(1, std::min(sq, kScoreFloats / (heads * sk)));
  const Tensor scores = Tensor::empty(Shape{heads, chunk, sk}, DType::f32, ctx.device);
  const Tensor probs = Tensor::empty(Shape{heads, chunk, sk}, dtype, ctx.device);
  auto at = [&](const Tensor& t, int64_t element) { return static_cast<char*>(t.raw_data()) + element * esize; };
  MatmulOptions scaled;
  scaled.transpose_a = true;
  scaled.alpha = scale;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i0 = 0; i0 < sq; i0 += chunk) {
      const int64_t rows = std::min(chunk, sq - i0), first = (b * sq + i0) * ld;
      // S^T (sk x rows per head) = K^T-op(K) Q^T: K stored D x sk, Q stored D x rows, both with ld H*D.
      matmul(ctx, "cross_attention", at(k, b * sk * ld), {type, dim, sk, ld, h, dim}, at(q, first),
             {type, dim, rows, ld, h, dim}, scores.raw_data(), {CUDA_R_32F, sk, rows, sk, h, rows * sk}, scaled);
      const cudaError_t err = kernels::softmax_rows(float_of(dtype), static_cast<const float*>(scores.raw_data()),
                                                    probs.raw_data(), heads * rows, sk, static_cast<cudaStream_t>(ctx.stream));
      VDIT_CHECK(err == cudaSuccess, ErrorCode::cuda, "cross_attention on CUDA: softmax: {}", cudaGetErrorString(err));
      // O^T (D x rows per head) = V^T P^T: V stored D x sk (ld H*D), P stored sk x rows.
      matmul(ctx, "cross_attention", at(v, b * sk * ld), {type, dim, sk, ld, h, dim}, probs.raw_data(),
             {type, sk, rows, sk, h, rows * sk}, at(out, first), {type, dim, rows, ld, h, dim}, MatmulOptions{});
    }
  }
  return out;
}

}  // namespace vdit::ops::cuda
