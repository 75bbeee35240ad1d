// [B, S, H, D] CPU tensors read as f32 rows, one (batch item, head) at a time: what the CPU
// reference attention and the CPU profiler share.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vdit/tensor.h"

namespace vdit {

// "bf16[2, 3]": a tensor's dtype and shape, for error messages.
std::string shape_text(const Tensor& t);

// Row (b, s, h, :) of a float tensor [B, S, H, D] of any layout, as f32; `caller` starts the
// internal error raised for any dtype other than f32, f16 and bf16.
void load_row(const Tensor& x, int64_t b, int64_t s, int64_t h, float* out, const char* caller);

// One (batch, head) of K and V as contiguous f32: K transposed [D, Sk] so that the scores of a
// query against keys are an elementwise loop over keys (vectorisable without reordering sums), V
// as rows [Sk, D].
struct HeadKeys {
  std::vector<float> k_t, v;
  int64_t slot = -1;  // b * H + h held, -1 for none

  void load(const Tensor& k, const Tensor& v_in, int64_t b, int64_t h, const char* caller);
};

// out[x] += sum_t c[t] * row(t)[x] for x < n and t < count, the terms added one by one in order of
// t; row(t) points at row t. Four terms are folded into each output per pass, so that the
// vectorised loop over x loads and stores its output once per four multiply-adds.
template <class RowOf>
void add_weighted_rows(const float* c, int64_t count, RowOf row, int64_t n, float* out) {
  int64_t t = 0;
  for (; t + 4 <= count; t += 4) {
    const float *r0 = row(t), *r1 = row(t + 1), *r2 = row(t + 2), *r3 = row(t + 3);
    for (int64_t x = 0; x < n; ++x) {
      float acc = out[x];
      acc += c[t] * r0[x];
      acc += c[t + 1] * r1[x];
      acc += c[t + 2] * r2[x];
      acc += c[t + 3] * r3[x];
      out[x] = acc;
    }
  }
  for (; t < count; ++t) {
    const float* r = row(t);
    for (int64_t x = 0; x < n; ++x) out[x] += c[t] * r[x];
  }
}

}  // namespace vdit
