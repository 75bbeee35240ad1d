// The token-major permutation on the GPU (DESIGN.md section 3): per (batch item, head), either the
// gather of the video tokens into token-major order (f*L + p moves to p*T + f) or its inverse,
// or a plain copy where the slot's flag is 0. Up to three tensors (Q, K, V) in one launch.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace vdit::cuda {

struct PermuteParams {
  static constexpr int kMaxTensors = 3;
  const void* src[kMaxTensors] = {};  // [B, S, H, D] contiguous, device
  void* dst[kMaxTensors] = {};        // same shape, device; must not overlap src
  int tensors = 0;                    // 1..3, all of the same shape and element size
  int64_t batch = 0, tokens = 0, heads = 0;
  int64_t row_bytes = 0;              // D * element size
  int64_t video_begin = 0, frames = 0, frame_tokens = 0;
  const uint8_t* permute = nullptr;   // device flags: [heads] (shared by the batch) or [batch * heads]
  int64_t permute_slots = 0;          // heads or batch * heads
  bool to_token_major = true;         // gather; false: scatter back to frame-major
  bool flagged_only = false;          // leave the rows of slots whose flag is 0 unwritten
};

// Picks the widest vector (16, 8, 4 or 2 bytes) that row_bytes and the pointers allow.
cudaError_t launch_permute_tokens(const PermuteParams& params, cudaStream_t stream);

}  // namespace vdit::cuda
