// Device building blocks of the sm_90a kernels (the flash-attention forward and the profiler's
// partial-output kernel): mbarriers, TMA loads and stores, named barriers, wgmma fences and
// groups, shared-memory matrix descriptors of TMA-swizzled tiles, the two GEMMs of an attention
// step (S = Q K^T from shared memory, O += P V with P in registers) and its online softmax. Include from code
// compiled under __CUDA_ARCH_FEAT_SM90_ALL. The tile templates take a traits class with kHeadDim,
// kBf16, kBlockN (keys a tile), kChunk (columns a swizzled chunk), kRowBytes (2 * kChunk),
// kQChunkBytes and kKVChunkBytes (bytes of one chunk of a Q or K/V tile), and kOCols: the columns
// of O's accumulator, kHeadDim, or kHeadDim + 8 where P V also sums P's rows (pv_wgmmas).
#pragma once

#include <cuda.h>  // CUtensorMap

#include <cstdint>

#include "kernels/cuda/fragment_math.h"
#include "kernels/cuda/wgmma_sm90.h"

namespace vdit::cuda::sm90 {

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count));
}

__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}

__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_again:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_again;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

__device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0,
                                            int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

// The same with an L2 eviction policy (fragment_math.h's l2_evict_first).
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1,
                                            int c2, int c3, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%3, %4, %5, %6}], [%2], %7;" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "l"(policy)
      : "memory");
}

__device__ __forceinline__ void tma_store_4d(const CUtensorMap* map, uint32_t src, int c0, int c1, int c2, int c3) {
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
               : "memory");
}

// Barrier over `threads` threads of the CTA (ids above 0; __syncthreads is 0).
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(kPending) : "memory");
}

// Stores `value` to this thread's own shared word. ptxas hoists a wgmma wait above independent
// arithmetic up to the previous memory instruction; a store of the softmax's result before
// wgmma_wait<0> keeps the softmax above the wait, overlapping the pending P V GEMM.
__device__ __forceinline__ void order_after(uint32_t address, float value) {
  asm volatile("st.shared.f32 [%0], %1;" ::"r"(address), "f"(value) : "memory");
}

// Keeps the compiler from moving accesses of wgmma accumulators across the async region.
template <int N>
__device__ __forceinline__ void fence_registers(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// Shared-memory matrix descriptor, as its two words. The low word holds the start address and lbo
// (>> 4, 14 bits each); a GEMM's later steps add a constant to it, one uniform add a wgmma instead of
// rebuilding the fields (no field carries or borrows: shared memory is under 256 KB, and an lbo that
// shrinks step by step stays positive). The high word holds sbo (>> 4) and the layout type (0: no
// swizzle, 1: 128-byte swizzle, 2: 64-byte).
__device__ __forceinline__ uint32_t descriptor_lo(uint32_t address, uint32_t lbo) {
  return ((address >> 4) & 0x3fff) | ((lbo >> 4) & 0x3fff) << 16;
}

template <uint32_t kSbo, uint32_t kLayout>
__device__ __forceinline__ uint64_t descriptor(uint32_t lo) {
  return static_cast<uint64_t>((kSbo >> 4) | kLayout << 30) << 32 | lo;
}

// A tile swizzled in rows of Tr::kRowBytes, as TMA writes it. K-major tiles: sbo = 8 rows, lbo
// unused. MN-major tiles: lbo = the stride between column chunks, sbo = 8 rows.
template <class Tr>
__device__ __forceinline__ uint64_t descriptor(uint32_t lo) {
  return descriptor<8 * Tr::kRowBytes, Tr::kRowBytes == 128 ? 1u : 2u>(lo);
}

// Fills kBytes of shared memory from `address` with bf16 or fp16 ones (the B of a row-sum GEMM), a
// word a thread of a CTA of kThreads, and makes them visible to the tensor cores. (The caller's
// __syncthreads follows.)
template <bool kBf16, int kBytes, int kThreads>
__device__ __forceinline__ void fill_ones(uint32_t address) {
  static_assert(kBytes % 4 == 0 && kBytes / 4 <= kThreads);
  if (threadIdx.x < kBytes / 4)
    asm volatile("st.shared.b32 [%0], %1;" ::"r"(address + 4 * threadIdx.x), "r"(kBf16 ? 0x3f803f80u : 0x3c003c00u)
                 : "memory");
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

// The 16-byte unit where unit `u` of row `row` lies in a swizzled tile (TMA's 128- and 64-byte
// swizzles: address bits [4, 7) or [4, 6) XOR bits [7, 10) or [7, 9)).
template <class Tr>
__device__ __forceinline__ int swizzled_unit(int row, int u) {
  return Tr::kRowBytes == 128 ? u ^ (row % 8) : u ^ ((row / 2) % 4);
}

// S[64 x 128] = Q[64 x D] K[128 x D]^T for this consumer's 64 rows; K-major operands.
template <class Tr>
__device__ __forceinline__ void issue_qk(float (&s)[Tr::kBlockN / 2], uint32_t q_address, uint32_t k_address) {
  fence_registers(s);
  wgmma_fence();
  const uint32_t q_lo = descriptor_lo(q_address, 16), k_lo = descriptor_lo(k_address, 16);
#pragma unroll
  for (int kk = 0; kk < Tr::kHeadDim / 16; ++kk) {
    constexpr int kSteps = Tr::kChunk / 16;  // 16-column steps a chunk
    const uint32_t step = (kk / kSteps) * Tr::kQChunkBytes + (kk % kSteps) * 32;
    const uint32_t step_k = (kk / kSteps) * Tr::kKVChunkBytes + (kk % kSteps) * 32;
    sm90::wgmma_ss<Tr::kBlockN, Tr::kBf16>(s, descriptor<Tr>(q_lo + (step >> 4)), descriptor<Tr>(k_lo + (step_k >> 4)),
                                           kk > 0);
  }
  wgmma_commit();
  fence_registers(s);
}

// O[64 x D] += P[64 x 128] V[128 x D]; P in registers, V MN-major (rows of keys, D contiguous):
// the wgmma instructions only, for callers that issue several GEMMs in one group. With kOCols = D +
// 8 (one chunk, D = 64) the GEMM is 8 columns wider and their B is `ones`, 16 rows (2 KB, 1024-aligned)
// of ones read for every 16 keys (each step's lbo, the stride to the next column chunk, points there):
// O's last 8 columns are then P's row sums, in f32 from the very P that multiplies V.
template <class Tr>
__device__ __forceinline__ void pv_wgmmas(float (&o)[Tr::kOCols / 2], const uint32_t (&p)[Tr::kBlockN / 16][4],
                                          uint32_t v_address, uint32_t ones = 0) {
  static_assert(Tr::kOCols == Tr::kHeadDim || (Tr::kOCols == Tr::kHeadDim + 8 && Tr::kHeadDim == Tr::kChunk));
  constexpr uint32_t kStep = 16 * Tr::kRowBytes;
  constexpr bool kSums = Tr::kOCols > Tr::kHeadDim;
  constexpr uint32_t kUnits = kStep >> 4;
  const uint32_t lo = descriptor_lo(v_address, kSums ? ones - v_address : Tr::kKVChunkBytes);
#pragma unroll
  for (int kk = 0; kk < Tr::kBlockN / 16; ++kk) {
    // step kk: the start kk * kStep further on, and with the sums, lbo (to the ones) as much shorter
    const uint32_t delta = kk * kUnits - (kSums ? (kk * kUnits) << 16 : 0u);
    sm90::wgmma_rs<Tr::kOCols, Tr::kBf16>(o, p[kk], descriptor<Tr>(lo + delta));
  }
}

// The same as a group of its own.
template <class Tr>
__device__ __forceinline__ void issue_pv(float (&o)[Tr::kOCols / 2], const uint32_t (&p)[Tr::kBlockN / 16][4],
                                         uint32_t v_address, uint32_t ones = 0) {
  fence_registers(o);
  wgmma_fence();
  pv_wgmmas<Tr>(o, p, v_address, ones);
  wgmma_commit();
  fence_registers(o);
}

// Pairwise reduction of N values (N a power of two): a dependency chain of log2(N), not N.
template <int N, class Op>
__device__ __forceinline__ float tree_reduce(float (&v)[N], Op op) {
  if constexpr (N == 1) {
    return v[0];
  } else {
    float half[N / 2];
#pragma unroll
    for (int j = 0; j < N / 2; ++j) half[j] = op(v[j], v[j + N / 2]);
    return tree_reduce<N / 2>(half, op);
  }
}

// The online softmax's step over one tile of scores, in one thread's accumulator fragments (rows
// lane/4 and lane/4 + 8 of its warp's 16, columns 8j + 2 (lane % 4) + {0, 1}; element 4j + 2r + e):
// masks the columns >= valid (keys past S), folds the tile's row maxima into m (scaled scores, log2
// units), turns s into exp2(scaled - m) in place, and gives the factors what was accumulated against
// the old m must be multiplied by. The row sums are the caller's.
// kLazy (FlashAttention-4's rescaling rule): m moves only when a row's tile maximum passes it by more
// than kLazyLog2, so after a row's first tiles the corrections are 1 and the caller can skip them;
// exp2(scaled - m) then stays below 2^kLazyLog2, far inside float's and bf16/fp16's range, and the
// result is the same (O and the row sum share m). Returns whether any correction of the warp is not 1.
constexpr float kLazyLog2 = 8.f;

template <class Tr, bool kLazy = false>
__device__ __forceinline__ bool softmax_exp2(float (&s)[Tr::kBlockN / 2], float (&m)[2], int valid, float scale_log2,
                                             float (&correction)[2]) {
  const int lane = threadIdx.x % 32;
  if (valid < Tr::kBlockN) {
#pragma unroll
    for (int j = 0; j < Tr::kBlockN / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (8 * j + 2 * (lane % 4) + (e & 1) >= valid) s[4 * j + e] = -INFINITY;
  }
  // Tree reductions (short dependency chains): per row, 32 scores of this thread.
  float tile_max[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float v[Tr::kBlockN / 8];
#pragma unroll
    for (int j = 0; j < Tr::kBlockN / 8; ++j) v[j] = fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]);
    tile_max[r] = tree_reduce<Tr::kBlockN / 8>(v, [](float a, float b) { return fmaxf(a, b); });
  }
  float bias[2];
  bool moved = false;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
    const float t = tile_max[r] * scale_log2;
    // (lazy: -inf + kLazyLog2 is -inf, so a row's first finite maximum always moves m)
    const float m_new = kLazy ? (t > m[r] + kLazyLog2 ? t : m[r]) : fmaxf(m[r], t);
    moved |= m_new != m[r];
    bias[r] = m_new == -INFINITY ? 0.f : m_new;
    correction[r] = exp2_approx(m[r] - bias[r]);
    m[r] = m_new;
  }
#pragma unroll
  for (int j = 0; j < Tr::kBlockN / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[4 * j + e] = exp2_approx(fmaf(s[4 * j + e], scale_log2, -bias[e / 2]));
  return kLazy ? __any_sync(0xffffffffu, moved) : true;
}

// O's accumulator fragments (kOCols / 2 a thread, rows as above) times softmax_exp2's corrections.
template <class Tr>
__device__ __forceinline__ void rescale_o(float (&o)[Tr::kOCols / 2], const float (&correction)[2]) {
#pragma unroll
  for (int j = 0; j < Tr::kOCols / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[4 * j + e] *= correction[e / 2];
}

}  // namespace vdit::cuda::sm90
