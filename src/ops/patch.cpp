#include "ops/common.h"
#include "ops/op_timeline.h"
#include "ops/patch_index.h"

#ifdef VDIT_HAVE_CUDA
#include "ops/ops_cuda.h"
#endif

namespace vdit {
namespace {

ops::VideoDims dims_of(const Tensor& video, VideoAxes axes, const char* op) {
  VDIT_CHECK(video.rank() == 5, ErrorCode::invalid_argument, "{}: video has shape {}, expected {}", op,
             video.shape().to_string(), axes == VideoAxes::bcfhw ? "[B, C, F, H, W]" : "[B, F, C, H, W]");
  const bool cf = axes == VideoAxes::bcfhw;
  return ops::VideoDims::make(video.size(0), video.size(cf ? 1 : 2), video.size(cf ? 2 : 1), video.size(3),
                              video.size(4), axes);
}

Shape video_shape(const ops::VideoDims& d, VideoAxes axes) {
  return axes == VideoAxes::bcfhw ? Shape{d.batch, d.channels, d.frames, d.height, d.width}
                                  : Shape{d.batch, d.frames, d.channels, d.height, d.width};
}

void check_patch(PatchSize patch, const char* op) {
  VDIT_CHECK(patch.t > 0 && patch.h > 0 && patch.w > 0, ErrorCode::invalid_argument,
             "{}: patch size ({}, {}, {}) must be positive", op, patch.t, patch.h, patch.w);
}

}  // namespace

PatchGrid patch_grid(const Tensor& video, VideoAxes axes, PatchSize patch) {
  check_patch(patch, "patch_grid");
  const ops::VideoDims d = dims_of(video, axes, "patch_grid");
  VDIT_CHECK(d.frames % patch.t == 0 && d.height % patch.h == 0 && d.width % patch.w == 0,
             ErrorCode::invalid_argument,
             "video {} (frames {}, height {}, width {}) is not a whole number of ({}, {}, {}) patches",
             video.shape().to_string(), d.frames, d.height, d.width, patch.t, patch.h, patch.w);
  return {d.frames / patch.t, d.height / patch.h, d.width / patch.w};
}

Tensor patchify(const ExecContext& ctx, const Tensor& video, VideoAxes axes, PatchSize patch) {
  OpMark mark(ctx, "patchify");
  ops::check_input(ctx, video, "patchify", "video");
  const PatchGrid grid = patch_grid(video, axes, patch);
  const ops::VideoDims d = dims_of(video, axes, "patchify");
  const int64_t n = grid.tokens(), k = d.channels * patch.volume();
  const ops::PatchIndexer index{d, grid.height, grid.width, patch.t, patch.h, patch.w, true};
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::patchify(ctx, video, index, Shape{d.batch, n, k});
#endif
  ops::require_cpu(ctx, "patchify");
  Tensor vs = ops::f32_dense(video);
  Tensor out = Tensor::empty(Shape{d.batch, n, k}, DType::f32);
  const float* vp = vs.data<float>();
  float* op = out.data<float>();
  ops::for_rows(ctx, d.batch * n, k, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t j = 0; j < k; ++j) op[r * k + j] = vp[index.offset(r / n, r % n, j)];
  });
  return out;
}

Tensor patch_embed(const ExecContext& ctx, const Tensor& video, VideoAxes axes, PatchSize patch,
                   const Tensor& weight, const Tensor& bias) {
  OpMark mark(ctx, "patch_embed");
  ops::check_input(ctx, video, "patch_embed", "video");
  ops::check_input(ctx, weight, "patch_embed", "weight");
  const ops::VideoDims d = dims_of(video, axes, "patch_embed");
  const int64_t k = d.channels * patch.volume();
  VDIT_CHECK(weight.rank() >= 2 && weight.numel() == weight.size(0) * k, ErrorCode::invalid_argument,
             "patch_embed: weight has shape {}, expected [out, {}, {}, {}, {}] for {} input channels",
             weight.shape().to_string(), d.channels, patch.t, patch.h, patch.w, d.channels);
  const Tensor w = weight.is_contiguous() ? weight : weight.contiguous();
  return linear(ctx, patchify(ctx, video, axes, patch), w.view(Shape{weight.size(0), k}), bias);
}

Tensor unpatchify(const ExecContext& ctx, const Tensor& tokens, PatchGrid grid, PatchSize patch,
                  PatchFeatures features, VideoAxes axes) {
  OpMark mark(ctx, "unpatchify");
  ops::check_input(ctx, tokens, "unpatchify", "tokens");
  check_patch(patch, "unpatchify");
  VDIT_CHECK(tokens.rank() == 3 && tokens.size(1) == grid.tokens() && tokens.size(2) % patch.volume() == 0,
             ErrorCode::invalid_argument,
             "unpatchify: tokens have shape {}, expected [B, {}, C*{}] for a {}x{}x{} grid of ({}, {}, {}) patches",
             tokens.shape().to_string(), grid.tokens(), patch.volume(), grid.frames, grid.height, grid.width,
             patch.t, patch.h, patch.w);
  const int64_t b = tokens.size(0), n = grid.tokens(), k = tokens.size(2);
  const ops::VideoDims d = ops::VideoDims::make(b, k / patch.volume(), grid.frames * patch.t, grid.height * patch.h,
                                                grid.width * patch.w, axes);
  const ops::PatchIndexer index{d, grid.height, grid.width, patch.t, patch.h, patch.w,
                                features == PatchFeatures::channel_major};
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return ops::cuda::unpatchify(ctx, tokens, index, video_shape(d, axes));
#endif
  ops::require_cpu(ctx, "unpatchify");
  Tensor ts = ops::f32_dense(tokens);
  Tensor video = Tensor::empty(video_shape(d, axes), DType::f32);
  const float* tp = ts.data<float>();
  float* vp = video.data<float>();
  ops::for_rows(ctx, b * n, k, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      for (int64_t j = 0; j < k; ++j) vp[index.offset(r / n, r % n, j)] = tp[r * k + j];
  });
  return video;
}

}  // namespace vdit
