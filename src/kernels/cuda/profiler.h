// The online profiler on the GPU (DESIGN.md section 4), in three launches with no host wait:
//  1. per (key chunk, slot, 64 sampled rows): S = Q K^T on the tensor cores once per row and key
//     tile, and from it the online-softmax partial outputs of dense and of every candidate (a key
//     counts for a candidate when its key block, in the candidate's order, is in the row's CSR row);
//  2. per (slot, row): the chunks merged, each candidate's squared error against dense;
//  3. per slot: MSE, relative error, argmin (ties to the earlier candidate), dense fallback, the
//     slot code and the permute flag.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/cuda/mask_builder.h"

namespace vdit::cuda {

constexpr int kProfileMaxCandidates = 3;
constexpr int kProfileRowTile = 64;  // sampled rows per block
constexpr int kProfileKeyTile = 128;  // chunks are multiples of it (keys per pipeline step: 128)

// n / d for 0 <= n < 2^31 as umulhi(2n, mul) >> shift: shift = ceil(log2 d), mul = ceil(2^(31 +
// shift) / d) (then n * mul / 2^(31 + shift) lies above n / d by less than 2^-shift <= 1 / d).
struct ProfileDivisor {
  uint32_t mul = 0;
  int32_t shift = 0;
};

struct ProfileParams {
  const void* q = nullptr;  // [B, S, H, D] contiguous, bf16 or f16
  const void* k = nullptr;
  const void* v = nullptr;
  bool bf16 = true;
  int batch = 0, heads = 0, head_dim = 0;  // D: 64, 96 or 128
  MaskGeometry geometry;                   // the layout and the profile's block sizes
  const MaskPattern* patterns = nullptr;   // device: the candidates (dense, spatial or temporal)
  int candidates = 0;                      // 1 .. kProfileMaxCandidates
  const int32_t* rows = nullptr;           // device [B, rows]: sampled frame-major tokens
  int sample_rows = 0;
  int chunks = 0;                          // key chunks per (slot, row tile)
  int64_t chunk_keys = 0;                  // a multiple of kProfileKeyTile
  float scale_log2 = 0.f;                  // log2(e) / sqrt(D)
  ProfileDivisor frame_div, block_div;     // set by launch_profile_heads: geometry.frame_tokens, block_k
  double dense_fallback = 0.0;             // > 0: code -1 when the best relative error exceeds it
  // Workspace (device).
  float2* partial_stats = nullptr;   // [slot][row][chunk][output]: (reference in log2 units, sum)
  float* partial_out = nullptr;      // [slot][row][chunk][output][D]: outputs scaled by 2^-reference
  double* row_errors = nullptr;      // [slot][row][output]: [0] dense sum of squares, [c+1] squared error
  // Results (device).
  int32_t* choice = nullptr;         // [slot]
  uint8_t* permute = nullptr;        // [slot]
  float* mse = nullptr;              // [slot][candidate]
  float* relative_error = nullptr;   // [slot][candidate]
};

// Key chunks per (slot, row tile) that keep every multiprocessor busy for this shape (one block a
// multiprocessor at every head dim).
int profile_chunks(int slots, int row_tiles, int64_t tokens, int candidates);

cudaError_t launch_profile_heads(const ProfileParams& params, cudaStream_t stream);

}  // namespace vdit::cuda
