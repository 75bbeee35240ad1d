// The op set of a video DiT: free functions on Tensors, one interface with a CPU and a CUDA
// implementation each, chosen by the device of the execution context.
//
// CPU: inputs of any float dtype (f32, f16, bf16) are read as f32 and outputs are f32, computed in
// f32 (plain f32 accumulation; GEMMs through BLAS). CUDA (ops_cuda.h): the tensors of one call share
// one dtype (f32, f16 or bf16), outputs keep it, math is f32; GEMMs through cuBLASLt. Token tensors are [B, N, D] (batch, tokens, channels) unless said otherwise;
// attention tensors are [B, S, H, D]. Errors name the op, the argument and its shape.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "ops/op_types.h"
#include "vdit/tensor.h"

namespace vdit {

class OpTimeline;

// Where and how ops run. Passed by reference to every op; holds no state of its own.
struct ExecContext {
  Device device;
  void* stream = nullptr;  // cudaStream_t for CUDA ops (null: the default stream); the CPU ignores it
  int threads = 0;         // CPU worker threads; 0: default_thread_count()
  void* blas = nullptr;    // a BlasHandle's cuBLASLt context for CUDA GEMMs, owned by the caller (null: one per call)
  OpTimeline* timeline = nullptr;  // per-op timing (op_timeline.h), owned by the caller; null: off
};

// Owns a cuBLASLt handle to put in ExecContext::blas, so that GEMMs do not make one per call, and
// the algorithm chosen for each product shape seen with it (the fastest of cuBLASLt's first
// candidates, timed once on the first call). Holds nothing on the CPU.
class BlasHandle {
 public:
  explicit BlasHandle(Device device);
  ~BlasHandle();
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  void* get() const { return handle_; }

 private:
  void* handle_ = nullptr;
};

// ---- Dense layers ---------------------------------------------------------------------------

// y = act(x W^T + b): x [..., in], weight [out, in] (the checkpoint's layout), bias [out] or
// undefined. Returns [..., out].
Tensor linear(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias = {},
              Activation activation = Activation::none);

// ---- Normalisation and adaLN ------------------------------------------------------------------

// LayerNorm over the last dimension; weight and bias ([D]) are optional (undefined: no affine).
Tensor layer_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);

// RMSNorm over the last dimension: x / sqrt(mean(x^2) + eps) * weight (weight [D] optional).
Tensor rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps);

// rms_norm of x [B, N, heads * D] over its last dimension, viewed as [B, N, heads, D], then
// apply_rope(table, token_offset): Wan's Q and K. One pass over x on CUDA. Returns [B, N, heads, D].
struct RopeTable;
Tensor rms_norm_rope(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps, int64_t heads,
                     const RopeTable& table, int64_t token_offset = 0);

// layer_norm of x [B, N, H, D] over each head's D (weight and bias [D], optional), then
// apply_rope(table, token_offset): CogVideoX's Q and K. One pass over x on CUDA.
Tensor layer_norm_rope(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                       const RopeTable& table, int64_t token_offset = 0);

// adaLN modulation x * (1 + scale) + shift, per batch item: x [B, N, D], shift and scale [B, D].
Tensor modulate(const ExecContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale);

// layer_norm followed by modulate, in one pass over x.
Tensor layer_norm_modulate(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           float eps, const Tensor& shift, const Tensor& scale);

// Residual update in place: x += gate * y, x and y [B, N, D], gate [B, D]; an undefined gate
// means 1 (a plain residual add).
void gated_residual_add(const ExecContext& ctx, Tensor& x, const Tensor& y, const Tensor& gate);

// gated_residual_add(x, y, gate), then layer_norm of the updated x, modulated when shift and scale are
// given (layer_norm_modulate) and plain when both are undefined. Returns the norm's output; x is
// updated in place. On CUDA one pass over x where the row fits the register-resident norm kernel.
Tensor gated_residual_add_layer_norm(const ExecContext& ctx, Tensor& x, const Tensor& y, const Tensor& gate,
                                     const Tensor& weight, const Tensor& bias, float eps, const Tensor& shift = {},
                                     const Tensor& scale = {});
// The same, with the norm's output written into `out` (x's shape and dtype, stride 1 along D and D
// between tokens; any batch stride: a token range of a larger [B, N, D] tensor, e.g. one stream's
// part of a joint sequence) instead of a new tensor.
void gated_residual_add_layer_norm_into(const ExecContext& ctx, const Tensor& out, Tensor& x, const Tensor& y,
                                        const Tensor& gate, const Tensor& weight, const Tensor& bias, float eps,
                                        const Tensor& shift = {}, const Tensor& scale = {});

// ---- Element-wise -----------------------------------------------------------------------------

Tensor gelu_tanh(const ExecContext& ctx, const Tensor& x);  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
Tensor silu(const ExecContext& ctx, const Tensor& x);       // x / (1 + exp(-x))
// a + b, where b's shape is a trailing part of a's (leading 1s allowed): b repeats over a's leading
// dimensions, e.g. a [B, 6, D] + b [1, 6, D], or a [B, D] + b [D].
Tensor add(const ExecContext& ctx, const Tensor& a, const Tensor& b);

// Tokens of a [B, Na, D] then b [B, Nb, D]: [B, Na + Nb, D] (CogVideoX's joint text + video sequence).
Tensor concat_tokens(const ExecContext& ctx, const Tensor& a, const Tensor& b);

// x converted to `dtype` (a float dtype), contiguous, on the context's device (the CPU keeps it as is
// when it already is one).
Tensor cast(const ExecContext& ctx, const Tensor& x, DType dtype);

// ---- Attention to a short key sequence ------------------------------------------------------

// Dense softmax(scale Q K^T) V of q [B, Sq, H, D] over k, v [B, Sk, H, D] with Sk small (the
// cross-attention to text tokens): per head two GEMMs with the scores in f32, over chunks of queries;
// on CUDA in bf16/f16 at head dims 64, 96 and 128, the dense flash kernel (vdit::attention) instead.
// scale 0: 1/sqrt(D). Returns [B, Sq, H, D]. Self-attention goes through the attention policy.
Tensor cross_attention(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v, float scale = 0.0f);

// ---- Patches ----------------------------------------------------------------------------------

struct PatchSize {
  int t = 1, h = 2, w = 2;
  int64_t volume() const { return int64_t{t} * h * w; }
};

// Patch grid of a video: frames/height/width in patches.
struct PatchGrid {
  int64_t frames = 0, height = 0, width = 0;
  int64_t tokens() const { return frames * height * width; }
};

// The patch grid of `video` (whose sizes must be multiples of the patch size).
PatchGrid patch_grid(const Tensor& video, VideoAxes axes, PatchSize patch);

// Non-overlapping patches of `video` as tokens: [B, T*h*w, C*pt*ph*pw], tokens frame-major
// (t = f*h*w + y*w + x), features channel_major.
Tensor patchify(const ExecContext& ctx, const Tensor& video, VideoAxes axes, PatchSize patch);

// Conv3d/Conv2d with kernel == stride as a GEMM: linear(patchify(video), weight viewed as
// [out, C*pt*ph*pw], bias). `weight` may be [out, C, pt, ph, pw], [out, C, ph, pw] or [out, K].
Tensor patch_embed(const ExecContext& ctx, const Tensor& video, VideoAxes axes, PatchSize patch,
                   const Tensor& weight, const Tensor& bias);

// Inverse of patchify: tokens [B, grid.tokens(), C*pt*ph*pw] with features in `features` order ->
// video with `axes`, C = features / patch volume.
Tensor unpatchify(const ExecContext& ctx, const Tensor& tokens, PatchGrid grid, PatchSize patch,
                  PatchFeatures features, VideoAxes axes);

// ---- Embeddings -------------------------------------------------------------------------------

// diffusers' get_timestep_embedding: half = dim/2 frequencies f_i = exp(-ln(max_period) * i /
// (half - downscale_freq_shift)); out = [sin(s t f), cos(s t f)], swapped to [cos, sin] when
// flip_sin_to_cos; an odd dim gets a zero last column. The angle s*t*f is rounded to f32 as diffusers
// computes it, so large timesteps match its embedding. timesteps [B] -> [B, dim] f32 (CPU).
struct TimestepEmbedding {
  bool flip_sin_to_cos = true;
  double downscale_freq_shift = 0.0;
  double scale = 1.0;
  double max_period = 10000.0;
};
Tensor timestep_embedding(const ExecContext& ctx, const Tensor& timesteps, int dim,
                          const TimestepEmbedding& options);

// 3D rotary embedding: head dim D = axis_dims[0] + axis_dims[1] + axis_dims[2] (t, y, x), each even.
// Axis a contributes the angles pos_a * theta^(-2j / axis_dims[a]), j < axis_dims[a] / 2, in that order.
// cos and sin are [N, D/2] f32, N = frames*height*width tokens frame-major.
struct RopeTable {
  Tensor cos, sin;
  int64_t tokens() const { return cos.size(0); }
  int64_t pairs() const { return cos.size(1); }
  RopeTable to(Device device) const { return {cos.to(device), sin.to(device)}; }
};

// Positions along each axis are given explicitly (frames, rows, columns), as computed in double.
RopeTable rope_table_3d(const std::array<int, 3>& axis_dims, const std::array<std::vector<double>, 3>& positions,
                        double theta = 10000.0);
// The same table on ctx's device; on a GPU only the per-axis values are uploaded and the token rows
// laid out there (the host table of a 32k-token video is 17 MB).
RopeTable rope_table_3d(const ExecContext& ctx, const std::array<int, 3>& axis_dims,
                        const std::array<std::vector<double>, 3>& positions, double theta = 10000.0);

// Rotates the interleaved pairs (x[2i], x[2i+1]) of every head of tokens [offset, offset + N) of
// x [B, S, H, D] by the table's angles, in place: (a, b) -> (a cos - b sin, a sin + b cos).
void apply_rope(const ExecContext& ctx, Tensor& x, const RopeTable& table, int64_t token_offset = 0);

}  // namespace vdit
