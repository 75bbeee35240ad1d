// Token-major gather/scatter: a memory-bound copy in 16-byte vectors. Consecutive threads move
// consecutive vectors of the destination, so stores are fully coalesced and loads read whole
// D-element head rows; each thread has several loads in flight before its first store.
#include "kernels/cuda/permute.h"
#include "kernels/cuda/token_major.h"

#include <limits>

namespace vdit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;

struct Geometry {
  uint32_t vectors;          // per tensor
  uint32_t row_vectors;      // H * D-row vectors, per token
  uint32_t head_vectors;     // vectors per head row
  uint32_t tokens, heads;
  uint32_t video_begin, video_end, frames, frame_tokens;
};

template <typename Vec>
__global__ void __launch_bounds__(kThreads) permute_tokens(PermuteParams p, Geometry g) {
  const Vec* __restrict__ src = static_cast<const Vec*>(p.src[blockIdx.y]);
  Vec* __restrict__ dst = static_cast<Vec*>(p.dst[blockIdx.y]);
  const uint32_t base = blockIdx.x * (kThreads * kUnroll) + threadIdx.x;
  Vec values[kUnroll];
  uint32_t targets[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const uint32_t index = base + u * kThreads;
    targets[u] = index;
    if (index >= g.vectors) continue;
    const uint32_t row = index / g.row_vectors;            // b * S + token
    const uint32_t in_row = index - row * g.row_vectors;   // h * head_vectors + c
    const uint32_t b = row / g.tokens;
    const uint32_t token = row - b * g.tokens;
    const uint32_t h = in_row / g.head_vectors;
    uint32_t source = token;
    const bool flagged = __ldg(p.permute + (p.permute_slots == g.heads ? h : b * g.heads + h));
    if (p.flagged_only && !flagged) {
      targets[u] = g.vectors;  // nothing to write
      continue;
    }
    if (token >= g.video_begin && token < g.video_end && flagged) {
      const uint32_t vi = token - g.video_begin;
      source = g.video_begin + (p.to_token_major ? frame_major_of_token_major(vi, g.frames, g.frame_tokens)
                                                 : token_major_of_frame_major(vi, g.frames, g.frame_tokens));
    }
    values[u] = __ldg(src + (row - token + source) * g.row_vectors + in_row);
  }
#pragma unroll
  for (int u = 0; u < kUnroll; ++u)
    if (targets[u] < g.vectors) dst[targets[u]] = values[u];
}

bool aligned(const void* pointer, int bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

template <typename Vec>
cudaError_t launch(const PermuteParams& p, cudaStream_t stream) {
  const int64_t head_vectors = p.row_bytes / static_cast<int64_t>(sizeof(Vec));
  const int64_t vectors = p.batch * p.tokens * p.heads * head_vectors;
  if (vectors == 0) return cudaSuccess;
  if (vectors > std::numeric_limits<int32_t>::max()) return cudaErrorInvalidValue;
  Geometry g;
  g.vectors = static_cast<uint32_t>(vectors);
  g.row_vectors = static_cast<uint32_t>(p.heads * head_vectors);
  g.head_vectors = static_cast<uint32_t>(head_vectors);
  g.tokens = static_cast<uint32_t>(p.tokens);
  g.heads = static_cast<uint32_t>(p.heads);
  g.video_begin = static_cast<uint32_t>(p.video_begin);
  g.video_end = static_cast<uint32_t>(p.video_begin + p.frames * p.frame_tokens);
  g.frames = static_cast<uint32_t>(p.frames);
  g.frame_tokens = static_cast<uint32_t>(p.frame_tokens);
  const dim3 grid(static_cast<unsigned>((vectors + kThreads * kUnroll - 1) / (kThreads * kUnroll)), p.tensors);
  permute_tokens<Vec><<<grid, kThreads, 0, stream>>>(p, g);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_permute_tokens(const PermuteParams& p, cudaStream_t stream) {
  if (p.tensors < 1 || p.tensors > PermuteParams::kMaxTensors || p.row_bytes <= 0) return cudaErrorInvalidValue;
  int width = 16;
  for (; width > 2; width /= 2) {
    bool ok = p.row_bytes % width == 0;
    for (int t = 0; t < p.tensors; ++t) ok = ok && aligned(p.src[t], width) && aligned(p.dst[t], width);
    if (ok) break;
  }
  if (p.row_bytes % width != 0) return cudaErrorInvalidValue;
  switch (width) {
    case 16: return launch<uint4>(p, stream);
    case 8: return launch<uint2>(p, stream);
    case 4: return launch<uint32_t>(p, stream);
    default: return launch<unsigned short>(p, stream);
  }
}

}  // namespace vdit::cuda
