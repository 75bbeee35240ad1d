// Launchers of the CUDA op kernels (kernels_*.cu), called by the CUDA ops (ops_cuda.cpp). Plain
// pointers and small structs only: kernel sources include no vdit headers that pull in fmt, which
// nvcc cannot compile. Each launcher enqueues on `stream` and returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ops/op_types.h"
#include "ops/patch_index.h"

namespace vdit::ops::kernels {

enum class Float { f32, f16, bf16 };

struct NormArgs {
  int64_t rows = 0, dim = 0;
  int64_t rows_per_item = 1, mod_stride = 0;  // modulation rows: one per batch item of rows_per_item rows
  float eps = 0.0f;
  bool center = true;  // LayerNorm subtracts the mean; RMSNorm does not
  // With rope_cos set, the normalised row (of token row / rows_per_token % seq of its batch item)
  // is then rotated as rope() does, in heads of head_dim, when that token is in [rope_offset,
  // rope_offset + rope_tokens): rope_cos/rope_sin f32 [rope_tokens, head_dim / 2].
  const float* rope_cos = nullptr;
  const float* rope_sin = nullptr;
  int64_t seq = 1, rows_per_token = 1, rope_offset = 0, rope_tokens = 0, head_dim = 0;
  // Output rows: contiguous [rows, dim] when y_item_stride is 0, else batch items of y_tokens rows,
  // y_item_stride elements apart (a token range of a larger tensor). Not with RoPE.
  int64_t y_tokens = 0, y_item_stride = 0;
};

// y = norm(x) [* weight] [+ bias] [* (1 + scale) + shift] [rotated] per row of x [rows, dim]; null
// pointers skip terms.
cudaError_t norm(Float type, const void* x, void* y, const void* weight, const void* bias, const void* shift,
                 const void* scale, const NormArgs& args, cudaStream_t stream);

// x [B, N, D] contiguous; rows of shift/scale/gate [B, D] at `row_stride`; y at (y_item, y_token, 1).
struct TokenArgs {
  int64_t batch = 0, tokens = 0, dim = 0, row_stride = 0, y_item = 0, y_token = 0;
};
// gated_add(x, residual, gate, add) then norm(x, y, ...) with `args` as norm() takes them (x [add.batch *
// add.tokens, add.dim]), in one pass over x where the register-resident row kernel applies: each row of x
// is updated and stored as gated_add() stores it, and that stored value is normalised.
cudaError_t gated_add_norm(Float type, void* x, const void* residual, const void* gate, const TokenArgs& add, void* y,
                           const void* weight, const void* bias, const void* shift, const void* scale,
                           const NormArgs& args, cudaStream_t stream);
cudaError_t modulate(Float type, const void* x, void* y, const void* shift, const void* scale, const TokenArgs& args,
                     cudaStream_t stream);
// x += gate * y in place (gate null: 1).
cudaError_t gated_add(Float type, void* x, const void* y, const void* gate, const TokenArgs& args, cudaStream_t stream);

// y[i] = activation(x[i]); x == y works in place.
cudaError_t activation(Float type, const void* x, void* y, int64_t n, Activation activation, cudaStream_t stream);
// y[i] = x[i] converted from `from` to `to`.
cudaError_t convert(Float from, Float to, const void* x, void* y, int64_t n, cudaStream_t stream);
// y[i] = a[i] + b[i % period]
cudaError_t add(Float type, const void* a, const void* b, void* y, int64_t n, int64_t period, cudaStream_t stream);

// probs[r, :] = softmax(scores[r, :]) for rows of `cols` f32 scores, stored as `type`.
cudaError_t softmax_rows(Float type, const float* scores, void* probs, int64_t rows, int64_t cols, cudaStream_t stream);

// tokens [B, N, K] <-> a contiguous video, element by element through `index`.
cudaError_t patches(Float type, const void* from, void* to, const PatchIndexer& index, int64_t tokens, int64_t features,
                    bool to_tokens, cudaStream_t stream);

struct TimestepArgs {
  int64_t batch = 0;
  int dim = 0, half = 0, sin_at = 0, cos_at = 0;
  float log_period = 0.0f, denominator = 1.0f, scale = 1.0f;
};
// out f32 [B, dim], zeroed beforehand when dim is odd.
cudaError_t timestep_embedding(Float type, const void* timesteps, float* out, const TimestepArgs& args,
                               cudaStream_t stream);

struct RopeArgs {
  int64_t batch = 0, seq = 0, heads = 0, pairs = 0, tokens = 0, offset = 0;
};
// Rotates x [B, S, H, 2*pairs] in place at tokens [offset, offset + tokens) by cos/sin f32 [tokens, pairs].
cudaError_t rope(Float type, void* x, const float* cos_table, const float* sin_table, const RopeArgs& args,
                 cudaStream_t stream);

// A 3D RoPE table from its per-axis runs: token t = (f, h, w) of a frames x height x width grid gets,
// for each axis a, the axis_pairs[a] values of its position along a, in axis order.
// axis_cos/axis_sin hold, per axis, extent[a] * axis_pairs[a] values (position-major), the axes one
// after the other; cos/sin are f32 [tokens, sum of axis_pairs].
struct RopeGrid {
  int64_t extent[3] = {0, 0, 0};
  int axis_pairs[3] = {0, 0, 0};
};
cudaError_t expand_rope_table(const float* axis_cos, const float* axis_sin, const RopeGrid& grid, float* cos,
                              float* sin, cudaStream_t stream);

}  // namespace vdit::ops::kernels
