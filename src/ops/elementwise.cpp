#include "ops/activation.h"
#include "ops/common.h"
#include "ops/op_timeline.h"

#ifdef VDIT_HAVE_CUDA
#include "ops/ops_cuda.h"
#endif

namespace vdit {
namespace {

constexpr int64_t kChunk = 4096;  // elements per parallel work item

// True when `b` (leading 1s dropped) equals the last dimensions of `a`.
bool trailing_shape_of(const Shape& b, const Shape& a) {
  int first = 0;
  while (first < b.rank() && b[first] == 1) ++first;
  const int n = b.rank() - first;
  if (n > a.rank()) return false;
  for (int i = 0; i < n; ++i)
    if (b[first + i] != a[a.rank() - n + i]) return false;
  return true;
}

Tensor map_activation(const ExecContext& ctx, const Tensor& x, const char* op, Activation activation) {
  OpMark mark(ctx, op);
  ops::check_input(ctx, x, op, "x");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::activation(ctx, x, activation);
#endif
  ops::require_cpu(ctx, op);
  Tensor xs = ops::f32_dense(x);
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  const float* xp = xs.data<float>();
  float* yp = y.data<float>();
  const int64_t n = x.numel();
  ops::for_rows(ctx, (n + kChunk - 1) / kChunk, kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * kChunk; i < std::min(n, end * kChunk); ++i) yp[i] = ops::activate(activation, xp[i]);
  });
  return y;
}

}  // namespace

Tensor gelu_tanh(const ExecContext& ctx, const Tensor& x) {
  return map_activation(ctx, x, "gelu_tanh", Activation::gelu_tanh);
}

Tensor silu(const ExecContext& ctx, const Tensor& x) { return map_activation(ctx, x, "silu", Activation::silu); }

Tensor add(const ExecContext& ctx, const Tensor& a, const Tensor& b) {
  OpMark mark(ctx, "add");
  ops::check_input(ctx, a, "add", "a");
  ops::check_input(ctx, b, "add", "b");
  VDIT_CHECK(trailing_shape_of(b.shape(), a.shape()), ErrorCode::invalid_argument,
             "add: b has shape {}, which does not repeat over a {}", b.shape().to_string(), a.shape().to_string());
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::add(ctx, a, b);
#endif
  ops::require_cpu(ctx, "add");
  Tensor as = ops::f32_dense(a), bs = ops::f32_dense(b);
  Tensor y = Tensor::empty(a.shape(), DType::f32);
  const float *ap = as.data<float>(), *bp = bs.data<float>();
  float* yp = y.data<float>();
  const int64_t n = a.numel(), period = b.numel();
  ops::for_rows(ctx, (n + kChunk - 1) / kChunk, kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * kChunk; i < std::min(n, end * kChunk); ++i) yp[i] = ap[i] + bp[i % period];
  });
  return y;
}

Tensor concat_tokens(const ExecContext& ctx, const Tensor& a, const Tensor& b) {
  OpMark mark(ctx, "concat_tokens");
  ops::check_input(ctx, a, "concat_tokens", "a");
  ops::check_input(ctx, b, "concat_tokens", "b");
  VDIT_CHECK(a.rank() == 3 && b.rank() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(2),
             ErrorCode::invalid_argument, "concat_tokens: a {} and b {} are not [B, N, D] of one B and D",
             a.shape().to_string(), b.shape().to_string());
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::concat_tokens(ctx, a, b);
#endif
  ops::require_cpu(ctx, "concat_tokens");
  const int64_t na = a.size(1), nb = b.size(1);
  Tensor y = Tensor::empty(Shape{a.size(0), na + nb, a.size(2)}, DType::f32);
  y.slice(1, 0, na).copy_from(a);
  y.slice(1, na, na + nb).copy_from(b);
  return y;
}

Tensor cast(const ExecContext& ctx, const Tensor& x, DType dtype) {
  OpMark mark(ctx, "cast");
  ops::check_input(ctx, x, "cast", "x");
  VDIT_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16, ErrorCode::invalid_argument,
             "cast: to {}, expected a float dtype", dtype_name(dtype));
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::cast(ctx, x, dtype);
#endif
  ops::require_cpu(ctx, "cast");
  return x.to(dtype).contiguous();
}

}  // namespace vdit
