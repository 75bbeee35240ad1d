// The one parameter struct of the flash-attention forward kernels (dense and block-sparse, sm_80
// and sm_90a, and the f32 kernel of attention_f32.cu), passed by value. Plain C++: included by host
// code and by .cu files.
//
// Layout: Q and O are [B, S, H, D], K and V [B, S_k, H, D], with arbitrary batch/row/head strides
// (elements) and unit stride along D; LSE (optional) is f32 [B, H, S], natural log of
// sum(exp(scale * q.k)).
#pragma once

#include <cstdint>

namespace vdit::cuda {

struct FlashParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // may be null

  int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
  int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
  int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
  int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;

  int batch = 0;
  int heads = 0;
  int seqlen = 0;     // S, queries (and keys when seqlen_k is 0)
  int seqlen_k = 0;   // keys/values; 0 means seqlen. Block-sparse masks need seqlen_k == seqlen
  int head_dim = 0;   // 64, 96 or 128
  bool bf16 = true;   // else fp16 (the flash kernels)
  bool f32 = false;   // f32 Q, K, V, O: attention_f32.cu alone takes it (`bf16` is then unused)
  float scale = 0.f;  // softmax scale (usually 1/sqrt(D))

  // Block-sparse: per mask slot and query block, the sorted key blocks to visit (CSR, device
  // memory). Null row_offsets means dense. Slot of (b, h) = mask_heads == heads ? h : b*heads + h.
  // Mask blocks are mask_block_q x mask_block_k tokens, multiples of the kernel's own tiles.
  const int32_t* row_offsets = nullptr;  // mask_heads * q_blocks + 1
  const int32_t* key_blocks = nullptr;
  int mask_heads = 0;
  int mask_block_q = 128;
  int mask_block_k = 128;

  // Slots (batch, head) whose Q, K and V rows are in token-major order (temporal heads, DESIGN.md
  // section 3): with `unpermute` set (device memory, one byte per slot of unpermute_slots: H, or
  // B*H with slot b*H + h), their O rows are stored back in frame-major order, so that no scatter
  // pass follows. The layout: `frames` frames of `frame_tokens` video tokens, `text` text tokens
  // first or last. sm_90a only; the other kernels refuse it.
  const uint8_t* unpermute = nullptr;
  int unpermute_slots = 0;
  // With unpermute: where the flagged slots' token-major Q, K and V are (same strides as q, k, v), so
  // that q, k, v can stay frame-major for the others; null: q, k, v hold every slot.
  const void* q_token_major = nullptr;
  const void* k_token_major = nullptr;
  const void* v_token_major = nullptr;
  int frames = 0, frame_tokens = 0, text = 0;
  bool text_first = false;

  // Optional work order for load balance: query-tile work items sorted longest first
  // (device memory, `work_items` entries); kernels may ignore it.
  const int32_t* schedule = nullptr;
  int work_items = 0;
};

}  // namespace vdit::cuda
