// The profiler's partial-output kernel for Hopper (sm_90a): bf16, d = 64, one or two candidates
// (profile_kernel). The same work and records as profiler.cu's mma.sync kernel (see profiler.h),
// on wgmma:
// - Per multiprocessor two independent pipelines, each a warpgroup of the 64 sampled rows and one
//   block of the split (ProfileSplit), so the blocks are twice the multiprocessors. The
//   warpgroup's first thread loads each step's K and V (TMA, 128-byte swizzle) and keep bits (a
//   bulk copy) two steps ahead into a ring of stages completing on an mbarrier; the warpgroup
//   releases a stage once its GEMMs are done. The two pipelines' GEMMs and softmaxes interleave on
//   the multiprocessor.
// - The warpgroup loads its segment's sampled Q rows itself (a gather), then per 128-key step: S =
//   Q K^T (wgmma from shared memory), the online softmax of dense in registers, and O += P V for
//   dense and for each candidate, whose P is dense's masked by its keep bits (two bits a register:
//   a shift, a PRMT and an AND). Candidates share dense's running maximum; every output's sums,
//   dense's too, are of the 16-bit probabilities its P V multiplies, so a dense candidate is
//   dense exactly: l += P 1 on the tensor cores, in P V's group (wgmma m64n8k16 against a tile of
//   bf16 ones; every column of the 64 x 8 result is the rows' sums).
// - Sharing dense's maximum loses a candidate whose kept scores lie far below it (probabilities
//   under 2^-126 flush to zero). Where a candidate kept keys of a row in a piece but its sum there
//   is below 2^-100, the piece's record says so (sum -1) and combine_rows computes that
//   candidate's output for the row directly; above it, what flushed (under 2^-126 a key) weighs under
//   keys x 2^-26 of the sum: 2^-12 for 16,384 keys.
#include "kernels/cuda/profiler.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include "kernels/cuda/dependent_launch.h"
#include "kernels/cuda/fragment_math.h"
#include "kernels/cuda/tensor_map.h"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "kernels/cuda/sm90_pipeline.h"
#endif

namespace vdit::cuda {
namespace {

// Tiles (the traits sm90_pipeline.h's GEMMs read) and shared memory.
struct Tiles {
  static constexpr int kHeadDim = 64;
  static constexpr int kOCols = kHeadDim;
  static constexpr bool kBf16 = true;
  static constexpr int kBlockN = kProfileKeyTile;
  static constexpr int kChunk = 64;
  static constexpr int kRowBytes = 128;
  static constexpr int kQChunkBytes = kProfileRowTile * kRowBytes;
  static constexpr int kKVChunkBytes = kBlockN * kRowBytes;
  // Two warpgroups, each a pipeline: no more than two warps a scheduler, so 255 registers a
  // thread (a third warpgroup, or a producer warp, leaves 168: ptxas does not allocate by setmaxnreg).
  static constexpr int kThreads = 256;
  static constexpr int kStreams = 2;
  static constexpr int kStages = 3;  // per pipeline
  static constexpr int kKeptBytes = profile_kept_threads(ProfileKernel::wgmma) * kProfileKeptWords * 4;
  // A pipeline's shared memory: Q, then its stages, each K, V and keep bits. Then the mbarriers:
  // full[pipeline][stage], then empty[pipeline][stage]; then 16 x 8 bf16 ones (the row sums' B).
  static constexpr int kStageBytes = 2 * kKVChunkBytes + kKeptBytes;
  static constexpr int kPipelineBytes = kQChunkBytes + kStages * kStageBytes;
  static constexpr int kBarOffset = kStreams * kPipelineBytes;
  static constexpr int kBars = kStreams * kStages;
  static constexpr int kOnesOffset = kBarOffset + 2 * 8 * kBars;
  static constexpr int kOnesBytes = 16 * 8 * 2;
  static constexpr int kSmemBytes = kOnesOffset + kOnesBytes + 1024;  // + slack to align to 1024
  static_assert(kOnesOffset % 16 == 0, "a wgmma operand is 16-byte aligned");
  static_assert(kStageBytes % 1024 == 0 && kQChunkBytes % 1024 == 0, "swizzled tiles 1024-aligned");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory over the sm_90 limit");
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
using namespace sm90;

// A piece: the part of one segment (slot, row tile) that a block's range of steps covers.
struct Piece {
  int64_t segment;
  int first, steps;  // its key steps within the segment
  int slot, row_tile, b, h;
};

__device__ __forceinline__ Piece piece_at(const ProfileParams& p, int64_t at, int64_t end) {
  const int row_tiles = profile_row_tiles(p.sample_rows);
  Piece c;
  c.segment = at / p.key_steps;
  c.first = static_cast<int>(at - c.segment * p.key_steps);
  c.steps = static_cast<int>(min(p.key_steps, c.first + end - at) - c.first);
  c.slot = static_cast<int>(c.segment / row_tiles);
  c.row_tile = static_cast<int>(c.segment % row_tiles);
  c.b = c.slot / p.heads;
  c.h = c.slot % p.heads;
  return c;
}

__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

// Pipeline `stream`'s barriers and stages.
struct Pipeline {
  uint32_t q, stages, full, empty;
  __device__ Pipeline(uint32_t smem, int stream)
      : q(smem + stream * Tiles::kPipelineBytes),
        stages(q + Tiles::kQChunkBytes),
        full(smem + Tiles::kBarOffset + 8 * stream * Tiles::kStages),
        empty(full + 8 * Tiles::kBars) {}
};

// Pipeline `stream`'s loads, by the warpgroup's first thread, steps ahead of its GEMMs: each next
// step of the block's range (crossing segments as the GEMMs do) into the next stage, once the
// warpgroup has released that stage. The step's place (segment, slot) is counted on, not divided
// out: the loading thread holds up its warpgroup's next GEMM while it works.
struct Loader {
  int left;                   // steps of the block's range not yet loaded
  int step, row_tile, b, h;   // the next step's place: its step in its segment, the segment's row tile, head, item
  int stage = 0;
  uint32_t phase = 0;
  __device__ Loader(const ProfileParams& p, int64_t begin, int64_t end) : left(static_cast<int>(end - begin)) {
    const Piece c = piece_at(p, begin, end);
    step = c.first;
    row_tile = c.row_tile;
    b = c.b;
    h = c.h;
  }
  __device__ void issue(const ProfileParams& p, const CUtensorMap* tm_k, const CUtensorMap* tm_v,
                        const Pipeline& pipe) {
    if (left == 0) return;
    constexpr int kKeptWords = Tiles::kKeptBytes / 4;
    const int row_tiles = profile_row_tiles(p.sample_rows);
    const uint32_t* kept = p.kept + ((int64_t{b} * row_tiles + row_tile) * p.key_steps + step) * kKeptWords;
    mbar_wait(pipe.empty + 8 * stage, phase ^ 1);
    const uint32_t dst = pipe.stages + stage * Tiles::kStageBytes, full = pipe.full + 8 * stage;
    const int key0 = step * Tiles::kBlockN;
    mbar_expect_tx(full, Tiles::kStageBytes);
    const uint64_t once = l2_evict_first();
    tma_load_4d(dst, tm_k, full, 0, h, key0, b, once);
    tma_load_4d(dst + Tiles::kKVChunkBytes, tm_v, full, 0, h, key0, b, once);
    bulk_load(dst + 2 * Tiles::kKVChunkBytes, kept, Tiles::kKeptBytes, full);
    --left;
    if (++step == p.key_steps) {  // the next segment: row tile, then head, then batch item
      step = 0;
      if (++row_tile == row_tiles) {
        row_tile = 0;
        if (++h == p.heads) {
          h = 0;
          ++b;
        }
      }
    }
    if (++stage == Tiles::kStages) {
      stage = 0;
      phase ^= 1;
    }
  }
};

// l[64 x 8] += P[64 x 128] 1[128 x 8]: each column the rows' sums of P. The ones: a 16 x 8 bf16
// tile (two 8 x 8 core matrices, no swizzle) that every 16-key step reads.
__device__ __forceinline__ void row_sum_wgmmas(float (&l)[4], const uint32_t (&p)[Tiles::kBlockN / 16][4],
                                               uint32_t ones) {
  constexpr uint32_t kCore = 128;  // bytes of a core matrix: the offset of the second (K) and next (N)
  const uint64_t desc = descriptor<kCore, 0>(descriptor_lo(ones, kCore));
#pragma unroll
  for (int kk = 0; kk < Tiles::kBlockN / 16; ++kk) wgmma_rs_n8(l, p[kk], desc);
}

// The 16-bit mask of register q's two probabilities (scores 2q, 2q + 1 of the thread) from a
// candidate's two keep-bit words: see profile_kept's wgmma order.
__device__ __forceinline__ uint32_t register_mask(const uint32_t (&words)[2], int q) {
  uint32_t d;
  asm("prmt.b32 %0, %1, 0, %2;" : "=r"(d) : "r"(words[q / 16] << (q % 8)), "r"((q % 16) / 8 ? 0xbbaau : 0x9988u));
  return d;
}

// One warpgroup: the partial outputs of its block's pieces.
template <int NC>
__device__ void consume(const ProfileParams& p, const CUtensorMap* tm_k, const CUtensorMap* tm_v, uint32_t smem,
                        int stream, int block) {
  constexpr int kOut = NC + 1;
  const Pipeline pipe(smem, stream);
  const uint32_t ones = smem + Tiles::kOnesOffset;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32;
  Loader loader(p, p.split.begin(block), p.split.begin(block + 1));
  if (tid == 0)
    for (int i = 0; i < Tiles::kStages - 1; ++i) loader.issue(p, tm_k, tm_v, pipe);
  const int64_t token_stride = int64_t{p.heads} * Tiles::kHeadDim;
  const float scale = p.scale_log2;
  int stage = 0;
  uint32_t phase = 0;
  for (int64_t at = p.split.begin(block), end = p.split.begin(block + 1); at < end;) {
    const Piece c = piece_at(p, at, end);
    // The segment's sampled Q rows, swizzled as TMA would, once the warpgroup is done with the last.
    named_barrier(1 + stream, 128);
    const uint16_t* q = static_cast<const uint16_t*>(p.q) + int64_t{c.b} * p.geometry.tokens * token_stride +
                        int64_t{c.h} * Tiles::kHeadDim;
    for (int i = tid; i < kProfileRowTile * 8; i += 128) {
      const int r = i / 8, u = i % 8;
      const int row = min(c.row_tile * kProfileRowTile + r, p.sample_rows - 1);
      const int64_t token = p.rows[int64_t{c.b} * p.sample_rows + row];
      const int4 v = *reinterpret_cast<const int4*>(q + token * token_stride + 8 * u);
      asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};" ::"r"(pipe.q + r * Tiles::kRowBytes + 16 * (u ^ (r % 8))),
                   "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                   : "memory");
    }
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // visible to wgmma
    named_barrier(1 + stream, 128);

    // Accumulators: element 4j + 2r + e of a 64-column fragment is row 16 warp + lane / 4 + 8r,
    // column 8j + 2 (lane % 4) + e; of the sums' 8-column one (l), every element 2r + e is row r's
    // sum. Running maximum (log2 units).
    float o[kOut][Tiles::kHeadDim / 2];
    float l[kOut][4], m[2] = {-INFINITY, -INFINITY};
    uint32_t any_kept[NC] = {};
#pragma unroll
    for (int k = 0; k < kOut; ++k) {
#pragma unroll
      for (int i = 0; i < 4; ++i) l[k][i] = 0.f;
#pragma unroll
      for (int i = 0; i < Tiles::kHeadDim / 2; ++i) o[k][i] = 0.f;
    }
    for (int s = 0; s < c.steps; ++s) {
      const uint32_t at_stage = pipe.stages + stage * Tiles::kStageBytes;
      mbar_wait(pipe.full + 8 * stage, phase);
      float sc[Tiles::kBlockN / 2];
      issue_qk<Tiles>(sc, pipe.q, at_stage);
      // (while Q K^T runs) into the stage the last step released
      if (tid == 0) loader.issue(p, tm_k, tm_v, pipe);
      uint32_t w[4];
      asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];"
                   : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
                   : "r"(at_stage + 2 * Tiles::kKVChunkBytes + 16 * tid));
      wgmma_wait<0>();
      fence_registers(sc);
      const int valid = p.geometry.tokens - (c.first + s) * Tiles::kBlockN;
      float correction[2];
      softmax_exp2<Tiles>(sc, m, valid, scale, correction);
      // Dense's P packed to bf16 (register q: scores 2q, 2q + 1, row q % 2); each candidate's P is
      // dense's masked by its keep bits.
      uint32_t pf[kOut][Tiles::kBlockN / 16][4];
#pragma unroll
      for (int q = 0; q < Tiles::kBlockN / 4; ++q) pf[0][q / 4][q % 4] = pack2<true>(sc[2 * q], sc[2 * q + 1]);
#pragma unroll
      for (int k = 1; k < kOut; ++k) {
        const uint32_t words[2] = {w[2 * (k - 1)], w[2 * (k - 1) + 1]};
        any_kept[k - 1] |= words[0] | words[1];
#pragma unroll
        for (int q = 0; q < Tiles::kBlockN / 4; ++q)
          pf[k][q / 4][q % 4] = pf[0][q / 4][q % 4] & register_mask(words, q);
      }
#pragma unroll
      for (int k = 0; k < kOut; ++k) {
        rescale_o<Tiles>(o[k], correction);
#pragma unroll
        for (int r = 0; r < 2; ++r) l[k][2 * r] *= correction[r];  // [1] and [3] are never read
      }
      // O += P V and l += P 1 for every output, one group.
#pragma unroll
      for (int k = 0; k < kOut; ++k) {
        fence_registers(o[k]);
        fence_registers(l[k]);
      }
      wgmma_fence();
#pragma unroll
      for (int k = 0; k < kOut; ++k) {
        pv_wgmmas<Tiles>(o[k], pf[k], at_stage + Tiles::kKVChunkBytes);
        row_sum_wgmmas(l[k], pf[k], ones);
      }
      wgmma_commit();
      wgmma_wait<0>();
#pragma unroll
      for (int k = 0; k < kOut; ++k) {
        fence_registers(o[k]);
        fence_registers(l[k]);
      }
      mbar_arrive(pipe.empty + 8 * stage);
      if (++stage == Tiles::kStages) {
        stage = 0;
        phase ^= 1;
      }
    }

    // Records of rows r = 0, 1: references and sums (from the lane % 4 == 0 threads), then columns.
    const int piece = block - p.split.block_of(c.segment * p.key_steps);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = c.row_tile * kProfileRowTile + 16 * warp + lane / 4 + 8 * r;
#pragma unroll
      for (int k = 0; k < kOut; ++k) {
        float sum = l[k][2 * r];
        if (k > 0) {  // row r's bits are the odd (r = 0) or even positions
          int kept = (any_kept[k - 1] & (r == 0 ? 0xaaaaaaaau : 0x55555555u)) != 0;
          kept |= __shfl_xor_sync(0xffffffffu, kept, 1);
          kept |= __shfl_xor_sync(0xffffffffu, kept, 2);
          if (kept && !(sum >= 0x1p-100f)) sum = -1.f;
        }
        if (row >= p.sample_rows) continue;
        const int64_t record = ((int64_t{c.slot} * p.sample_rows + row) * p.pieces + piece) * kOut + k;
        if (lane % 4 == 0) p.partial_stats[record] = make_float2(m[r], sum);
        float* out = p.partial_out + record * Tiles::kHeadDim + 2 * (lane % 4);
#pragma unroll
        for (int j = 0; j < Tiles::kHeadDim / 8; ++j)
          *reinterpret_cast<float2*>(out + 8 * j) = make_float2(o[k][4 * j + 2 * r], o[k][4 * j + 2 * r + 1]);
      }
    }
    at += c.steps;
  }
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

template <int NC>
__global__ void __launch_bounds__(Tiles::kThreads, 1)
    profile_partials_sm90(const __grid_constant__ ProfileParams p, const __grid_constant__ CUtensorMap tm_k,
                          const __grid_constant__ CUtensorMap tm_v) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t smem = (smem_address(smem_raw) + 1023) & ~1023u;
  allow_dependents();  // (the combine: it waits for this kernel's end)
  if (threadIdx.x == 0) {
    for (int i = 0; i < Tiles::kBars; ++i) {
      mbar_init(smem + Tiles::kBarOffset + 8 * i, 1);                     // full: the loading thread's expect_tx
      mbar_init(smem + Tiles::kBarOffset + 8 * (Tiles::kBars + i), 128);  // empty: every thread of the warpgroup
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  fill_ones<true, Tiles::kOnesBytes, Tiles::kThreads>(smem + Tiles::kOnesOffset);
  __syncthreads();
  // Q, K and V come from the stream's kernels before, and the previous call's combine reads the records
  // this kernel writes: only the set-up above overlaps the kernel before.
  dependency_wait();
  const int stream = threadIdx.x / 128, block = Tiles::kStreams * blockIdx.x + stream;
  if (block < p.split.blocks) consume<NC>(p, &tm_k, &tm_v, smem, stream, block);
#endif
}

template <int NC>
cudaError_t launch(const ProfileParams& p, const CUtensorMap& tm_k, const CUtensorMap& tm_v, cudaStream_t stream) {
  auto kernel = profile_partials_sm90<NC>;
  const cudaError_t error =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tiles::kSmemBytes);
  if (error != cudaSuccess) return error;
  const int grid = (p.split.blocks + Tiles::kStreams - 1) / Tiles::kStreams;
  return launch_dependent(kernel, grid, Tiles::kThreads, Tiles::kSmemBytes, stream, p, tm_k, tm_v);
}

}  // namespace

cudaError_t launch_profile_partials_sm90(const ProfileParams& p, cudaStream_t stream) {
  if (p.kernel != ProfileKernel::wgmma || !p.bf16 || p.head_dim != Tiles::kHeadDim || p.candidates < 1 ||
      p.candidates > kProfileWgmmaCandidates)
    return cudaErrorInvalidValue;
  const int64_t token_stride = int64_t{p.heads} * p.head_dim;
  CUtensorMap maps[2];
  const void* data[2] = {p.k, p.v};
  for (int i = 0; i < 2; ++i) {
    const HeadMajorTensor t{data[i], true, p.head_dim, p.heads, static_cast<int>(p.geometry.tokens), p.batch,
                            p.geometry.tokens * token_stride, token_stride, p.head_dim};
    if (make_head_tensor_map(&maps[i], t, Tiles::kBlockN, Tiles::kChunk, CU_TENSOR_MAP_L2_PROMOTION_L2_128B) !=
        CUDA_SUCCESS)
      return cudaErrorInvalidValue;
  }
  return p.candidates == 1 ? launch<1>(p, maps[0], maps[1], stream) : launch<2>(p, maps[0], maps[1], stream);
}

}  // namespace vdit::cuda
