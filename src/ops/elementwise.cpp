#include "ops/activation.h"
#include "ops/common.h"

namespace vdit {
namespace {

constexpr int64_t kChunk = 4096;  // elements per parallel work item

template <typename F>
Tensor map_elements(const ExecContext& ctx, const Tensor& x, const char* op, F f) {
  ops::check_input(ctx, x, op, "x");
  ops::require_cpu(ctx, op);
  Tensor xs = ops::f32_dense(x);
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  const float* xp = xs.data<float>();
  float* yp = y.data<float>();
  const int64_t n = x.numel();
  ops::for_rows(ctx, (n + kChunk - 1) / kChunk, kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * kChunk; i < std::min(n, end * kChunk); ++i) yp[i] = f(xp[i]);
  });
  return y;
}

}  // namespace

Tensor gelu_tanh(const ExecContext& ctx, const Tensor& x) {
  return map_elements(ctx, x, "gelu_tanh", ops::gelu_tanh_scalar);
}

Tensor silu(const ExecContext& ctx, const Tensor& x) { return map_elements(ctx, x, "silu", ops::silu_scalar); }

Tensor add(const ExecContext& ctx, const Tensor& a, const Tensor& b) {
  ops::check_input(ctx, a, "add", "a");
  ops::check_input(ctx, b, "add", "b");
  ops::check_shape(b, a.shape(), "add", "b");
  ops::require_cpu(ctx, "add");
  Tensor as = ops::f32_dense(a), bs = ops::f32_dense(b);
  Tensor y = Tensor::empty(a.shape(), DType::f32);
  const float *ap = as.data<float>(), *bp = bs.data<float>();
  float* yp = y.data<float>();
  const int64_t n = a.numel();
  ops::for_rows(ctx, (n + kChunk - 1) / kChunk, kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin * kChunk; i < std::min(n, end * kChunk); ++i) yp[i] = ap[i] + bp[i];
  });
  return y;
}

}  // namespace vdit
