// vdit::attention on CUDA tensors: checks the inputs, fills cuda::FlashParams and launches the
// flash kernel for the device (bf16, f16) or the f32 kernel (f32). The one place where the kernel
// is chosen.
#include "attention/attention_cuda.h"

#include <cuda_runtime_api.h>

#include <climits>
#include <cmath>

#include "kernels/cuda/attention_f32.h"
#include "kernels/cuda/flash_fwd.h"
#include "kernels/cuda/sm90_device.h"

namespace vdit {
namespace {

std::string describe_operand(const Tensor& t) {
  return fmt::format("{}{} on {}", dtype_name(t.dtype()), t.shape().to_string(), t.device().to_string());
}

void check_cuda(cudaError_t err, const char* what) {
  VDIT_CHECK(err == cudaSuccess, ErrorCode::cuda, "attention: {}: {}", what, cudaGetErrorString(err));
}

// `t` must have q's device and dtype and the shape `expected` (q's, or k's for v).
void check_operand(const Tensor& t, const char* name, const Tensor& q, const Tensor& expected,
                   const char* expected_name) {
  VDIT_CHECK(t.defined(), ErrorCode::invalid_argument, "attention: {} is undefined", name);
  VDIT_CHECK(t.device() == q.device() && t.dtype() == q.dtype() && t.shape() == expected.shape(),
             ErrorCode::invalid_argument, "attention: {} is {}, expected {}'s {}", name, describe_operand(t),
             expected_name, describe_operand(expected));
  VDIT_CHECK(t.stride(3) == 1, ErrorCode::invalid_argument,
             "attention: {} ({}) has stride {} along D; the GPU kernels need unit stride", name,
             describe_operand(t), t.stride(3));
}

// K may have another S than Q (cross-attention) but must match it elsewhere: [B, S_k, H, D].
void check_keys(const Tensor& k, const Tensor& q) {
  VDIT_CHECK(k.defined(), ErrorCode::invalid_argument, "attention: k is undefined");
  VDIT_CHECK(k.device() == q.device() && k.dtype() == q.dtype() && k.rank() == 4 && k.size(0) == q.size(0) &&
                 k.size(2) == q.size(2) && k.size(3) == q.size(3),
             ErrorCode::invalid_argument, "attention: k is {}, expected {}[{}, S_k, {}, {}] on {} (q is {})",
             describe_operand(k), dtype_name(q.dtype()), q.size(0), q.size(2), q.size(3), q.device().to_string(),
             describe_operand(q));
  VDIT_CHECK(k.size(1) > 0 && k.size(1) <= INT_MAX / 2, ErrorCode::unsupported,
             "attention: k is {}, outside the key counts the GPU kernels index", describe_operand(k));
}

void check_mask(const GpuBlockMask& mask, const Tensor& q, const Tensor& k) {
  const int64_t batch = q.size(0), tokens = q.size(1), heads = q.size(2);
  VDIT_CHECK(k.size(1) == tokens, ErrorCode::invalid_argument,
             "attention: a block mask needs as many keys as queries; q is {}, k is {}", describe_operand(q),
             describe_operand(k));
  VDIT_CHECK(mask.tokens == tokens, ErrorCode::invalid_argument,
             "attention: mask covers {} tokens, q is {} (S = {})", mask.tokens, describe_operand(q), tokens);
  VDIT_CHECK(mask.slots == heads || mask.slots == batch * heads, ErrorCode::invalid_argument,
             "attention: mask has {} slots, expected H = {} or B*H = {} for q {}", mask.slots, heads,
             batch * heads, describe_operand(q));
  VDIT_CHECK(mask.row_offsets.defined() && mask.key_blocks.defined() && mask.row_offsets.dtype() == DType::i32 &&
                 mask.key_blocks.dtype() == DType::i32 && mask.row_offsets.device() == q.device() &&
                 mask.key_blocks.device() == q.device() &&
                 mask.row_offsets.numel() == mask.slots * mask.q_blocks() + 1,
             ErrorCode::invalid_argument,
             "attention: mask CSR must be i32 on {} with {} row offsets; it has row_offsets {} and key_blocks {}",
             q.device().to_string(), mask.slots * mask.q_blocks() + 1,
             mask.row_offsets.defined() ? describe_operand(mask.row_offsets) : "undefined",
             mask.key_blocks.defined() ? describe_operand(mask.key_blocks) : "undefined");
}

void set_strides(const Tensor& t, int64_t* batch, int64_t* row, int64_t* head) {
  *batch = t.stride(0);
  *row = t.stride(1);
  *head = t.stride(2);
}

// Restores the caller's current device on scope exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != index) check_cuda(cudaSetDevice(index), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace

const char* flash_kernel_name(FlashKernel kernel) {
  switch (kernel) {
    case FlashKernel::automatic: return "auto";
    case FlashKernel::sm80: return "sm80";
    case FlashKernel::sm90: return "sm90";
    case FlashKernel::f32: return "f32";
  }
  return "?";
}

bool flash_kernel_available(FlashKernel kernel, Device device) {
  int count = 0;
  if (!device.is_cuda() || cudaGetDeviceCount(&count) != cudaSuccess || device.index >= count) return false;
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device.index) != cudaSuccess) return false;
  switch (kernel) {
    case FlashKernel::automatic:
    case FlashKernel::sm80:
    case FlashKernel::f32: return major >= 8;
    case FlashKernel::sm90: return cuda::is_sm90_device(device.index);
  }
  return false;
}

FlashKernel attention_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const GpuBlockMask* mask,
                           float scale, const Tensor& out, Tensor* lse, void* stream, FlashKernel kernel,
                           const TokenMajorSlots* token_major) {
  VDIT_CHECK(q.defined() && q.device().is_cuda(), ErrorCode::invalid_argument,
             "attention: q must be a CUDA tensor, it is {}", q.defined() ? describe_operand(q) : "undefined");
  VDIT_CHECK(q.rank() == 4, ErrorCode::invalid_argument, "attention: q is {}, expected [B, S, H, D]",
             describe_operand(q));
  VDIT_CHECK(q.dtype() == DType::bf16 || q.dtype() == DType::f16 || q.dtype() == DType::f32, ErrorCode::unsupported,
             "attention: q is {}; the GPU kernels take bf16, f16 or f32", describe_operand(q));
  const int64_t batch = q.size(0), tokens = q.size(1), heads = q.size(2), dim = q.size(3);
  VDIT_CHECK(dim == 64 || dim == 96 || dim == 128, ErrorCode::unsupported,
             "attention: q is {}; the GPU kernels take head dims 64, 96 and 128", describe_operand(q));
  VDIT_CHECK(batch > 0 && tokens > 0 && heads > 0 && tokens <= INT_MAX / 2 &&
                 batch * heads * ((tokens + 127) / 128) <= INT_MAX,
             ErrorCode::unsupported, "attention: q is {}, outside the sizes the GPU kernels index",
             describe_operand(q));
  check_keys(k, q);
  check_operand(q, "q", q, q, "q");
  check_operand(k, "k", q, k, "k");
  check_operand(v, "v", q, k, "k");
  check_operand(out, "out", q, q, "q");
  VDIT_CHECK(std::isfinite(scale) && scale >= 0.0f, ErrorCode::invalid_argument,
             "attention: scale is {}, expected a positive value (0 for 1/sqrt(D))", scale);
  if (mask) check_mask(*mask, q, k);

  DeviceGuard guard(q.device().index);
  if (lse) {
    if (!lse->defined()) *lse = Tensor::empty({batch, heads, tokens}, DType::f32, q.device());
    VDIT_CHECK(lse->dtype() == DType::f32 && lse->device() == q.device() && lse->is_contiguous() &&
                   lse->shape() == Shape({batch, heads, tokens}),
               ErrorCode::invalid_argument, "attention: lse is {}, expected contiguous f32[{}, {}, {}] on {}",
               describe_operand(*lse), batch, heads, tokens, q.device().to_string());
  }

  cuda::FlashParams params;
  params.q = q.raw_data();
  params.k = k.raw_data();
  params.v = v.raw_data();
  params.o = out.raw_data();
  params.lse = lse ? lse->data<float>() : nullptr;
  set_strides(q, &params.q_batch_stride, &params.q_row_stride, &params.q_head_stride);
  set_strides(k, &params.k_batch_stride, &params.k_row_stride, &params.k_head_stride);
  set_strides(v, &params.v_batch_stride, &params.v_row_stride, &params.v_head_stride);
  set_strides(out, &params.o_batch_stride, &params.o_row_stride, &params.o_head_stride);
  params.batch = static_cast<int>(batch);
  params.heads = static_cast<int>(heads);
  params.seqlen = static_cast<int>(tokens);
  params.seqlen_k = static_cast<int>(k.size(1));
  params.head_dim = static_cast<int>(dim);
  params.bf16 = q.dtype() == DType::bf16;
  params.f32 = q.dtype() == DType::f32;
  params.scale = scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(dim));
  if (mask) {
    params.row_offsets = mask->row_offsets.data<int32_t>();
    params.key_blocks = mask->key_blocks.data<int32_t>();
    params.mask_heads = mask->slots;
    params.mask_block_q = mask->block_q;
    params.mask_block_k = mask->block_k;
  }

  if (token_major) {
    const Tensor& flags = token_major->permute;
    const VideoLayout& layout = token_major->layout;
    check_permute_flags(flags, batch, heads, q.device(), "attention");
    VDIT_CHECK(layout.tokens() == tokens && k.size(1) == tokens, ErrorCode::invalid_argument,
               "attention: token-major slots need S = S_k = the layout's {} tokens ({}), q is {}, k is {}",
               layout.tokens(), layout.to_string(), describe_operand(q), describe_operand(k));
    params.unpermute = flags.data<uint8_t>();
    params.unpermute_slots = static_cast<int>(flags.size(0));
    params.frames = static_cast<int>(layout.frames);
    params.frame_tokens = static_cast<int>(layout.frame_tokens());
    params.text = static_cast<int>(layout.text);
    params.text_first = layout.text_position == TextPosition::first;
    if (const Tensor* g = token_major->gathered) {
      for (int i = 0; i < 3; ++i)
        check_operand(g[i], i == 0 ? "gathered q" : i == 1 ? "gathered k" : "gathered v", q, i == 0 ? q : k,
                      i == 0 ? "q" : "k");
      auto same_strides = [](const Tensor& a, const Tensor& b) {
        for (int d = 0; d < 4; ++d)
          if (a.stride(d) != b.stride(d)) return false;
        return true;
      };
      VDIT_CHECK(same_strides(g[0], q) && same_strides(g[1], k) && same_strides(g[2], v), ErrorCode::invalid_argument,
                 "attention: the gathered Q, K, V must have the strides of q, k, v");
      params.q_token_major = g[0].raw_data();
      params.k_token_major = g[1].raw_data();
      params.v_token_major = g[2].raw_data();
    }
  }

  const int device = q.device().index;
  const bool sm90_fits = !params.f32 && cuda::is_sm90_device(device) && cuda::flash_fwd_sm90_supports(params);
  if (token_major) {
    const bool on_sm90 = sm90_fits && (kernel == FlashKernel::automatic || kernel == FlashKernel::sm90);
    VDIT_CHECK(!token_major->gathered || on_sm90, ErrorCode::unsupported,
               "attention: flagged-slot-only gathered Q, K, V need the sm90 kernel, which does not take q {} here",
               describe_operand(q));
    if (!on_sm90) {
      // Only sm90 stores O back in frame-major order itself: run into a token-major O, then scatter.
      const Tensor token_major_out = Tensor::empty(out.shape(), out.dtype(), out.device());
      const FlashKernel ran = attention_cuda(q, k, v, mask, scale, token_major_out, lse, stream, kernel);
      scatter_from_token_major_gpu(std::span<const Tensor>(&token_major_out, 1), std::span<const Tensor>(&out, 1),
                                   token_major->layout, token_major->permute, stream);
      return ran;
    }
  }
  if (kernel == FlashKernel::automatic && params.f32) kernel = FlashKernel::f32;
  if (kernel == FlashKernel::automatic) kernel = sm90_fits ? FlashKernel::sm90 : FlashKernel::sm80;
  VDIT_CHECK((kernel == FlashKernel::f32) == params.f32, ErrorCode::unsupported,
             "attention: q is {}; the {} kernel takes {}", describe_operand(q), flash_kernel_name(kernel),
             kernel == FlashKernel::f32 ? "f32 alone" : "bf16 or f16");
  if (kernel == FlashKernel::f32) {
    VDIT_CHECK(cuda::attention_f32_supports(params), ErrorCode::unsupported,
               "attention: the f32 kernel does not support q {}, k {} (mask blocks {}x{}, {} mask slots)",
               describe_operand(q), describe_operand(k), params.mask_block_q, params.mask_block_k,
               params.mask_heads);
  } else if (kernel == FlashKernel::sm90) {
    VDIT_CHECK(cuda::flash_fwd_sm90_supports(params), ErrorCode::unsupported,
               "attention: the sm90 kernel does not support q {}, k {} (mask blocks {}x{}; with a mask, keys "
               "must number as many as queries) on this device",
               describe_operand(q), describe_operand(k), params.mask_block_q, params.mask_block_k);
  } else {
    VDIT_CHECK(cuda::flash_fwd_sm80_supports(params), ErrorCode::unsupported,
               "attention: the sm80 kernel does not support q {}, k {}, v {}, out {} with strides {}/{}/{} "
               "(needs 16-byte aligned data, strides in multiples of 8 elements, mask blocks {}x{} in "
               "multiples of {})",
               describe_operand(q), describe_operand(k), describe_operand(v), describe_operand(out),
               q.stride(0), q.stride(1), q.stride(2), params.mask_block_q, params.mask_block_k,
               cuda::kSm80MaskBlockMultiple);
  }
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  switch (kernel) {
    case FlashKernel::f32: cuda::attention_f32(params, cuda_stream); break;
    case FlashKernel::sm90: cuda::flash_fwd_sm90(params, cuda_stream); break;
    case FlashKernel::automatic:  // resolved above
    case FlashKernel::sm80: cuda::flash_fwd_sm80(params, cuda_stream); break;
  }
  check_cuda(cudaGetLastError(), fmt::format("{} kernel launch", flash_kernel_name(kernel)).c_str());
  return kernel;
}

}  // namespace vdit
