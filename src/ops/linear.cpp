#include <cblas.h>

#include <cmath>

#include "ops/activation.h"
#include "ops/common.h"
#include "ops/op_timeline.h"

#ifdef VDIT_HAVE_CUDA
#include "ops/ops_cuda.h"
#endif

namespace vdit {

Tensor linear(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
              Activation activation) {
  ops::check_input(ctx, x, "linear", "x");
  ops::check_input(ctx, weight, "linear", "weight");
  VDIT_CHECK(x.rank() >= 1 && weight.rank() == 2 && x.size(-1) == weight.size(1), ErrorCode::invalid_argument,
             "linear: x {} does not match weight {} ([out, in])", x.shape().to_string(),
             weight.shape().to_string());
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  // "linear 32760x1536->8960 gelu_tanh": one category per product shape (named once the operands are checked).
  OpMark mark(ctx, ctx.timeline ? fmt::format("linear {}x{}->{}{}", rows, in, out,
                                              activation == Activation::gelu_tanh ? " gelu_tanh"
                                              : activation == Activation::silu    ? " silu"
                                                                                  : "")
                                : std::string());
  if (bias.defined()) {
    ops::check_input(ctx, bias, "linear", "bias");
    ops::check_shape(bias, Shape{out}, "linear", "bias");
  }
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::linear(ctx, x, weight, bias, activation);
#endif
  ops::require_cpu(ctx, "linear");

  Tensor xs = ops::f32_dense(x), ws = ops::f32_dense(weight);
  Tensor y = Tensor::empty(ops::with_last_dim(x.shape(), out), DType::f32);
  float* yp = y.data<float>();
  if (rows > 0 && out > 0) {
    if (in == 0) {
      std::fill(yp, yp + rows * out, 0.0f);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(out),
                  static_cast<int>(in), 1.0f, xs.data<float>(), static_cast<int>(in), ws.data<float>(),
                  static_cast<int>(in), 0.0f, yp, static_cast<int>(out));
    }
  }
  if (!bias.defined() && activation == Activation::none) return y;
  Tensor bs = bias.defined() ? ops::f32_dense(bias) : Tensor();
  const float* bp = bias.defined() ? bs.data<float>() : nullptr;
  ops::for_rows(ctx, rows, out, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = yp + r * out;
      for (int64_t j = 0; j < out; ++j) row[j] = ops::activate(activation, bp ? row[j] + bp[j] : row[j]);
    }
  });
  return y;
}

}  // namespace vdit
