// The online profiler on the GPU (DESIGN.md section 4). Once per profile (rows, candidates and
// layout fixed): which keys each candidate keeps for each sampled row, as bits in the order the
// partial-output kernel's threads hold their scores (launch_profile_kept). Then per call, in three
// launches with no host wait:
//  1. per (key chunk, slot, 64 sampled rows): S = Q K^T on the tensor cores once per row and key
//     tile, and from it the online-softmax partial outputs of dense and of every candidate (a key
//     counts for a candidate when its bit is set: its key block, in the candidate's order, is in the
//     row's CSR row);
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
constexpr int kProfileThreads = 256;  // of a partial-output block: 8 warps of 8 sampled rows

// 32-bit words of keep bits per (row tile, key step, thread): one per candidate, padded to one
// 16-byte copy.
constexpr int kProfileKeptWords = 4;
static_assert(kProfileMaxCandidates <= kProfileKeptWords);

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
  const uint32_t* kept = nullptr;          // device: launch_profile_kept's bits for these rows and candidates
  int64_t key_steps = 0;                   // ceil(tokens / kProfileKeyTile)
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

// Keep bits for every (batch item, row tile, key step of kProfileKeyTile keys, thread), in
// kProfileKeptWords words each (keys past the layout: none). `kept` holds
// batch * row tiles * key_steps * kProfileThreads of them; params' kept is not read.
cudaError_t launch_profile_kept(const ProfileParams& params, uint32_t* kept, cudaStream_t stream);

cudaError_t launch_profile_heads(const ProfileParams& params, cudaStream_t stream);

}  // namespace vdit::cuda
