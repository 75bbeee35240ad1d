#include <cmath>

#include "ops/common.h"
#include "ops/op_timeline.h"

#ifdef VDIT_HAVE_CUDA
#include "ops/ops_cuda.h"
#endif

namespace vdit {

Tensor timestep_embedding(const ExecContext& ctx, const Tensor& timesteps, int dim, const TimestepEmbedding& options) {
  OpMark mark(ctx, "timestep_embedding");
  ops::check_input(ctx, timesteps, "timestep_embedding", "timesteps");
  VDIT_CHECK(timesteps.rank() == 1, ErrorCode::invalid_argument,
             "timestep_embedding: timesteps have shape {}, expected [B]", timesteps.shape().to_string());
  const int half = dim / 2;
  VDIT_CHECK(half > 0 && half != options.downscale_freq_shift, ErrorCode::invalid_argument,
             "timestep_embedding: dim {} with downscale_freq_shift {} gives no frequencies", dim,
             options.downscale_freq_shift);
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::timestep_embedding(ctx, timesteps, dim, options);
#endif
  ops::require_cpu(ctx, "timestep_embedding");
  // Every step rounds to f32 the way diffusers' float32 computation does.
  const float log_period = static_cast<float>(-std::log(options.max_period));
  const float denominator = static_cast<float>(half - options.downscale_freq_shift);
  std::vector<float> freqs(half);
  for (int i = 0; i < half; ++i) freqs[i] = std::exp(log_period * static_cast<float>(i) / denominator);

  Tensor ts = ops::f32_dense(timesteps);
  const int64_t batch = timesteps.size(0);
  Tensor out = Tensor::zeros(Shape{batch, dim}, DType::f32);
  const float* tp = ts.data<float>();
  float* op = out.data<float>();
  const int sin_at = options.flip_sin_to_cos ? half : 0, cos_at = options.flip_sin_to_cos ? 0 : half;
  for (int64_t b = 0; b < batch; ++b) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(options.scale) * (tp[b] * freqs[i]);
      op[b * dim + sin_at + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
      op[b * dim + cos_at + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
    }
  }
  return out;
}

}  // namespace vdit
