#include <cblas.h>

#include <cmath>
#include <vector>

#include "ops/common.h"
#include "ops/op_timeline.h"

#ifdef VDIT_HAVE_CUDA
#include "ops/ops_cuda.h"
#endif

namespace vdit {
namespace {

constexpr int64_t kScoreFloats = int64_t{1} << 22;  // scores held at once on the CPU (16 MiB)

void softmax_row(float* s, int64_t n) {
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - m));
  for (int64_t j = 0; j < n; ++j) s[j] /= sum;
}

}  // namespace

Tensor cross_attention(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v, float scale) {
  OpMark mark(ctx, "cross_attention");
  ops::check_input(ctx, q, "cross_attention", "q");
  ops::check_input(ctx, k, "cross_attention", "k");
  ops::check_input(ctx, v, "cross_attention", "v");
  VDIT_CHECK(q.rank() == 4 && k.rank() == 4 && k.shape() == v.shape() && k.size(0) == q.size(0) &&
                 k.size(2) == q.size(2) && k.size(3) == q.size(3) && k.size(1) > 0,
             ErrorCode::invalid_argument,
             "cross_attention: q {}, k {}, v {} must be [B, Sq, H, D] and two [B, Sk, H, D] (Sk > 0)",
             q.shape().to_string(), k.shape().to_string(), v.shape().to_string());
  const float s = scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(q.size(3)));
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::cross_attention(ctx, q, k, v, s);
#endif
  ops::require_cpu(ctx, "cross_attention");
  const int64_t batch = q.size(0), sq = q.size(1), heads = q.size(2), dim = q.size(3), sk = k.size(1);
  const int ld = static_cast<int>(heads * dim);
  Tensor qs = ops::f32_dense(q), ks = ops::f32_dense(k), vs = ops::f32_dense(v);
  Tensor out = Tensor::empty(q.shape(), DType::f32);
  const int64_t chunk = std::max<int64_t>(1, std::min(sq, kScoreFloats / sk));
  std::vector<float> scores(chunk * sk);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* kp = ks.data<float>() + (b * sk * heads + h) * dim;
      const float* vp = vs.data<float>() + (b * sk * heads + h) * dim;
      for (int64_t i0 = 0; i0 < sq; i0 += chunk) {
        const int rows = static_cast<int>(std::min(chunk, sq - i0));
        const int64_t first = ((b * sq + i0) * heads + h) * dim;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, static_cast<int>(sk), static_cast<int>(dim), s,
                    qs.data<float>() + first, ld, kp, ld, 0.0f, scores.data(), static_cast<int>(sk));
        for (int r = 0; r < rows; ++r) softmax_row(scores.data() + r * sk, sk);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, static_cast<int>(dim), static_cast<int>(sk), 1.0f,
                    scores.data(), static_cast<int>(sk), vp, ld, 0.0f, out.data<float>() + first, ld);
      }
    }
  }
  return out;
}

}  // namespace vdit
