// The CUDA ops' host side: the CUDA argument rules (one dtype per call, contiguous operands), output
// allocation, and the launch of the kernels of kernels_cuda.cu.
#include "ops/ops_cuda.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>

#include "ops/common.h"
#include "ops/kernels_cuda.h"

namespace vdit::ops::cuda {
namespace {

kernels::Float float_type(DType dtype, const char* op) {
  switch (dtype) {
    case DType::f32: return kernels::Float::f32;
    case DType::f16: return kernels::Float::f16;
    case DType::bf16: return kernels::Float::bf16;
    default: fail(ErrorCode::unsupported, "{} on CUDA: {} tensors are not supported", op, dtype_name(dtype));
  }
}

cudaStream_t stream_of(const ExecContext& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

// An operand (when defined) has the call's dtype and is contiguous.
void check_operand(const Tensor& t, DType dtype, const char* op, const char* arg) {
  if (!t.defined()) return;
  VDIT_CHECK(t.dtype() == dtype && t.is_contiguous(), ErrorCode::invalid_argument,
             "{} on CUDA: {} is {}, expected a contiguous {} tensor", op, arg, t.describe(), dtype_name(dtype));
}

// Per-batch-item rows [B, D] (shift, scale, gate) may be strided along B; returns that stride.
int64_t check_rows(const Tensor& t, DType dtype, const char* op, const char* arg) {
  if (!t.defined()) return 0;
  VDIT_CHECK(t.dtype() == dtype && t.stride(1) == 1, ErrorCode::invalid_argument,
             "{} on CUDA: {} is {}, expected {} rows of unit stride", op, arg, t.describe(), dtype_name(dtype));
  return t.stride(0);
}

void check_launch(cudaError_t err, const char* op) {
  VDIT_CHECK(err == cudaSuccess, ErrorCode::cuda, "{} on CUDA: {}", op, cudaGetErrorString(err));
}

const void* ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

// Checks a norm's operands and fills the shape part of `args`.
void prepare_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& shift, const Tensor& scale,
                  kernels::NormArgs& args, const char* op) {
  const DType dtype = x.dtype();
  check_operand(x, dtype, op, "x");
  check_operand(weight, dtype, op, "weight");
  check_operand(bias, dtype, op, "bias");
  args.mod_stride = check_rows(scale, dtype, op, "scale");
  VDIT_CHECK(check_rows(shift, dtype, op, "shift") == args.mod_stride, ErrorCode::invalid_argument,
             "{} on CUDA: shift and scale must have one row stride", op);
  args.dim = x.size(-1);
  args.rows = args.dim ? x.numel() / args.dim : 0;
  VDIT_CHECK(args.rows <= INT32_MAX, ErrorCode::unsupported, "{} on CUDA: x {} has {} rows, more than 2^31 - 1", op,
             x.describe(), args.rows);
  args.rows_per_item = scale.defined() ? x.size(1) : 1;
}

Tensor run_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& shift,
                const Tensor& scale, kernels::NormArgs args, const char* op) {
  const DType dtype = x.dtype();
  prepare_norm(x, weight, bias, shift, scale, args, op);
  Tensor y = Tensor::empty(x.shape(), dtype, ctx.device);
  check_launch(kernels::norm(float_type(dtype, op), x.raw_data(), y.raw_data(), ptr(weight), ptr(bias), ptr(shift),
                             ptr(scale), args, stream_of(ctx)),
               op);
  return y;
}

}  // namespace

Tensor layer_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                  const Tensor& shift, const Tensor& scale) {
  kernels::NormArgs args;
  args.eps = eps;
  return run_norm(ctx, x, weight, bias, shift, scale, args, scale.defined() ? "layer_norm_modulate" : "layer_norm");
}

Tensor rms_norm(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps) {
  kernels::NormArgs args;
  args.eps = eps;
  args.center = false;
  return run_norm(ctx, x, weight, {}, {}, {}, args, "rms_norm");
}

namespace {

// The norm arguments of a norm fused with RoPE over x [B, N, ...]: `rows_per_token` rows a token,
// heads of `head_dim`.
kernels::NormArgs rope_norm_args(const Tensor& x, const RopeTable& table, float eps, int64_t rows_per_token,
                                 int64_t head_dim, int64_t token_offset, const char* op) {
  check_operand(table.cos, DType::f32, op, "table.cos");
  check_operand(table.sin, DType::f32, op, "table.sin");
  kernels::NormArgs args;
  args.eps = eps;
  args.rope_cos = static_cast<const float*>(table.cos.raw_data());
  args.rope_sin = static_cast<const float*>(table.sin.raw_data());
  args.seq = x.size(1);
  args.rows_per_token = rows_per_token;
  args.rope_offset = token_offset;
  args.rope_tokens = table.tokens();
  args.head_dim = head_dim;
  return args;
}

}  // namespace

Tensor rms_norm_rope(const ExecContext& ctx, const Tensor& x, const Tensor& weight, float eps, int64_t heads,
                     const RopeTable& table, int64_t token_offset) {
  kernels::NormArgs args = rope_norm_args(x, table, eps, 1, x.size(2) / heads, token_offset, "rms_norm_rope");
  args.center = false;
  const Tensor y = run_norm(ctx, x, weight, {}, {}, {}, args, "rms_norm_rope");
  return y.view({x.size(0), x.size(1), heads, args.head_dim});
}

Tensor layer_norm_rope(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                       const RopeTable& table, int64_t token_offset) {
  // x [B, N, H, D]: a row is one head of a token.
  const kernels::NormArgs args = rope_norm_args(x, table, eps, x.size(2), x.size(3), token_offset, "layer_norm_rope");
  return run_norm(ctx, x, weight, bias, {}, {}, args, "layer_norm_rope");
}

Tensor modulate(const ExecContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale) {
  const DType dtype = x.dtype();
  check_operand(x, dtype, "modulate", "x");
  kernels::TokenArgs args{x.size(0), x.size(1), x.size(2), check_rows(scale, dtype, "modulate", "scale"), 0, 0};
  VDIT_CHECK(check_rows(shift, dtype, "modulate", "shift") == args.row_stride, ErrorCode::invalid_argument,
             "modulate on CUDA: shift and scale must have one row stride");
  Tensor y = Tensor::empty(x.shape(), dtype, ctx.device);
  check_launch(kernels::modulate(float_type(dtype, "modulate"), x.raw_data(), y.raw_data(), shift.raw_data(),
                                 scale.raw_data(), args, stream_of(ctx)),
               "modulate");
  return y;
}

void gated_residual_add(const ExecContext& ctx, Tensor& x, const Tensor& y, const Tensor& gate) {
  const DType dtype = x.dtype();
  check_operand(x, dtype, "gated_residual_add", "x");
  VDIT_CHECK(y.dtype() == dtype && y.stride(2) == 1, ErrorCode::invalid_argument,
             "gated_residual_add on CUDA: y is {}, expected {} with unit stride along D", y.describe(), dtype_name(dtype));
  const kernels::TokenArgs args{x.size(0), x.size(1), x.size(2), check_rows(gate, dtype, "gated_residual_add", "gate"),
                                y.stride(0), y.stride(1)};
  check_launch(kernels::gated_add(float_type(dtype, "gated_residual_add"), x.raw_data(), y.raw_data(), ptr(gate), args,
                                  stream_of(ctx)),
               "gated_residual_add");
}

Tensor gated_residual_add_layer_norm(const ExecContext& ctx, Tensor& x, const Tensor& y, const Tensor& gate,
                                     const Tensor& weight, const Tensor& bias, float eps, const Tensor& shift,
                                     const Tensor& scale, const Tensor* out) {
  const char* op = out ? "gated_residual_add_layer_norm_into" : "gated_residual_add_layer_norm";
  const DType dtype = x.dtype();
  kernels::NormArgs args;
  args.eps = eps;
  prepare_norm(x, weight, bias, shift, scale, args, op);
  VDIT_CHECK(y.dtype() == dtype && y.stride(2) == 1, ErrorCode::invalid_argument,
             "{} on CUDA: y is {}, expected {} with unit stride along D", op, y.describe(), dtype_name(dtype));
  const kernels::TokenArgs add{x.size(0), x.size(1), x.size(2), check_rows(gate, dtype, op, "gate"), y.stride(0),
                               y.stride(1)};
  Tensor y_norm;
  if (out) {  // rows of D, items out->stride(0) apart
    y_norm = *out;
    args.y_tokens = x.size(1);
    args.y_item_stride = out->stride(0);
  } else {
    y_norm = Tensor::empty(x.shape(), dtype, ctx.device);
  }
  check_launch(kernels::gated_add_norm(float_type(dtype, op), x.raw_data(), y.raw_data(), ptr(gate), add,
                                       y_norm.raw_data(), ptr(weight), ptr(bias), ptr(shift), ptr(scale), args,
                                       stream_of(ctx)),
               op);
  return y_norm;
}

Tensor activation(const ExecContext& ctx, const Tensor& x, Activation act) {
  check_operand(x, x.dtype(), "activation", "x");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), ctx.device);
  check_launch(kernels::activation(float_type(x.dtype(), "activation"), x.raw_data(), y.raw_data(), x.numel(), act,
                                   stream_of(ctx)),
               "activation");
  return y;
}

void activation_in_place(const ExecContext& ctx, Tensor& x, Activation act) {
  check_operand(x, x.dtype(), "activation", "x");
  check_launch(kernels::activation(float_type(x.dtype(), "activation"), x.raw_data(), x.raw_data(), x.numel(), act,
                                   stream_of(ctx)),
               "activation");
}

Tensor cast(const ExecContext& ctx, const Tensor& x, DType dtype) {
  VDIT_CHECK(x.is_contiguous(), ErrorCode::invalid_argument, "cast on CUDA: x {} must be contiguous", x.describe());
  Tensor y = Tensor::empty(x.shape(), dtype, ctx.device);
  check_launch(kernels::convert(float_type(x.dtype(), "cast"), float_type(dtype, "cast"), x.raw_data(), y.raw_data(),
                                x.numel(), stream_of(ctx)),
               "cast");
  return y;
}

Tensor add(const ExecContext& ctx, const Tensor& a, const Tensor& b) {
  check_operand(a, a.dtype(), "add", "a");
  check_operand(b, a.dtype(), "add", "b");
  Tensor y = Tensor::empty(a.shape(), a.dtype(), ctx.device);
  check_launch(kernels::add(float_type(a.dtype(), "add"), a.raw_data(), b.raw_data(), y.raw_data(), a.numel(),
                            b.numel(), stream_of(ctx)),
               "add");
  return y;
}

Tensor concat_tokens(const ExecContext& ctx, const Tensor& a, const Tensor& b) {
  check_operand(a, a.dtype(), "concat_tokens", "a");
  check_operand(b, a.dtype(), "concat_tokens", "b");
  const int64_t batch = a.size(0), na = a.size(1), nb = b.size(1), dim = a.size(2);
  Tensor y = Tensor::empty(Shape{batch, na + nb, dim}, a.dtype(), ctx.device);
  const size_t row = static_cast<size_t>(dim) * dtype_size(a.dtype()), pitch = (na + nb) * row;
  auto* out = static_cast<char*>(y.raw_data());
  for (const auto& [part, offset, tokens] : {std::tuple{&a, int64_t{0}, na}, std::tuple{&b, na, nb}}) {
    if (tokens == 0 || batch == 0 || dim == 0) continue;
    check_launch(cudaMemcpy2DAsync(out + offset * row, pitch, part->raw_data(), tokens * row, tokens * row, batch,
                                   cudaMemcpyDeviceToDevice, stream_of(ctx)),
                 "concat_tokens");
  }
  return y;
}

Tensor patchify(const ExecContext& ctx, const Tensor& video, const PatchIndexer& index, const Shape& tokens_shape) {
  check_operand(video, video.dtype(), "patchify", "video");
  Tensor out = Tensor::empty(tokens_shape, video.dtype(), ctx.device);
  check_launch(kernels::patches(float_type(video.dtype(), "patchify"), video.raw_data(), out.raw_data(), index,
                                tokens_shape[1], tokens_shape[2], true, stream_of(ctx)),
               "patchify");
  return out;
}

Tensor unpatchify(const ExecContext& ctx, const Tensor& tokens, const PatchIndexer& index, const Shape& video_shape) {
  check_operand(tokens, tokens.dtype(), "unpatchify", "tokens");
  Tensor video = Tensor::empty(video_shape, tokens.dtype(), ctx.device);
  check_launch(kernels::patches(float_type(tokens.dtype(), "unpatchify"), tokens.raw_data(), video.raw_data(), index,
                                tokens.size(1), tokens.size(2), false, stream_of(ctx)),
               "unpatchify");
  return video;
}

Tensor timestep_embedding(const ExecContext& ctx, const Tensor& timesteps, int dim, const TimestepEmbedding& options) {
  check_operand(timesteps, timesteps.dtype(), "timestep_embedding", "timesteps");
  kernels::TimestepArgs a;
  a.batch = timesteps.size(0);
  a.dim = dim;
  a.half = dim / 2;
  a.sin_at = options.flip_sin_to_cos ? a.half : 0;
  a.cos_at = options.flip_sin_to_cos ? 0 : a.half;
  a.log_period = static_cast<float>(-std::log(options.max_period));
  a.denominator = static_cast<float>(a.half - options.downscale_freq_shift);
  a.scale = static_cast<float>(options.scale);
  Tensor out = Tensor::zeros(Shape{a.batch, dim}, DType::f32, ctx.device);
  check_launch(kernels::timestep_embedding(float_type(timesteps.dtype(), "timestep_embedding"), timesteps.raw_data(),
                                           static_cast<float*>(out.raw_data()), a, stream_of(ctx)),
               "timestep_embedding");
  return out;
}

void apply_rope(const ExecContext& ctx, Tensor& x, const RopeTable& table, int64_t token_offset) {
  check_operand(x, x.dtype(), "apply_rope", "x");
  check_operand(table.cos, DType::f32, "apply_rope", "table.cos");
  check_operand(table.sin, DType::f32, "apply_rope", "table.sin");
  const kernels::RopeArgs a{x.size(0), x.size(1), x.size(2), table.pairs(), table.tokens(), token_offset};
  check_launch(kernels::rope(float_type(x.dtype(), "apply_rope"), x.raw_data(), static_cast<const float*>(table.cos.raw_data()),
                             static_cast<const float*>(table.sin.raw_data()), a, stream_of(ctx)),
               "apply_rope");
}

RopeTable expand_rope_table(const ExecContext& ctx, const Tensor& runs, const std::array<int64_t, 3>& extent,
                            const std::array<int, 3>& pairs) {
  check_operand(runs, DType::f32, "rope_table_3d", "runs");
  kernels::RopeGrid grid;
  for (int a = 0; a < 3; ++a) {
    grid.extent[a] = extent[a];
    grid.axis_pairs[a] = pairs[a];
  }
  const Shape shape{extent[0] * extent[1] * extent[2], int64_t{pairs[0]} + pairs[1] + pairs[2]};
  RopeTable table{Tensor::empty(shape, DType::f32, ctx.device), Tensor::empty(shape, DType::f32, ctx.device)};
  const float* cos_runs = static_cast<const float*>(runs.raw_data());
  check_launch(kernels::expand_rope_table(cos_runs, cos_runs + runs.size(1), grid,
                                          static_cast<float*>(table.cos.raw_data()),
                                          static_cast<float*>(table.sin.raw_data()), stream_of(ctx)),
               "rope_table_3d");
  return table;
}

}  // namespace vdit::ops::cuda
