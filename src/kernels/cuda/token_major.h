// The token-major order of DESIGN.md section 3 for the CUDA kernels that move rows between orders:
// of T frames of L video tokens, token-major position p*T + f holds frame-major token f*L + p (text
// tokens keep their places; `v` below counts video tokens only). The CPU permutation
// (src/attention/permutation.cpp) spells it out on its own: it is the oracle these are tested against.
#pragma once

#include <cstdint>

namespace vdit::cuda {

// The frame-major video token at token-major position v.
__device__ __forceinline__ uint32_t frame_major_of_token_major(uint32_t v, uint32_t frames, uint32_t frame_tokens) {
  const uint32_t place = v / frames;
  return (v - place * frames) * frame_tokens + place;
}

// The token-major video token at frame-major position v, whose frame v / frame_tokens is `frame`
// (for callers that divide their own way, e.g. by multiplying).
__device__ __forceinline__ uint32_t token_major_of_frame_major(uint32_t v, uint32_t frame, uint32_t frames,
                                                               uint32_t frame_tokens) {
  return (v - frame * frame_tokens) * frames + frame;
}

// The token-major video token at frame-major position v.
__device__ __forceinline__ uint32_t token_major_of_frame_major(uint32_t v, uint32_t frames, uint32_t frame_tokens) {
  return token_major_of_frame_major(v, v / frame_tokens, frames, frame_tokens);
}

}  // namespace vdit::cuda
