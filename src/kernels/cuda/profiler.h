// The online profiler on the GPU (DESIGN.md section 4). Once per profile (rows, candidates and
// layout fixed): which keys each candidate keeps for each sampled row, as bits in the order the
// partial-output kernel's threads hold their scores (launch_profile_kept). Then per call, in two
// launches with no host wait:
//  1. per block (one a multiprocessor; with the wgmma kernel a warpgroup, two a multiprocessor), an
//     equal share of the (slot, 64 sampled rows, 128-key step) steps, crossing from one slot into
//     the next where the share ends; for each piece of a (slot, row tile), the partial outputs of
//     dense and of every candidate over the piece's keys: S = Q K^T on the tensor cores once per
//     row and key tile, then online softmax (a key counts for a candidate when its bit is set: its
//     key block, in the candidate's order, is in the row's CSR row);
//  2. per (slot, row), a warp: the pieces merged, each candidate's squared error against dense; then
//     per slot, by the block that finishes it last: MSE, relative error, argmin (ties to the earlier
//     candidate), dense fallback, the slot code and the permute flag.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/cuda/mask_builder.h"

namespace vdit::cuda {

constexpr int kProfileMaxCandidates = 3;
constexpr int kProfileRowTile = 64;  // sampled rows per block
constexpr int kProfileKeyTile = 128;  // keys per pipeline step
constexpr int kProfileThreads = 256;  // of a partial-output block: 8 warps of 8 sampled rows

// Which partial-output kernel runs:
// - mma_sync (profiler.cu): any GPU from sm_80 on, every head dim, dtype and candidate count.
// - wgmma (profiler_sm90.cu): sm_90a, bf16, d = 64, one or two candidates. Per multiprocessor, two
//   pipelines, each a warpgroup of the 64 rows (wgmma) whose first thread loads K and V (TMA).
enum class ProfileKernel { mma_sync, wgmma };

// The kernel for these inputs on the current device.
ProfileKernel profile_kernel(int head_dim, bool bf16, int candidates);

// 32-bit words of keep bits per (row tile, key step, thread): one per candidate (mma_sync: a score
// each of the thread's 8 x 4) or two (wgmma: 2 rows x 32 scores), padded to one 16-byte copy.
constexpr int kProfileKeptWords = 4;
static_assert(kProfileMaxCandidates <= kProfileKeptWords);
constexpr int kProfileWgmmaCandidates = kProfileKeptWords / 2;

// Threads that hold keep bits in a (row tile, key step): those of the partial block (mma_sync) or
// of one warpgroup (wgmma).
VDIT_HOST_DEVICE constexpr int profile_kept_threads(ProfileKernel kernel) {
  return kernel == ProfileKernel::wgmma ? 128 : kProfileThreads;
}

// Key steps of kProfileKeyTile keys over `tokens` keys.
VDIT_HOST_DEVICE constexpr int64_t profile_key_steps(int64_t tokens) {
  return (tokens + kProfileKeyTile - 1) / kProfileKeyTile;
}

// Row tiles of kProfileRowTile sampled rows.
VDIT_HOST_DEVICE constexpr int profile_row_tiles(int sample_rows) {
  return (sample_rows + kProfileRowTile - 1) / kProfileRowTile;
}

// How the partial kernel splits `total` = slots x row tiles x key steps steps over `blocks`: block i
// runs [begin(i), begin(i + 1)); a segment (one slot and row tile: key_steps steps from segment *
// key_steps) is split over blocks block_of(its first step) .. block_of(its last), in that order.
struct ProfileSplit {
  int64_t total = 0;
  int blocks = 1;
  VDIT_HOST_DEVICE int64_t begin(int i) const { return int64_t{i} * total / blocks; }
  VDIT_HOST_DEVICE int block_of(int64_t step) const {
    int i = static_cast<int>(step * blocks / total);  // begin(i) <= step; at most one short
    while (i + 1 < blocks && begin(i + 1) <= step) ++i;
    return i;
  }
  // Blocks segment s is split over.
  VDIT_HOST_DEVICE int pieces(int64_t s, int64_t key_steps) const {
    return block_of((s + 1) * key_steps - 1) - block_of(s * key_steps) + 1;
  }
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
  ProfileSplit split;                      // of the partial kernel's work over its blocks
  int pieces = 0;                          // partial records per (slot, row): the most of any segment
  float scale_log2 = 0.f;                  // log2(e) / sqrt(D)
  ProfileKernel kernel = ProfileKernel::mma_sync;  // (profile_kernel) the kept bits' layout follows it
  const uint32_t* kept = nullptr;          // device: launch_profile_kept's bits for these rows and candidates
  int64_t key_steps = 0;                   // profile_key_steps(tokens)
  double dense_fallback = 0.0;             // > 0: code -1 when the best relative error exceeds it
  // Workspace (device).
  // [slot][row][piece][output]: (reference in log2 units, sum); sum -1: the wgmma kernel's flag that
  // a candidate's kept scores lay too far below the reference to be represented (combine_rows then
  // computes that candidate's output for the row directly).
  float2* partial_stats = nullptr;
  float* partial_out = nullptr;      // [slot][row][piece][output][D]: outputs scaled by 2^-reference
  double* row_errors = nullptr;      // [slot][row][output]: [0] dense sum of squares, [c+1] squared error
  uint32_t* tickets = nullptr;       // [slot]: 0 between calls; the combine's blocks count themselves in
  // Results (device).
  int32_t* choice = nullptr;         // [slot]
  uint8_t* permute = nullptr;        // [slot]
  float* mse = nullptr;              // [slot][candidate]
  float* relative_error = nullptr;   // [slot][candidate]
};

// The partial kernel's blocks (pieces of the split) for `total` steps: one a multiprocessor
// (mma_sync) or two (wgmma, one per consumer warpgroup), at most one a step.
int profile_blocks(int64_t total, ProfileKernel kernel);

// Sampled rows a profile takes at most: the combine's grid has a block per (slot, 4 rows) in y.
constexpr int kProfileMaxSampleRows = 4 * 65535;

// Partial records per (slot, row) for a split: the most blocks any segment is split over.
int profile_pieces(const ProfileSplit& split, int64_t key_steps);

// Keep bits for every (batch item, row tile, key step of kProfileKeyTile keys, thread), in
// kProfileKeptWords words each (keys past the layout: none), in params.kernel's order. `kept` holds
// batch * row tiles * key_steps * profile_kept_threads(kernel) of them; params' kept is not read.
cudaError_t launch_profile_kept(const ProfileParams& params, uint32_t* kept, cudaStream_t stream);

cudaError_t launch_profile_heads(const ProfileParams& params, cudaStream_t stream);

// The wgmma partial kernel (profiler_sm90.cu); launch_profile_heads calls it.
cudaError_t launch_profile_partials_sm90(const ProfileParams& params, cudaStream_t stream);

}  // namespace vdit::cuda
