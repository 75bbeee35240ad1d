// Small helpers for the tests: seeded random tensors (the same values with every standard library),
// the relative L2 error in double, and checks of vdit::Error.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "vdit/tensor.h"

namespace vdit::test {

// splitmix64: a fixed generator, so test inputs never depend on the standard library.
inline uint64_t next_random(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1), 24 random bits.
inline float random_uniform(uint64_t& state) {
  return static_cast<float>(next_random(state) >> 40) * 0x1p-23f - 1.0f;
}

// A contiguous tensor of uniform values in [-scale, scale), rounded to `dtype`.
inline Tensor random_tensor(const Shape& shape, uint64_t seed, float scale = 1.0f,
                            DType dtype = DType::f32) {
  Tensor t = Tensor::empty(shape, DType::f32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = scale * random_uniform(seed);
  return t.to(dtype);
}

// The elements of any float tensor in row-major order, as double.
inline std::vector<double> to_doubles(const Tensor& t) {
  Tensor f = t.to(DType::f32).contiguous();
  const float* p = f.data<float>();
  return std::vector<double>(p, p + f.numel());
}

// ||got - want|| / ||want|| (0 when both are zero; infinity when the sizes differ).
inline double relative_l2_error(std::span<const double> got, std::span<const double> want) {
  if (got.size() != want.size()) return INFINITY;
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return norm == 0.0 ? std::sqrt(err) : std::sqrt(err / norm);
}

// `run` must throw a vdit::Error of `code` whose message contains every one of `parts`.
inline void expect_error(const std::function<void()>& run, ErrorCode code,
                         std::initializer_list<std::string> parts) {
  try {
    run();
    ADD_FAILURE() << "no error; expected one mentioning " << *parts.begin();
  } catch (const Error& e) {
    EXPECT_EQ(error_code_name(e.code()), std::string(error_code_name(code))) << e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "'" << part << "' not in: " << e.what();
    }
  }
}

// `run` must throw a vdit::Error of `code` whose message contains `text`.
inline void expect_error(const std::function<void()>& run, ErrorCode code, const std::string& text) {
  expect_error(run, code, {text});
}

}  // namespace vdit::test
