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

}  // namespace vdit
