// The model tests' side of the diffusers reference fixtures (scripts/make_reference_fixtures.py):
// the inputs a reference.safetensors holds, and the error of an output against its "expected".
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "io/safetensors.h"
#include "models/model.h"

namespace vdit::test {

inline ModelInputs reference_inputs(const SafetensorsFile& file) {
  return {file.tensor("hidden_states"), file.tensor("timestep"), file.tensor("encoder_hidden_states")};
}

// ||actual - expected|| / ||expected|| over the elements as f32, accumulated in double; `actual`
// may be on the GPU. The shapes must match.
inline double relative_l2(const Tensor& actual, const Tensor& expected) {
  const Tensor a = actual.to(Device::cpu()).to(DType::f32).contiguous();
  const Tensor e = expected.to(Device::cpu()).to(DType::f32).contiguous();
  EXPECT_EQ(a.shape(), e.shape());
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < std::min(a.numel(), e.numel()); ++i) {
    const double d = a.data<float>()[i] - e.data<float>()[i];
    diff += d * d;
    norm += static_cast<double>(e.data<float>()[i]) * e.data<float>()[i];
  }
  return std::sqrt(diff / norm);
}

}  // namespace vdit::test
