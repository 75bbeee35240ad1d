#include <algorithm>
#include <cmath>

#include "ops/common.h"
#include "ops/op_timeline.h"

#ifdef VDIT_HAVE_CUDA
#include "ops/ops_cuda.h"
#endif

namespace vdit {

namespace {

// Per axis and pair, cos and sin of the angle at each position along that axis (position-major),
// the axes one after the other: a token's table row is three of these runs side by side.
struct AxisRuns {
  std::vector<float> cos, sin;
  std::array<int64_t, 3> extent{};
  std::array<int, 3> pairs{};
};

AxisRuns axis_runs(const std::array<int, 3>& axis_dims, const std::array<std::vector<double>, 3>& positions,
                   double theta) {
  AxisRuns r;
  for (int a = 0; a < 3; ++a) {
    VDIT_CHECK(axis_dims[a] >= 0 && axis_dims[a] % 2 == 0, ErrorCode::invalid_argument,
               "rope_table_3d: axis {} has {} channels, expected an even count", a, axis_dims[a]);
    VDIT_CHECK(!positions[a].empty(), ErrorCode::invalid_argument, "rope_table_3d: axis {} has no positions", a);
    r.extent[a] = static_cast<int64_t>(positions[a].size());
    r.pairs[a] = axis_dims[a] / 2;
    for (double pos : positions[a]) {
      for (int j = 0; j < r.pairs[a]; ++j) {
        const double angle = pos * std::pow(theta, -2.0 * j / axis_dims[a]);
        r.cos.push_back(static_cast<float>(std::cos(angle)));
        r.sin.push_back(static_cast<float>(std::sin(angle)));
      }
    }
  }
  return r;
}

}  // namespace

RopeTable rope_table_3d(const std::array<int, 3>& axis_dims, const std::array<std::vector<double>, 3>& positions,
                        double theta) {
  // Computing the angles per token instead cost ~50 ms a forward at 32k tokens.
  const AxisRuns r = axis_runs(axis_dims, positions, theta);
  const int64_t height = r.extent[1], width = r.extent[2], tokens = r.extent[0] * height * width;
  const int64_t pairs = r.pairs[0] + r.pairs[1] + r.pairs[2];
  RopeTable table{Tensor::empty(Shape{tokens, pairs}, DType::f32), Tensor::empty(Shape{tokens, pairs}, DType::f32)};
  float *cp = table.cos.data<float>(), *sp = table.sin.data<float>();
  for (int64_t t = 0; t < tokens; ++t) {
    const std::array<int64_t, 3> at = {t / (height * width), t / width % height, t % width};
    int64_t p = t * pairs, base = 0;
    for (int a = 0; a < 3; ++a) {
      const int64_t n = r.pairs[a];
      std::copy_n(r.cos.data() + base + at[a] * n, n, cp + p);
      std::copy_n(r.sin.data() + base + at[a] * n, n, sp + p);
      p += n;
      base += r.extent[a] * n;
    }
  }
  return table;
}

RopeTable rope_table_3d(const ExecContext& ctx, const std::array<int, 3>& axis_dims,
                        const std::array<std::vector<double>, 3>& positions, double theta) {
  OpMark mark(ctx, "rope_table_3d");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) {
    // Only the per-axis runs cross the bus (a few KB); the GPU lays out the token rows.
    const AxisRuns r = axis_runs(axis_dims, positions, theta);
    const int64_t n = static_cast<int64_t>(r.cos.size());
    Tensor runs = Tensor::empty(Shape{2, n}, DType::f32);
    std::copy(r.cos.begin(), r.cos.end(), runs.data<float>());
    std::copy(r.sin.begin(), r.sin.end(), runs.data<float>() + n);
    return ops::cuda::expand_rope_table(ctx, runs.to(ctx.device), r.extent, r.pairs);
  }
#endif
  ops::require_cpu(ctx, "rope_table_3d");
  return rope_table_3d(axis_dims, positions, theta);
}

void apply_rope(const ExecContext& ctx, Tensor& x, const RopeTable& table, int64_t token_offset) {
  OpMark mark(ctx, "apply_rope");
  ops::check_input(ctx, x, "apply_rope", "x");
  ops::check_rope_table(ctx, table, "apply_rope");
  ops::check_rope_heads(x, table, token_offset, "apply_rope");
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::apply_rope(ctx, x, table, token_offset);
#endif
  ops::require_cpu(ctx, "apply_rope");
  VDIT_CHECK(x.dtype() == DType::f32 && x.is_contiguous(), ErrorCode::invalid_argument,
             "apply_rope: x must be a contiguous f32 tensor on the CPU, got {}", x.describe());
  const int64_t batch = x.size(0), seq = x.size(1), heads = x.size(2), pairs = table.pairs(), n = table.tokens();
  Tensor cs = ops::f32_dense(table.cos), ss = ops::f32_dense(table.sin);
  const float *cp = cs.data<float>(), *sp = ss.data<float>();
  float* xp = x.data<float>();
  ops::for_rows(ctx, batch * n, heads * pairs * 2, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / n, t = r % n;
      const float *c = cp + t * pairs, *s = sp + t * pairs;
      float* row = xp + (b * seq + token_offset + t) * heads * pairs * 2;
      for (int64_t h = 0; h < heads; ++h) {
        float* v = row + h * pairs * 2;
        for (int64_t i = 0; i < pairs; ++i) {
          const float a = v[2 * i], bb = v[2 * i + 1];
          v[2 * i] = a * c[i] - bb * s[i];
          v[2 * i + 1] = a * s[i] + bb * c[i];
        }
      }
    }
  });
}

}  // namespace vdit
