// Scalar activations shared by the CPU ops and the CUDA kernels (linear epilogues, element-wise ops).
#pragma once

#include <math.h>

#include "ops/host_device.h"
#include "ops/op_types.h"

namespace vdit::ops {

VDIT_HOST_DEVICE inline float gelu_tanh_scalar(float x) {
  const float sqrt_2_over_pi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * (x + 0.044715f * x * x * x)));
}

VDIT_HOST_DEVICE inline float silu_scalar(float x) { return x / (1.0f + expf(-x)); }

VDIT_HOST_DEVICE inline float activate(Activation activation, float x) {
  switch (activation) {
    case Activation::none: return x;
    case Activation::gelu_tanh: return gelu_tanh_scalar(x);
    case Activation::silu: return silu_scalar(x);
  }
  return x;
}

}  // namespace vdit::ops
