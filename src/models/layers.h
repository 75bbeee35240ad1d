// The weight groups the models are built from, bound by checkpoint name prefix.
#pragma once

#include <string>

#include "models/weights.h"
#include "ops/ops.h"

namespace vdit {

// nn.Linear: "<prefix>.weight" [out, in] and, with bias, "<prefix>.bias" [out].
struct LinearLayer {
  Tensor weight, bias;

  static LinearLayer bind(WeightBinder& weights, const std::string& prefix, int64_t in, int64_t out,
                          bool with_bias = true) {
    return {weights.take(prefix + ".weight", {out, in}), with_bias ? weights.take(prefix + ".bias", {out}) : Tensor()};
  }
  Tensor operator()(const ExecContext& ctx, const Tensor& x, Activation activation = Activation::none) const {
    return linear(ctx, x, weight, bias, activation);
  }
};

// nn.LayerNorm / nn.RMSNorm affine parameters: "<prefix>.weight" [dim] and, for LayerNorm with
// bias, "<prefix>.bias" [dim]; both undefined for a norm without affine.
struct NormLayer {
  Tensor weight, bias;

  static NormLayer bind(WeightBinder& weights, const std::string& prefix, int64_t dim, bool with_bias = true) {
    return {weights.take(prefix + ".weight", {dim}), with_bias ? weights.take(prefix + ".bias", {dim}) : Tensor()};
  }
};

// A model input converted to the model's dtype on the context's device.
inline Tensor model_input(const ExecContext& ctx, const Tensor& t, DType dtype) {
  if (t.device() == ctx.device) return cast(ctx, t, dtype);
  return cast(ctx, (t.device().is_cpu() ? t.to(dtype).contiguous() : t).to(ctx.device), dtype);
}

}  // namespace vdit
