// The CUDA side of vdit::attention (attention_cuda.cpp, CUDA builds only): input checks, the
// flash-kernel params, and the choice between the sm_90a and sm_80 kernels (bf16, f16) and the f32
// kernel (f32).
#pragma once

#include "vdit/attention.h"

namespace vdit {

enum class FlashKernel { automatic, sm80, sm90, f32 };

const char* flash_kernel_name(FlashKernel kernel);  // "auto", "sm80", "sm90", "f32"

// Whether `kernel` is built into this binary and can run on `device` (sm90: a 9.0 GPU).
bool flash_kernel_available(FlashKernel kernel, Device device);

// Attention on the GPU into `out` (Q's shape and dtype, on Q's device; every element is written).
// K and V are [B, S_k, H, D]; S_k may differ from Q's S when `mask` is null (every kernel). `mask`
// null: dense. `lse` null: none; else it is filled: allocated as f32 [B, H, S] when
// undefined, otherwise it must be such a tensor on Q's device. `automatic` picks f32 for f32
// tensors; for bf16/f16, sm90 on a 9.0 GPU when that kernel supports the call, else sm80. The f32
// kernel takes f32 alone, sm80 and sm90 bf16 and f16 alone. Returns the kernel that ran.
//
// `token_major` (optional): Q, K and V of the slots it flags are in token-major order (gathered by
// gather_to_token_major_gpu with the same flags and layout), and `out` gets O back in frame-major
// order for every slot: on sm90 by the kernel's own stores, elsewhere by a scatter pass. The LSE rows
// of flagged slots stay in token-major order.
struct TokenMajorSlots {
  const Tensor& permute;  // u8 [H] or [B*H] on Q's device
  const VideoLayout& layout;
  // Optional, sm90 only: Q, K, V token-major for the flagged slots alone (gather_to_token_major_gpu
  // with flagged_slots_only), while the q, k, v given are the frame-major tensors the unflagged slots
  // are read from; null: q, k, v are token-major for the flagged slots and hold every slot.
  const Tensor* gathered = nullptr;  // three tensors shaped like q, k, v
};
// Fails naming `what` unless `flags` are permute flags of a [batch, S, heads, D] tensor on `device`:
// contiguous u8 [heads] (shared by the batch) or [batch * heads].
void check_permute_flags(const Tensor& flags, int64_t batch, int64_t heads, Device device, const char* what);

FlashKernel attention_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const GpuBlockMask* mask,
                           float scale, const Tensor& out, Tensor* lse, void* stream,
                           FlashKernel kernel = FlashKernel::automatic, const TokenMajorSlots* token_major = nullptr);

}  // namespace vdit
