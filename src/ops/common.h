// Helpers shared by the op implementations: argument checks that name the op and argument, the f32
// view the CPU kernels read, and row-parallel loops.
#pragma once

#include <cstdint>
#include <functional>

#include "ops/ops.h"

namespace vdit::ops {

// Throws invalid_argument unless `t` is defined, of a float dtype and on the context's device.
void check_input(const ExecContext& ctx, const Tensor& t, const char* op, const char* arg);

// Throws invalid_argument unless t's shape is `expected`.
void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* arg);

// A RoPE table's cos and sin: inputs (check_input) of one shape.
void check_rope_table(const ExecContext& ctx, const RopeTable& table, const char* op);
// x [B, S, H, D] holds the table's tokens, of its head dim, from token `token_offset`.
void check_rope_heads(const Tensor& x, const RopeTable& table, int64_t token_offset, const char* op);

// Throws unsupported unless the context is the CPU (reached for a CUDA context only in builds
// without CUDA).
void require_cpu(const ExecContext& ctx, const char* op);

// A contiguous f32 CPU tensor with t's values (t itself when it already is one).
Tensor f32_dense(const Tensor& t);

// Calls body(begin, end) over [0, rows), on the context's threads when rows * cost_per_row is large
// enough to pay for starting them.
void for_rows(const ExecContext& ctx, int64_t rows, int64_t cost_per_row,
              const std::function<void(int64_t, int64_t)>& body);

// `shape` with its last dimension replaced by `last`.
Shape with_last_dim(const Shape& shape, int64_t last);

}  // namespace vdit::ops
