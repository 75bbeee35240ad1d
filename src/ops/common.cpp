#include "ops/common.h"

#include "core/parallel.h"

namespace vdit::ops {

void check_input(const ExecContext& ctx, const Tensor& t, const char* op, const char* arg) {
  VDIT_CHECK(t.defined(), ErrorCode::invalid_argument, "{}: {} is undefined", op, arg);
  const DType d = t.dtype();
  VDIT_CHECK(d == DType::f32 || d == DType::f16 || d == DType::bf16, ErrorCode::invalid_argument,
             "{}: {} is {}, expected a float tensor", op, arg, t.describe());
  VDIT_CHECK(t.device() == ctx.device, ErrorCode::invalid_argument, "{}: {} is {}, but the op runs on {}", op,
             arg, t.describe(), ctx.device.to_string());
}

void check_shape(const Tensor& t, const Shape& expected, const char* op, const char* arg) {
  VDIT_CHECK(t.shape() == expected, ErrorCode::invalid_argument, "{}: {} has shape {}, expected {}", op, arg,
             t.shape().to_string(), expected.to_string());
}

void check_rope_table(const ExecContext& ctx, const RopeTable& table, const char* op) {
  check_input(ctx, table.cos, op, "table.cos");
  check_input(ctx, table.sin, op, "table.sin");
  check_shape(table.sin, table.cos.shape(), op, "table.sin");
}

void check_rope_heads(const Tensor& x, const RopeTable& table, int64_t token_offset, const char* op) {
  VDIT_CHECK(x.rank() == 4 && x.size(3) == 2 * table.pairs() && token_offset >= 0 &&
                 token_offset + table.tokens() <= x.size(1),
             ErrorCode::invalid_argument,
             "{}: x {} ([B, S, H, D]) does not hold {} tokens of head dim {} from token {}", op,
             x.shape().to_string(), table.tokens(), 2 * table.pairs(), token_offset);
}

void require_cpu(const ExecContext& ctx, const char* op) {
  VDIT_CHECK(ctx.device.is_cpu(), ErrorCode::unsupported, "{} on {} needs a build with CUDA (-DVDIT_CUDA=ON)", op,
             ctx.device.to_string());
}

Tensor f32_dense(const Tensor& t) {
  if (t.dtype() == DType::f32 && t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), DType::f32);
  out.copy_from(t);
  return out;
}

void for_rows(const ExecContext& ctx, int64_t rows, int64_t cost_per_row,
              const std::function<void(int64_t, int64_t)>& body) {
  constexpr int64_t kParallelWork = int64_t{1} << 16;
  const int threads = rows * cost_per_row >= kParallelWork ? ctx.threads : 1;
  parallel_for(rows, body, threads);
}

Shape with_last_dim(const Shape& shape, int64_t last) {
  Shape out(shape.begin(), shape.end() - 1);
  out.push_back(last);
  return out;
}

}  // namespace vdit::ops
