// f32 attention forward on the CUDA cores (attention_f32.h). One CTA of 128 threads owns a
// (batch, head, 64-query tile); K/V tiles of 32 keys are double-buffered in shared memory (cp.async
// when the data is 16-byte aligned), with an online softmax and f32 accumulation. Thread (ty, tx),
// ty = tid / 8, tx = tid % 8, owns query rows ty + 16 i (i < 4): for S = Q K^T the keys tx + 8 j of
// the tile, for O the float4 columns 4 tx + 32 m. The 8 threads of a row are 8 adjacent lanes of
// one warp, so row max and sum reduce by shuffles and P goes through warp-private shared rows.
// Padded shared rows make every float4 read conflict-free.
//
// Sparse CTAs walk their mask row's CSR list like flash_fwd_sm80: each listed key block is split
// into 32-key tiles, keys past the block's end or past S_k score -inf, and query tiles never
// straddle two mask rows (a mask block of Bq rows gets ceil(Bq / 64) tiles, the last one partial),
// so mask blocks may be any size.
#include <cmath>
#include <cstdint>

#include "kernels/cuda/attention_f32.h"
#include "kernels/cuda/mask_item.h"
#include "kernels/cuda/static_switch.h"

namespace vdit::cuda {
namespace {

constexpr int kBlockQ = 64;
constexpr int kBlockK = 32;
constexpr int kThreads = 128;
constexpr int kRows = kBlockQ / (kThreads / 8);  // query rows per thread
constexpr int kKeys = kBlockK / 8;                // keys per thread in S

template <int kHeadDim>
struct F32Tiles {
  static constexpr int kRow = kHeadDim + 4;  // floats per shared Q/K/V row: rows 1 apart 4 banks apart
  static constexpr int kPRow = kBlockK + 8;  // floats per shared P row: rows 1 apart 8 banks apart
  static constexpr int kChunks = kHeadDim / 4;
  static constexpr int kOChunks = kHeadDim / 32;  // float4 columns of O per thread and row
  static constexpr int kQFloats = kBlockQ * kRow;
  static constexpr int kKVFloats = kBlockK * kRow;
  static constexpr int kSmemBytes = (kQFloats + 4 * kKVFloats + kBlockQ * kPRow) * 4;  // K, V: 2 stages
  static_assert(kHeadDim % 32 == 0);
};

__device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

__device__ __forceinline__ void cp_async_16(float* dst, const float* src) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Rows [row0, row0 + kTileRows) of a [rows, D] slab into a padded shared tile; rows at or past
// `rows_valid` are zero-filled, so a ragged tile never brings NaN or Inf into P V. kVec: 16-byte
// aligned rows, copied by cp.async; else element by element.
template <int kHeadDim, int kTileRows, bool kVec>
__device__ __forceinline__ void load_rows(float* dst, const float* base, int64_t row_stride, int row0,
                                          int rows_valid, int tid) {
  using T = F32Tiles<kHeadDim>;
  static_assert(kTileRows * T::kChunks % kThreads == 0);
#pragma unroll
  for (int it = 0; it < kTileRows * T::kChunks / kThreads; ++it) {
    const int i = it * kThreads + tid;
    const int r = i / T::kChunks, c = i % T::kChunks;
    float* d = dst + r * T::kRow + c * 4;
    const int row = row0 + r;
    if (row >= rows_valid) {
      *reinterpret_cast<float4*>(d) = make_float4(0.f, 0.f, 0.f, 0.f);
      continue;
    }
    const float* s = base + static_cast<int64_t>(row) * row_stride + c * 4;
    if constexpr (kVec) {
      cp_async_16(d, s);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) d[e] = __ldg(s + e);
    }
  }
}

struct Work {
  int batch, head;
  int q0, q_end;               // queries [q0, min(q0 + kBlockQ, q_end)) are this CTA's
  const int32_t* key_blocks;   // null: dense
  int listed;                  // key blocks listed for the mask row
};

// Dense: query tile fastest, then head, then batch. Sparse: per mask row (slot * q_blocks +
// q_block), the batch items when the mask is shared by them, then the row's query tiles fastest.
__device__ __forceinline__ bool decode_work(const FlashParams& p, Work* w) {
  int item = blockIdx.x;
  if (p.row_offsets == nullptr) {
    const int q_tiles = ceil_div(p.seqlen, kBlockQ);
    w->q0 = item % q_tiles * kBlockQ;
    item /= q_tiles;
    w->head = item % p.heads;
    w->batch = item / p.heads;
    w->q_end = p.seqlen;
    w->key_blocks = nullptr;
    w->listed = 0;
    return true;
  }
  const MaskItem m = decode_mask_item(p, item, ceil_div(p.mask_block_q, kBlockQ));
  const int block_start = m.q_block * p.mask_block_q;
  w->batch = m.batch;
  w->head = m.head;
  w->q0 = block_start + m.sub * kBlockQ;
  w->q_end = min(block_start + p.mask_block_q, p.seqlen);
  if (w->q0 >= w->q_end) return false;
  const int begin = p.row_offsets[m.row];
  w->key_blocks = p.key_blocks + begin;
  w->listed = p.row_offsets[m.row + 1] - begin;
  return true;
}

template <int kHeadDim, bool kVec>
__global__ void __launch_bounds__(kThreads) attention_f32_kernel(const FlashParams p) {
  using T = F32Tiles<kHeadDim>;
  extern __shared__ __align__(16) float smem[];
  float* s_q = smem;
  float* s_k = s_q + T::kQFloats;
  float* s_v = s_k + 2 * T::kKVFloats;
  float* s_p = s_v + 2 * T::kKVFloats;

  Work work;
  if (!decode_work(p, &work)) return;
  const int tid = threadIdx.x;
  const int ty = tid / 8, tx = tid % 8;
  const int S_k = p.seqlen_k > 0 ? p.seqlen_k : p.seqlen;

  // Key tiles: each listed mask block in 32-key tiles (its last one ragged when the block is not a
  // multiple of 32).
  const int sub_k = ceil_div(p.mask_block_k, kBlockK);
  const int n_tiles = key_tile_count(work.key_blocks, work.listed, S_k, p.mask_block_k, kBlockK);
  // Tile j's keys: [first, end), loaded from `first` on.
  auto tile_keys = [&](int j, int* first, int* end) {
    if (work.key_blocks == nullptr) {
      *first = j * kBlockK;
      *end = min(*first + kBlockK, S_k);
    } else {
      const int block_start = __ldg(work.key_blocks + j / sub_k) * p.mask_block_k;
      *first = block_start + j % sub_k * kBlockK;
      *end = min(min(*first + kBlockK, block_start + p.mask_block_k), S_k);
    }
  };

  const float* q = static_cast<const float*>(p.q) + work.batch * p.q_batch_stride + work.head * p.q_head_stride;
  const float* k = static_cast<const float*>(p.k) + work.batch * p.k_batch_stride + work.head * p.k_head_stride;
  const float* v = static_cast<const float*>(p.v) + work.batch * p.v_batch_stride + work.head * p.v_head_stride;
  float* o = static_cast<float*>(p.o) + work.batch * p.o_batch_stride + work.head * p.o_head_stride;

  load_rows<kHeadDim, kBlockQ, kVec>(s_q, q, p.q_row_stride, work.q0, work.q_end, tid);
  int first = 0, end = 0;
  if (n_tiles > 0) {
    tile_keys(0, &first, &end);
    load_rows<kHeadDim, kBlockK, kVec>(s_k, k, p.k_row_stride, first, S_k, tid);
    load_rows<kHeadDim, kBlockK, kVec>(s_v, v, p.v_row_stride, first, S_k, tid);
  }
  cp_async_commit();

  float4 acc[kRows][T::kOChunks];
  float row_max[kRows];  // running max of the scores, times scale * log2(e)
  float row_sum[kRows];  // this thread's part of the running sum of exp2(...)
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
#pragma unroll
    for (int m = 0; m < T::kOChunks; ++m) acc[i][m] = make_float4(0.f, 0.f, 0.f, 0.f);
    row_max[i] = -INFINITY;
    row_sum[i] = 0.f;
  }
  const float scale_log2 = p.scale * 1.4426950408889634f;
  float* p_rows = s_p + ty * T::kPRow;  // row ty + 16 i at p_rows + 16 i * kPRow

  for (int j = 0; j < n_tiles; ++j) {
    // Past this barrier tile j has landed and every thread is done with tile j - 1, whose stage the
    // copy of tile j + 1 then refills while tile j is computed.
    cp_async_wait_all();
    __syncthreads();
    const int stage = j % 2;
    const int key0 = first, key_end = end;
    if (j + 1 < n_tiles) {
      tile_keys(j + 1, &first, &end);
      load_rows<kHeadDim, kBlockK, kVec>(s_k + (1 - stage) * T::kKVFloats, k, p.k_row_stride, first, S_k, tid);
      load_rows<kHeadDim, kBlockK, kVec>(s_v + (1 - stage) * T::kKVFloats, v, p.v_row_stride, first, S_k, tid);
    }
    cp_async_commit();

    const float* s_k_stage = s_k + stage * T::kKVFloats;
    float s[kRows][kKeys];
#pragma unroll
    for (int i = 0; i < kRows; ++i)
#pragma unroll
      for (int n = 0; n < kKeys; ++n) s[i][n] = 0.f;
#pragma unroll 4
    for (int d = 0; d < kHeadDim; d += 4) {
      float4 qv[kRows], kv[kKeys];
#pragma unroll
      for (int i = 0; i < kRows; ++i) qv[i] = *reinterpret_cast<const float4*>(s_q + (ty + 16 * i) * T::kRow + d);
#pragma unroll
      for (int n = 0; n < kKeys; ++n)
        kv[n] = *reinterpret_cast<const float4*>(s_k_stage + (tx + 8 * n) * T::kRow + d);
#pragma unroll
      for (int i = 0; i < kRows; ++i)
#pragma unroll
        for (int n = 0; n < kKeys; ++n) {
          s[i][n] = fmaf(qv[i].x, kv[n].x, s[i][n]);
          s[i][n] = fmaf(qv[i].y, kv[n].y, s[i][n]);
          s[i][n] = fmaf(qv[i].z, kv[n].z, s[i][n]);
          s[i][n] = fmaf(qv[i].w, kv[n].w, s[i][n]);
        }
    }

    // Keys outside [key0, key_end) score -inf; every tile holds at least one key inside, so each
    // row's new max is finite.
#pragma unroll
    for (int n = 0; n < kKeys; ++n) {
      const int key = key0 + tx + 8 * n;
      if (key >= key_end)
#pragma unroll
        for (int i = 0; i < kRows; ++i) s[i][n] = -INFINITY;
    }

    // Online softmax; P to this warp's shared rows.
    float alpha[kRows];
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      float mx = s[i][0];
#pragma unroll
      for (int n = 1; n < kKeys; ++n) mx = fmaxf(mx, s[i][n]);
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
      const float new_max = fmaxf(row_max[i], mx * scale_log2);
      alpha[i] = exp2f(row_max[i] - new_max);
      row_max[i] = new_max;
      float sum = 0.f;
#pragma unroll
      for (int n = 0; n < kKeys; ++n) {
        const float e = exp2f(fmaf(s[i][n], scale_log2, -new_max));
        sum += e;
        p_rows[16 * i * T::kPRow + tx + 8 * n] = e;
      }
      row_sum[i] = row_sum[i] * alpha[i] + sum;
#pragma unroll
      for (int m = 0; m < T::kOChunks; ++m) {
        acc[i][m].x *= alpha[i];
        acc[i][m].y *= alpha[i];
        acc[i][m].z *= alpha[i];
        acc[i][m].w *= alpha[i];
      }
    }
    __syncwarp();

    // O += P V.
    const float* s_v_stage = s_v + stage * T::kKVFloats + 4 * tx;
#pragma unroll 2
    for (int c = 0; c < kBlockK; c += 4) {
      float4 pv[kRows];
#pragma unroll
      for (int i = 0; i < kRows; ++i) pv[i] = *reinterpret_cast<const float4*>(p_rows + 16 * i * T::kPRow + c);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
#pragma unroll
        for (int m = 0; m < T::kOChunks; ++m) {
          const float4 vv = *reinterpret_cast<const float4*>(s_v_stage + (c + e) * T::kRow + 32 * m);
#pragma unroll
          for (int i = 0; i < kRows; ++i) {
            const float pe = e == 0 ? pv[i].x : e == 1 ? pv[i].y : e == 2 ? pv[i].z : pv[i].w;
            acc[i][m].x = fmaf(pe, vv.x, acc[i][m].x);
            acc[i][m].y = fmaf(pe, vv.y, acc[i][m].y);
            acc[i][m].z = fmaf(pe, vv.z, acc[i][m].z);
            acc[i][m].w = fmaf(pe, vv.w, acc[i][m].w);
          }
        }
      }
    }
  }
  cp_async_wait_all();

  // Epilogue: normalise and store this CTA's rows; LSE by the row's first lane.
  const int q_stop = min(work.q0 + kBlockQ, work.q_end);
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    float sum = row_sum[i];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    sum += __shfl_xor_sync(0xffffffffu, sum, 4);
    const int row = work.q0 + ty + 16 * i;
    if (row >= q_stop) continue;
    const float inv = sum > 0.f ? 1.f / sum : 0.f;  // a row with no kept key block: O = 0
    float* out = o + static_cast<int64_t>(row) * p.o_row_stride + 4 * tx;
#pragma unroll
    for (int m = 0; m < T::kOChunks; ++m) {
      const float4 r = make_float4(acc[i][m].x * inv, acc[i][m].y * inv, acc[i][m].z * inv, acc[i][m].w * inv);
      if constexpr (kVec) {
        *reinterpret_cast<float4*>(out + 32 * m) = r;
      } else {
        out[32 * m] = r.x;
        out[32 * m + 1] = r.y;
        out[32 * m + 2] = r.z;
        out[32 * m + 3] = r.w;
      }
    }
    if (p.lse != nullptr && tx == 0)
      p.lse[(static_cast<int64_t>(work.batch) * p.heads + work.head) * p.seqlen + row] =
          sum > 0.f ? row_max[i] * 0.6931471805599453f + logf(sum) : -INFINITY;
  }
}

int64_t host_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The grid decode_work expects.
int64_t grid_size(const FlashParams& p) {
  if (p.row_offsets == nullptr) return int64_t{p.batch} * p.heads * host_ceil_div(p.seqlen, kBlockQ);
  const int64_t rows = int64_t{p.mask_heads} * host_ceil_div(p.seqlen, p.mask_block_q);
  const int64_t batch_factor = p.mask_heads == p.heads ? p.batch : 1;
  return rows * batch_factor * host_ceil_div(p.mask_block_q, kBlockQ);
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// Whether every row of Q, K, V and O starts 16-byte aligned (float4 loads and stores).
bool vectorizable(const FlashParams& p) {
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.o)) return false;
  for (int64_t stride : {p.q_batch_stride, p.q_row_stride, p.q_head_stride, p.k_batch_stride, p.k_row_stride,
                         p.k_head_stride, p.v_batch_stride, p.v_row_stride, p.v_head_stride, p.o_batch_stride,
                         p.o_row_stride, p.o_head_stride})
    if (stride % 4 != 0) return false;
  return true;
}

template <int kHeadDim, bool kVec>
void launch(const FlashParams& p, cudaStream_t stream) {
  auto kernel = attention_f32_kernel<kHeadDim, kVec>;
  constexpr int kSmemBytes = F32Tiles<kHeadDim>::kSmemBytes;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes) != cudaSuccess)
    return;  // the error stays for the caller's cudaGetLastError
  const int64_t grid = grid_size(p);
  if (grid > 0) kernel<<<static_cast<unsigned>(grid), kThreads, kSmemBytes, stream>>>(p);
}

}  // namespace

bool attention_f32_supports(const FlashParams& p) {
  if (!p.f32 || p.unpermute) return false;
  if (p.head_dim != 64 && p.head_dim != 96 && p.head_dim != 128) return false;
  if (p.batch <= 0 || p.heads <= 0 || p.seqlen <= 0 || p.seqlen_k < 0 || !(p.scale > 0.f)) return false;
  if (p.row_offsets != nullptr) {
    if (p.seqlen_k != 0 && p.seqlen_k != p.seqlen) return false;  // a mask covers S x S tokens
    if (p.mask_block_q <= 0 || p.mask_block_k <= 0) return false;
    if (p.mask_heads != p.heads && p.mask_heads != p.batch * p.heads) return false;
  }
  return grid_size(p) <= INT32_MAX;
}

void attention_f32(const FlashParams& params, cudaStream_t stream) {
  VDIT_HEADDIM_SWITCH(params.head_dim, kHeadDim, [&] {
    VDIT_BOOL_SWITCH(vectorizable(params), kVec, [&] { launch<kHeadDim, kVec>(params, stream); });
  });
}

}  // namespace vdit::cuda
