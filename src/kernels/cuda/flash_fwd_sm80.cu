// Flash-attention forward for sm_80 and later (mma.sync m16n8k16, ldmatrix, cp.async), dense and
// block-sparse. One CTA of 4 warps owns a (batch, head, 128-query tile); each warp owns 32 query
// rows (two m16 tiles), so every K/V fragment read from shared memory feeds two MMAs. K/V tiles
// are double-buffered: the copy of tile j+1 is in flight while tile j is computed. A sparse CTA
// walks the CSR key-block list of its mask row, so skipped tiles cost nothing. Dense calls may have
// fewer or more keys than queries (seqlen_k, cross-attention); masks need as many as queries.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/flash_fwd.h"
#include "kernels/cuda/fragment_math.h"
#include "kernels/cuda/mask_item.h"
#include "kernels/cuda/static_switch.h"

namespace vdit::cuda {
namespace {

struct Sm80Tiles {
  int block_q;
  int block_k;
  bool q_in_registers;  // Q's MMA fragments loaded once, not re-read from shared memory per key tile
};

// The one place tile sizes are chosen. 64-key tiles keep S (64 floats a thread) and O under 255
// registers; at d = 64 Q's fragments (32 registers) also stay in registers, saving a third of the
// shared-memory reads. On H100 that measured +5% at d = 64; 128-key tiles, 32-key tiles and Q in
// registers at d = 96 and 128 all measured slower (bench/RESULTS.md).
constexpr Sm80Tiles sm80_tiles(int head_dim) {
  return head_dim <= 64 ? Sm80Tiles{128, 64, true} : Sm80Tiles{128, 64, false};
}

template <int kHeadDim_, bool kBf16_>
struct Sm80Traits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kBf16 = kBf16_;
  static constexpr int kBlockQ = sm80_tiles(kHeadDim).block_q;
  static constexpr int kBlockK = sm80_tiles(kHeadDim).block_k;
  static constexpr bool kQInRegisters = sm80_tiles(kHeadDim).q_in_registers;
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStages = 2;
  static constexpr int kMTiles = kBlockQ / kWarps / 16;  // m16 tiles per warp
  static constexpr int kNTiles = kBlockK / 8;            // n8 tiles of S per warp
  static constexpr int kDTiles = kHeadDim / 8;           // n8 tiles of O per warp
  static constexpr int kChunks = kHeadDim / 8;           // 16-byte chunks per row
  // Shared rows are padded by 16 bytes: 8 consecutive rows then start in 8 different 16-byte
  // bank groups, so ldmatrix (plain and transposed) is conflict-free for every head dim.
  static constexpr int kSmemRow = kHeadDim + 8;
  static constexpr int kQElems = kBlockQ * kSmemRow;
  static constexpr int kKVElems = kBlockK * kSmemRow;
  static constexpr int kSmemBytes = (kQElems + 2 * kStages * kKVElems) * 2;
  static_assert(kBlockQ == kSm80BlockQ && kSm80MaskBlockMultiple % kBlockK == 0);
  static_assert(kBlockQ * kChunks % kThreads == 0 && kBlockK * kChunks % kThreads == 0);
  static_assert(kNTiles % 2 == 0 && kDTiles % 2 == 0);
};

__device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; when !valid the destination is zero-filled and nothing is
// read (src must still be a valid address).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// D += A * B for one m16n8k16 tile, f32 accumulators.
template <bool kBf16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (kBf16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Copies `kRows` rows of a [rows, D] slab starting at `row0` into a padded shared tile; rows at or
// past `rows_valid` are zero-filled (ragged last tile), so they can never inject NaN or Inf. Their
// source address is clamped to a real row, though cp.async reads nothing for them.
template <class T, int kRows>
__device__ __forceinline__ void load_rows(uint32_t smem, const uint16_t* base, int64_t row_stride,
                                          int row0, int rows_valid, int tid) {
  constexpr int kIters = kRows * T::kChunks / T::kThreads;
  if constexpr (T::kThreads % T::kChunks == 0) {
    // Each thread copies one fixed chunk column of every (kThreads / kChunks)-th row: one base
    // pointer and one stride step, few live registers.
    constexpr int kRowStep = T::kThreads / T::kChunks;
    const int r0 = tid / T::kChunks;
    const int c = tid % T::kChunks;
    const uint16_t* src = base + c * 8;
    const uint32_t dst = smem + (r0 * T::kSmemRow + c * 8) * 2;
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int row = row0 + r0 + it * kRowStep;
      const bool valid = row < rows_valid;
      cp_async_16(dst + it * kRowStep * T::kSmemRow * 2,
                  src + static_cast<int64_t>(valid ? row : rows_valid - 1) * row_stride, valid);
    }
  } else {
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int i = it * T::kThreads + tid;
      const int r = i / T::kChunks;
      const int c = i % T::kChunks;
      const int row = row0 + r;
      const bool valid = row < rows_valid;
      cp_async_16(smem + (r * T::kSmemRow + c * 8) * 2,
                  base + static_cast<int64_t>(valid ? row : rows_valid - 1) * row_stride + c * 8, valid);
    }
  }
}

struct WorkItem {
  int batch;
  int head;
  int q_tile;
  const int32_t* key_blocks;  // null: dense
  int listed;                 // key blocks listed for this row (sparse)
};

// Maps blockIdx.x to its work item; see flash_fwd_sm80_grid for the grid this decodes.
template <class T>
__device__ __forceinline__ bool decode_work(const FlashParams& p, WorkItem* w) {
  int item = blockIdx.x;
  const int q_tiles = ceil_div(p.seqlen, T::kBlockQ);
  if (p.row_offsets == nullptr) {
    w->q_tile = item % q_tiles;
    item /= q_tiles;
    w->head = item % p.heads;
    w->batch = item / p.heads;
    w->key_blocks = nullptr;
    w->listed = 0;
    return true;
  }
  // Sparse: items run in the schedule's order (longest rows first); a mask shared by the batch
  // (mask_heads == heads) runs each of its rows once per batch item, batch fastest.
  const int sub_q = p.mask_block_q / T::kBlockQ;
  const MaskItem m = decode_mask_item(p, item, sub_q);
  w->batch = m.batch;
  w->head = m.head;
  w->q_tile = m.q_block * sub_q + m.sub;
  if (w->q_tile >= q_tiles) return false;
  const int begin = p.row_offsets[m.row];
  w->key_blocks = p.key_blocks + begin;
  w->listed = p.row_offsets[m.row + 1] - begin;
  return true;
}

template <class T>
__global__ void __launch_bounds__(T::kThreads, 2) flash_fwd_sm80_kernel(const FlashParams p) {
  constexpr int kHeadDim = T::kHeadDim, kBlockQ = T::kBlockQ, kBlockK = T::kBlockK;
  constexpr int kMTiles = T::kMTiles, kNTiles = T::kNTiles, kDTiles = T::kDTiles;
  constexpr int kSmemRow = T::kSmemRow;
  extern __shared__ __align__(16) unsigned char smem[];

  WorkItem work;
  if (!decode_work<T>(p, &work)) return;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int S = p.seqlen;                                 // queries
  const int S_k = p.seqlen_k > 0 ? p.seqlen_k : p.seqlen;  // keys; == S when masked
  const int q0 = work.q_tile * kBlockQ;

  // Key tiles to visit (mask blocks are whole tiles here).
  const int sub_k = p.mask_block_k / kBlockK;
  const int n_tiles = key_tile_count(work.key_blocks, work.listed, S_k, p.mask_block_k, kBlockK);
  auto key_tile = [&](int j) {
    return work.key_blocks == nullptr ? j : __ldg(work.key_blocks + j / sub_k) * sub_k + j % sub_k;
  };

  const uint16_t* q = static_cast<const uint16_t*>(p.q) + work.batch * p.q_batch_stride + work.head * p.q_head_stride;
  const uint16_t* k = static_cast<const uint16_t*>(p.k) + work.batch * p.k_batch_stride + work.head * p.k_head_stride;
  const uint16_t* v = static_cast<const uint16_t*>(p.v) + work.batch * p.v_batch_stride + work.head * p.v_head_stride;
  uint16_t* o = static_cast<uint16_t*>(p.o) + work.batch * p.o_batch_stride + work.head * p.o_head_stride;

  const uint32_t s_q = smem_address(smem);
  const uint32_t s_k = s_q + T::kQElems * 2;
  const uint32_t s_v = s_k + T::kStages * T::kKVElems * 2;

  load_rows<T, kBlockQ>(s_q, q, p.q_row_stride, q0, S, tid);
  int next_tile = n_tiles > 0 ? key_tile(0) : 0;
  if (n_tiles > 0) {
    load_rows<T, kBlockK>(s_k, k, p.k_row_stride, next_tile * kBlockK, S_k, tid);
    load_rows<T, kBlockK>(s_v, v, p.v_row_stride, next_tile * kBlockK, S_k, tid);
  }
  cp_async_commit();

  float acc_o[kMTiles][kDTiles][4];
  float row_max[kMTiles][2];  // running max of the scores, times scale * log2(e)
  float row_sum[kMTiles][2];  // this thread's part of the running sum of exp2(...)
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc_o[mt][dt][e] = 0.f;
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }
  const float scale_log2 = p.scale * 1.4426950408889634f;

  // ldmatrix lane addresses (elements), fixed for the whole kernel.
  const int q_lane = (warp * 32 + (lane / 8 % 2) * 8 + lane % 8) * kSmemRow + (lane / 16) * 8;
  const int k_lane = ((lane / 16) * 8 + lane % 8) * kSmemRow + (lane / 8 % 2) * 8;
  const int v_lane = ((lane / 8 % 2) * 8 + lane % 8) * kSmemRow + (lane / 16) * 8;

  uint32_t q_frag[T::kQInRegisters ? kMTiles : 1][T::kQInRegisters ? kHeadDim / 16 : 1][4];
  for (int j = 0; j < n_tiles; ++j) {
    // One barrier per tile: past it, tile j has landed for every thread and every warp is done
    // with tile j - 1, whose stage the copy of tile j + 1 then refills while tile j is computed.
    cp_async_wait<0>();
    __syncthreads();
    const int stage = j % T::kStages;
    const int tile = next_tile;
    if (j + 1 < n_tiles) {
      next_tile = key_tile(j + 1);
      const int nstage = (j + 1) % T::kStages;
      load_rows<T, kBlockK>(s_k + nstage * T::kKVElems * 2, k, p.k_row_stride, next_tile * kBlockK, S_k, tid);
      load_rows<T, kBlockK>(s_v + nstage * T::kKVElems * 2, v, p.v_row_stride, next_tile * kBlockK, S_k, tid);
    }
    cp_async_commit();
    if constexpr (T::kQInRegisters) {
      if (j == 0) {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
          for (int kk = 0; kk < kHeadDim / 16; ++kk)
            ldmatrix_x4(q_frag[mt][kk], s_q + (q_lane + mt * 16 * kSmemRow + kk * 16) * 2);
      }
    }

    // S = Q K^T for this warp's 32 rows x kBlockK keys.
    const uint32_t s_k_stage = s_k + stage * T::kKVElems * 2;
    float s[kMTiles][kNTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
      uint32_t qa[kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        if constexpr (T::kQInRegisters) {
#pragma unroll
          for (int e = 0; e < 4; ++e) qa[mt][e] = q_frag[mt][kk][e];
        } else {
          ldmatrix_x4(qa[mt], s_q + (q_lane + mt * 16 * kSmemRow + kk * 16) * 2);
        }
      }
#pragma unroll
      for (int np = 0; np < kNTiles / 2; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, s_k_stage + (k_lane + np * 16 * kSmemRow + kk * 16) * 2);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          mma_16816<T::kBf16>(s[mt][2 * np], qa[mt], kb[0], kb[1]);
          mma_16816<T::kBf16>(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
        }
      }
    }

    // Keys past S_k in a ragged last tile score -inf.
    const int key0 = tile * kBlockK;
    if (key0 + kBlockK > S_k) {
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = key0 + nt * 8 + (lane % 4) * 2 + e % 2;
          if (key >= S_k)
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt) s[mt][nt][e] = -INFINITY;
        }
    }

    // Online softmax: every visited tile holds at least one real key, so the new max is finite.
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt)
          mx = fmaxf(mx, fmaxf(s[mt][nt][2 * half], s[mt][nt][2 * half + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float new_max = fmaxf(row_max[mt][half], mx * scale_log2);
        const float alpha = exp2_approx(row_max[mt][half] - new_max);
        row_max[mt][half] = new_max;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
          for (int e = 2 * half; e < 2 * half + 2; ++e) {
            s[mt][nt][e] = exp2_approx(fmaf(s[mt][nt][e], scale_log2, -new_max));
            sum += s[mt][nt][e];
          }
        row_sum[mt][half] = row_sum[mt][half] * alpha + sum;
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt) {
          acc_o[mt][dt][2 * half] *= alpha;
          acc_o[mt][dt][2 * half + 1] *= alpha;
        }
      }

    // O += P V: the S accumulators of two adjacent n8 tiles are exactly one m16k16 A fragment.
    const uint32_t s_v_stage = s_v + stage * T::kKVElems * 2;
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
      uint32_t pa[kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        pa[mt][0] = pack2<T::kBf16>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = pack2<T::kBf16>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = pack2<T::kBf16>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = pack2<T::kBf16>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < kDTiles / 2; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, s_v_stage + (v_lane + kk * 16 * kSmemRow + dp * 16) * 2);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          mma_16816<T::kBf16>(acc_o[mt][2 * dp], pa[mt], vb[0], vb[1]);
          mma_16816<T::kBf16>(acc_o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
        }
      }
    }
  }

  // Epilogue: normalise, stage O through the Q tile (this warp's own rows), store 16-byte rows.
  cp_async_wait<0>();
  __syncthreads();
  const int g = lane / 4;
  const int t = lane % 4;
  uint32_t* s_o = reinterpret_cast<uint32_t*>(smem);
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float sum = row_sum[mt][half];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv = sum > 0.f ? 1.f / sum : 0.f;  // a row with no kept key block: O = 0
      const int r = warp * 32 + mt * 16 + half * 8 + g;
#pragma unroll
      for (int dt = 0; dt < kDTiles; ++dt)
        s_o[(r * kSmemRow + dt * 8 + 2 * t) / 2] =
            pack2<T::kBf16>(acc_o[mt][dt][2 * half] * inv, acc_o[mt][dt][2 * half + 1] * inv);
      if (p.lse != nullptr && t == 0 && q0 + r < S) {
        const float lse = sum > 0.f ? row_max[mt][half] * 0.6931471805599453f + logf(sum) : -INFINITY;
        p.lse[(static_cast<int64_t>(work.batch) * p.heads + work.head) * S + q0 + r] = lse;
      }
    }
  __syncthreads();
#pragma unroll
  for (int it = 0; it < kBlockQ * T::kChunks / T::kThreads; ++it) {
    const int i = it * T::kThreads + tid;
    const int r = i / T::kChunks;
    const int c = i % T::kChunks;
    if (q0 + r < S)
      *reinterpret_cast<uint4*>(o + static_cast<int64_t>(q0 + r) * p.o_row_stride + c * 8) =
          *reinterpret_cast<const uint4*>(smem + (r * kSmemRow + c * 8) * 2);
  }
}

int host_ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// Dense: batch x heads x query tiles, query tile fastest (the CTAs in flight share one head's K/V
// in L2). Sparse: schedule rows x (batch, when the mask is shared) x kernel tiles per mask block.
int flash_fwd_sm80_grid(const FlashParams& p) {
  if (p.row_offsets == nullptr) return p.batch * p.heads * host_ceil_div(p.seqlen, kSm80BlockQ);
  const int rows = p.mask_heads * host_ceil_div(p.seqlen, p.mask_block_q);
  const int batch_factor = p.mask_heads == p.heads ? p.batch : 1;
  return rows * batch_factor * (p.mask_block_q / kSm80BlockQ);
}

// The mask rows (slot * q_blocks + q_block) by decreasing length: a counting sort in one CTA, so
// that the longest rows start first and the ragged tail of the grid is short rows.
constexpr int kOrderThreads = 1024;
constexpr int kOrderMaxBins = 12 * 1024;  // 48 KB of shared counters

__global__ void __launch_bounds__(kOrderThreads) sm80_row_order_kernel(const int32_t* row_offsets, int rows,
                                                                      int max_length, int32_t* order) {
  extern __shared__ int bins[];  // bin = max_length - row length
  const int tid = threadIdx.x;
  auto bin_of = [&](int row) { return max_length - min(row_offsets[row + 1] - row_offsets[row], max_length); };
  for (int i = tid; i <= max_length; i += kOrderThreads) bins[i] = 0;
  __syncthreads();
  for (int row = tid; row < rows; row += kOrderThreads) atomicAdd(&bins[bin_of(row)], 1);
  __syncthreads();
  if (tid == 0) {
    int run = 0;
    for (int i = 0; i <= max_length; ++i) {
      const int count = bins[i];
      bins[i] = run;
      run += count;
    }
  }
  __syncthreads();
  // Scatter in rounds of kOrderThreads rows; within a warp, rows of one length keep their order
  // (match + rank), so rows of equal length stay roughly in head-major order and the CTAs in
  // flight share their heads' K/V in L2.
  const int lane = tid % 32;
  for (int base = 0; base < rows; base += kOrderThreads) {
    const int row = base + tid;
    const unsigned valid = __ballot_sync(0xffffffffu, row < rows);
    if (row < rows) {
      const int bin = bin_of(row);
      const unsigned same = __match_any_sync(valid, bin);
      const int leader = __ffs(same) - 1;
      int start = 0;
      if (lane == leader) start = atomicAdd(&bins[bin], __popc(same));
      start = __shfl_sync(same, start, leader);
      order[start + __popc(same & ((1u << lane) - 1))] = row;
    }
    __syncthreads();
  }
}

template <int kHeadDim, bool kBf16>
void launch_sm80(FlashParams p, cudaStream_t stream) {
  using T = Sm80Traits<kHeadDim, kBf16>;
  auto kernel = flash_fwd_sm80_kernel<T>;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes) != cudaSuccess)
    return;  // the error stays for the caller's cudaGetLastError
  const int grid = flash_fwd_sm80_grid(p);
  if (grid == 0) return;
  int32_t* order = nullptr;
  const int rows = p.mask_heads * host_ceil_div(p.seqlen, p.mask_block_q);
  const int max_length = host_ceil_div(p.seqlen, p.mask_block_k);
  if (p.row_offsets != nullptr && p.schedule == nullptr && max_length < kOrderMaxBins) {
    if (cudaMallocAsync(&order, sizeof(int32_t) * rows, stream) != cudaSuccess) return;
    sm80_row_order_kernel<<<1, kOrderThreads, sizeof(int) * (max_length + 1), stream>>>(p.row_offsets, rows,
                                                                                      max_length, order);
    p.schedule = order;
    p.work_items = rows;
  }
  kernel<<<grid, T::kThreads, T::kSmemBytes, stream>>>(p);
  if (order != nullptr) cudaFreeAsync(order, stream);  // a launch error stays for cudaGetLastError
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool flash_fwd_sm80_supports(const FlashParams& p) {
  if (p.unpermute) return false;
  if (p.head_dim != 64 && p.head_dim != 96 && p.head_dim != 128) return false;
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.o)) return false;
  for (int64_t stride : {p.q_batch_stride, p.q_row_stride, p.q_head_stride, p.k_batch_stride, p.k_row_stride,
                         p.k_head_stride, p.v_batch_stride, p.v_row_stride, p.v_head_stride, p.o_batch_stride,
                         p.o_row_stride, p.o_head_stride})
    if (stride % 8 != 0) return false;
  if (p.seqlen_k < 0) return false;
  if (p.row_offsets != nullptr) {
    if (p.seqlen_k != 0 && p.seqlen_k != p.seqlen) return false;  // a mask covers S x S tokens
    if (p.mask_block_q <= 0 || p.mask_block_q % kSm80MaskBlockMultiple != 0) return false;
    if (p.mask_block_k <= 0 || p.mask_block_k % kSm80MaskBlockMultiple != 0) return false;
    if (p.mask_heads != p.heads && p.mask_heads != p.batch * p.heads) return false;
  }
  return p.seqlen > 0 && p.batch > 0 && p.heads > 0 && p.scale > 0.f;
}

void flash_fwd_sm80(const FlashParams& params, cudaStream_t stream) {
  VDIT_HEADDIM_SWITCH(params.head_dim, kHeadDim, [&] {
    VDIT_BOOL_SWITCH(params.bf16, kBf16, [&] { launch_sm80<kHeadDim, kBf16>(params, stream); });
  });
}

}  // namespace vdit::cuda
