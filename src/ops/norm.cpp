#include <cmath>

#include "ops/common.h"
#include "ops/op_timeline.h"

#ifdef VDIT_HAVE_CUDA
#include "ops/ops_cuda.h"
#endif

namespace vdit {
namespace {

// Optional per-channel vectors of a norm, or the per-batch-item rows of an adaLN shift/scale/gate.
const float* data_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

void check_affine(const ExecContext& ctx, const Tensor& t, int64_t dim, const char* op, const char* arg) {
  if (!t.defined()) return;
  ops::check_input(ctx, t, op, arg);
  ops::check_shape(t, Shape{dim}, op, arg);
}

// shift/scale/gate: [B, D] for x [B, N, D].
void check_modulation(const ExecContext& ctx, const Tensor& x, const Tensor& t, const char* op, const char* arg) {
  ops::check_input(ctx, t, op, arg);
  ops::check_shape(t, Shape{x.size(0), x.size(2)}, op, arg);
}

void check_tokens(const ExecContext& ctx, const Tensor& x, const char* op, const char* arg) {
  ops::check_input(ctx, x, op, arg);
  VDIT_CHECK(x.rank() == 3, ErrorCode::invalid_argument, "{}: {} has shape {}, expected [B, N, D]", op, arg,
             x.shape().to_string());
}

// y = layer_norm(x) (with optional affine), then y * (1 + scale) + shift when scale is given.
void layer_norm_row(const float* x, float* y, int64_t d, float eps, const float* weight, const float* bias,
                    const float* shift, const float* scale) {
  float mean = 0.0f;
  for (int64_t i = 0; i < d; ++i) mean += x[i];
  mean /= static_cast<float>(d);
  float var = 0.0f;
  for (int64_t i = 0; i < d; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float inv = 1.0f / std::sqrt(var / static_cast<float>(d) + eps);
  for (int64_t i = 0; i < d; ++i) {
    float v = (x[i] - mean) * inv;
    if (weight) v *= weight[i];
    if (bias) v += bias[i];
    if (scale) v = v * (1.0f + scale[i]) + shift[i];
    y[i] = v;
  }
}

Tensor layer_norm_impl(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       float eps, const Tensor& shift, const Tensor& scale) {
  const int64_t d = x.size(-1), rows = d ? x.numel() / d : 0;
  const int64_t rows_per_item = scale.defined() ? x.size(1) : rows;
  Tensor xs = ops::f32_dense(x);
  Tensor w = weight.defined() ? ops::f32_dense(weight) : Tensor();
  Tensor b = bias.defined() ? ops::f32_dense(bias) : Tensor();
  Tensor sh = shift.defined() ? ops::f32_dense(shift) : Tensor();
  Tensor sc = scale.defined() ? ops::f32_dense(scale) : Tensor();
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  const float *xp = xs.data<float>(), *wp = data_or_null(w), *bp = data_or_null(b);
  const float *shp = data_or_null(sh), *scp = data_or_null(sc);
  float* yp = y.data<float>();
  ops::for_rows(ctx, rows, d, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t item = r / std::max<int64_t>(rows_per_item, 1);
      layer_norm_row(xp + r * d, yp + r * d, d, eps, wp, bp, shp ? shp + item * d : nullptr,
                     scp ? scp + item * d : nullptr);
    }
  });
  return y;
}

}  // namespace

Tensor layer_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  OpMark mark(ctx, "layer_norm");
  ops::check_input(ctx, x, "layer_norm", "x");
  check_affine(ctx, weight, x.size(-1), "layer_norm", "weight");
  check_affine(ctx, bias, x.size(-1), "layer_norm", "bias");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::layer_norm(ctx, x, weight, bias, eps, {}, {});
#endif
  ops::require_cpu(ctx, "layer_norm");
  return layer_norm_impl(ctx, x, weight, bias, eps, {}, {});
}

Tensor layer_norm_modulate(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           float eps, const Tensor& shift, const Tensor& scale) {
  OpMark mark(ctx, "layer_norm_modulate");
  check_tokens(ctx, x, "layer_norm_modulate", "x");
  check_affine(ctx, weight, x.size(-1), "layer_norm_modulate", "weight");
  check_affine(ctx, bias, x.size(-1), "layer_norm_modulate", "bias");
  check_modulation(ctx, x, shift, "layer_norm_modulate", "shift");
  check_modulation(ctx, x, scale, "layer_norm_modulate", "scale");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::layer_norm(ctx, x, weight, bias, eps, shift, scale);
#endif
  ops::require_cpu(ctx, "layer_norm_modulate");
  return layer_norm_impl(ctx, x, weight, bias, eps, shift, scale);
}

Tensor rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps) {
  OpMark mark(ctx, "rms_norm");
  ops::check_input(ctx, x, "rms_norm", "x");
  check_affine(ctx, weight, x.size(-1), "rms_norm", "weight");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::rms_norm(ctx, x, weight, eps);
#endif
  ops::require_cpu(ctx, "rms_norm");
  const int64_t d = x.size(-1), rows = d ? x.numel() / d : 0;
  Tensor xs = ops::f32_dense(x);
  Tensor w = weight.defined() ? ops::f32_dense(weight) : Tensor();
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  const float *xp = xs.data<float>(), *wp = data_or_null(w);
  float* yp = y.data<float>();
  ops::for_rows(ctx, rows, d, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = xp + r * d;
      float* yr = yp + r * d;
      float sum = 0.0f;
      for (int64_t i = 0; i < d; ++i) sum += xr[i] * xr[i];
      const float inv = 1.0f / std::sqrt(sum / static_cast<float>(d) + eps);
      for (int64_t i = 0; i < d; ++i) yr[i] = wp ? xr[i] * inv * wp[i] : xr[i] * inv;
    }
  });
  return y;
}

Tensor rms_norm_rope(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps, int64_t heads,
                     const RopeTable& table, int64_t token_offset) {
  OpMark mark(ctx, "rms_norm_rope");
  check_tokens(ctx, x, "rms_norm_rope", "x");
  check_affine(ctx, weight, x.size(-1), "rms_norm_rope", "weight");
  ops::check_rope_table(ctx, table, "rms_norm_rope");
  VDIT_CHECK(heads > 0 && x.size(2) == heads * 2 * table.pairs() && token_offset >= 0 &&
                 token_offset + table.tokens() <= x.size(1),
             ErrorCode::invalid_argument,
             "rms_norm_rope: x {} ([B, N, heads * D]) does not hold {} heads of dim {} for {} tokens from token {}",
             x.shape().to_string(), heads, 2 * table.pairs(), table.tokens(), token_offset);
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::rms_norm_rope(ctx, x, weight, eps, heads, table, token_offset);
#endif
  Tensor y = rms_norm(ctx, x, weight, eps).view({x.size(0), x.size(1), heads, x.size(2) / heads});
  apply_rope(ctx, y, table, token_offset);
  return y;
}

Tensor layer_norm_rope(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                       const RopeTable& table, int64_t token_offset) {
  OpMark mark(ctx, "layer_norm_rope");
  ops::check_input(ctx, x, "layer_norm_rope", "x");
  check_affine(ctx, weight, x.size(-1), "layer_norm_rope", "weight");
  check_affine(ctx, bias, x.size(-1), "layer_norm_rope", "bias");
  ops::check_rope_table(ctx, table, "layer_norm_rope");
  ops::check_rope_heads(x, table, token_offset, "layer_norm_rope");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::layer_norm_rope(ctx, x, weight, bias, eps, table, token_offset);
#endif
  Tensor y = layer_norm(ctx, x, weight, bias, eps);
  apply_rope(ctx, y, table, token_offset);
  return y;
}

Tensor modulate(const ExecContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale) {
  OpMark mark(ctx, "modulate");
  check_tokens(ctx, x, "modulate", "x");
  check_modulation(ctx, x, shift, "modulate", "shift");
  check_modulation(ctx, x, scale, "modulate", "scale");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::modulate(ctx, x, shift, scale);
#endif
  ops::require_cpu(ctx, "modulate");
  const int64_t n = x.size(1), d = x.size(2), rows = x.size(0) * n;
  Tensor xs = ops::f32_dense(x), sh = ops::f32_dense(shift), sc = ops::f32_dense(scale);
  Tensor y = Tensor::empty(x.shape(), DType::f32);
  const float *xp = xs.data<float>(), *shp = sh.data<float>(), *scp = sc.data<float>();
  float* yp = y.data<float>();
  ops::for_rows(ctx, rows, d, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float *xr = xp + r * d, *s = shp + (r / n) * d, *c = scp + (r / n) * d;
      float* yr = yp + r * d;
      for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * (1.0f + c[i]) + s[i];
    }
  });
  return y;
}

void gated_residual_add(const ExecContext& ctx, Tensor& x, const Tensor& y, const Tensor& gate) {
  OpMark mark(ctx, "gated_residual_add");
  check_tokens(ctx, x, "gated_residual_add", "x");
  ops::check_input(ctx, y, "gated_residual_add", "y");
  ops::check_shape(y, x.shape(), "gated_residual_add", "y");
  if (gate.defined()) check_modulation(ctx, x, gate, "gated_residual_add", "gate");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::gated_residual_add(ctx, x, y, gate);
#endif
  ops::require_cpu(ctx, "gated_residual_add");
  VDIT_CHECK(x.dtype() == DType::f32 && x.is_contiguous(), ErrorCode::invalid_argument,
             "gated_residual_add: x must be a contiguous f32 tensor on the CPU, got {}", x.describe());
  const int64_t n = x.size(1), d = x.size(2), rows = x.size(0) * n;
  Tensor ys = ops::f32_dense(y);
  Tensor g = gate.defined() ? ops::f32_dense(gate) : Tensor();
  float* xp = x.data<float>();
  const float *yp = ys.data<float>(), *gp = data_or_null(g);
  ops::for_rows(ctx, rows, d, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* xr = xp + r * d;
      const float* yr = yp + r * d;
      if (gp) {
        const float* gr = gp + (r / n) * d;
        for (int64_t i = 0; i < d; ++i) xr[i] += gr[i] * yr[i];
      } else {
        for (int64_t i = 0; i < d; ++i) xr[i] += yr[i];
      }
    }
  });
}

namespace {

void check_gated_add_norm(const ExecContext& ctx, const Tensor& x, const Tensor& y, const Tensor& gate,
                          const Tensor& weight, const Tensor& bias, const Tensor& shift, const Tensor& scale,
                          const char* op) {
  check_tokens(ctx, x, op, "x");
  ops::check_input(ctx, y, op, "y");
  ops::check_shape(y, x.shape(), op, "y");
  if (gate.defined()) check_modulation(ctx, x, gate, op, "gate");
  check_affine(ctx, weight, x.size(-1), op, "weight");
  check_affine(ctx, bias, x.size(-1), op, "bias");
  VDIT_CHECK(shift.defined() == scale.defined(), ErrorCode::invalid_argument,
             "{}: shift and scale must both be given or both be undefined", op);
  if (scale.defined()) {
    check_modulation(ctx, x, shift, op, "shift");
    check_modulation(ctx, x, scale, op, "scale");
  }
}

}  // namespace

Tensor gated_residual_add_layer_norm(const ExecContext& ctx, Tensor& x, const Tensor& y, const Tensor& gate,
                                     const Tensor& weight, const Tensor& bias, float eps, const Tensor& shift,
                                     const Tensor& scale) {
  OpMark mark(ctx, "gated_residual_add_layer_norm");
  check_gated_add_norm(ctx, x, y, gate, weight, bias, shift, scale, "gated_residual_add_layer_norm");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda())
    return ops::cuda::gated_residual_add_layer_norm(ctx, x, y, gate, weight, bias, eps, shift, scale);
#endif
  gated_residual_add(ctx, x, y, gate);
  return scale.defined() ? layer_norm_modulate(ctx, x, weight, bias, eps, shift, scale)
                         : layer_norm(ctx, x, weight, bias, eps);
}

void gated_residual_add_layer_norm_into(const ExecContext& ctx, const Tensor& out, Tensor& x, const Tensor& y,
                                        const Tensor& gate, const Tensor& weight, const Tensor& bias, float eps,
                                        const Tensor& shift, const Tensor& scale) {
  // Marked as the op it computes: the per-op times of a forward do not depend on where the output goes.
  OpMark mark(ctx, "gated_residual_add_layer_norm");
  const char* op = "gated_residual_add_layer_norm_into";
  check_gated_add_norm(ctx, x, y, gate, weight, bias, shift, scale, op);
  ops::check_input(ctx, out, op, "out");
  ops::check_shape(out, x.shape(), op, "out");
  VDIT_CHECK(out.dtype() == x.dtype(), ErrorCode::invalid_argument, "{}: out is {}, x is {}: one dtype expected", op,
             out.describe(), x.describe());
  VDIT_CHECK(out.stride(2) == 1 && out.stride(1) == out.size(2), ErrorCode::invalid_argument,
             "{}: out {} must have stride 1 along D and D between tokens (token stride {}, D stride {})", op,
             out.describe(), out.stride(1), out.stride(2));
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) {
    ops::cuda::gated_residual_add_layer_norm(ctx, x, y, gate, weight, bias, eps, shift, scale, &out);
    return;
  }
#endif
  gated_residual_add(ctx, x, y, gate);
  Tensor dst = out;
  dst.copy_from(scale.defined() ? layer_norm_modulate(ctx, x, weight, bias, eps, shift, scale)
                                : layer_norm(ctx, x, weight, bias, eps));
}

}  // namespace vdit
