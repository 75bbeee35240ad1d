// Scalar activations shared by the CPU kernels (linear epilogues and element-wise ops).
#pragma once

#include <cmath>

#include "ops/ops.h"

namespace vdit::ops {

inline float gelu_tanh_scalar(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

inline float silu_scalar(float x) { return x / (1.0f + std::exp(-x)); }

inline float activate(Activation activation, float x) {
  switch (activation) {
    case Activation::none: return x;
    case Activation::gelu_tanh: return gelu_tanh_scalar(x);
    case Activation::silu: return silu_scalar(x);
  }
  return x;
}

}  // namespace vdit::ops
