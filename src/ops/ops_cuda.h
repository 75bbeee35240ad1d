// The CUDA implementations of the ops (CUDA builds only: ops_cuda.cpp, linear_cuda.cpp, kernels in
// kernels_cuda.cu), called by the ops of ops.h for a CUDA context after their argument checks. The tensors of one call share one float dtype and live on the
// context's device; outputs are new tensors of that dtype (apply_rope and gated_residual_add work in
// place). Everything runs on ctx.stream and nothing waits for the GPU.
#pragma once

#include "ops/ops.h"
#include "ops/patch_index.h"

namespace vdit::ops::cuda {

void* create_blas_handle(Device device);  // a cuBLASLt handle and the algorithms chosen with it
void destroy_blas_handle(void* handle);

// CUDA events for OpTimeline (op_timeline_cuda.cpp).
void* create_event();
void destroy_event(void* event);
void record_event(void* event, void* stream);
double event_elapsed_ms(void* start, void* stop);  // waits for `stop`

Tensor linear(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, Activation activation);
// layer_norm (shift and scale undefined) or layer_norm_modulate.
Tensor layer_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                  const Tensor& shift, const Tensor& scale);
Tensor rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps);
Tensor rms_norm_rope(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps, int64_t heads,
                     const RopeTable& table, int64_t token_offset);
Tensor layer_norm_rope(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                       const RopeTable& table, int64_t token_offset);
Tensor modulate(const ExecContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale);
void gated_residual_add(const ExecContext& ctx, Tensor& x, const Tensor& y, const Tensor& gate);
// The norm's output goes into *out when given (the checks of gated_residual_add_layer_norm_into
// done), else into a new tensor, which is returned.
Tensor gated_residual_add_layer_norm(const ExecContext& ctx, Tensor& x, const Tensor& y, const Tensor& gate,
                                     const Tensor& weight, const Tensor& bias, float eps, const Tensor& shift,
                                     const Tensor& scale, const Tensor* out = nullptr);
Tensor activation(const ExecContext& ctx, const Tensor& x, Activation activation);
void activation_in_place(const ExecContext& ctx, Tensor& x, Activation activation);
Tensor add(const ExecContext& ctx, const Tensor& a, const Tensor& b);
Tensor concat_tokens(const ExecContext& ctx, const Tensor& a, const Tensor& b);
// x (contiguous, any float dtype) converted to `dtype`.
Tensor cast(const ExecContext& ctx, const Tensor& x, DType dtype);
Tensor cross_attention(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v, float scale);
// Tokens [B, N, K] from a video, or back, through `index` (the dispatcher's geometry).
Tensor patchify(const ExecContext& ctx, const Tensor& video, const PatchIndexer& index, const Shape& tokens_shape);
Tensor unpatchify(const ExecContext& ctx, const Tensor& tokens, const PatchIndexer& index, const Shape& video_shape);
// The embedding in f32, as diffusers computes it.
Tensor timestep_embedding(const ExecContext& ctx, const Tensor& timesteps, int dim, const TimestepEmbedding& options);
void apply_rope(const ExecContext& ctx, Tensor& x, const RopeTable& table, int64_t token_offset);
// rope_table_3d's token rows from `runs` f32 [2, n] (cos then sin per-axis runs, see rope.cpp).
RopeTable expand_rope_table(const ExecContext& ctx, const Tensor& runs, const std::array<int64_t, 3>& extent,
                            const std::array<int, 3>& pairs);

}  // namespace vdit::ops::cuda
