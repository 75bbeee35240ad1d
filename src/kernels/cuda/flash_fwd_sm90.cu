// Flash-attention forward for Hopper (sm_90a), dense and block-sparse, FlashAttention-3 style:
//
// - One persistent CTA per SM: a producer warpgroup and 2 consumer warpgroups of 64 query rows each
//   (3 at d = 64, where two warps a scheduler leave the softmax's latency exposed: 7-10% faster).
//   A claiming warp takes work items (batch, head, query tile of 128 rows, 192 at d = 64) off a
//   global counter, longest CSR rows first, an item ahead of one producer thread, which issues TMA
//   loads (cp.async.bulk.tensor, swizzled) of Q and of the K/V tiles the item's CSR rows keep into
//   a ring of shared-memory stages, completing on mbarriers. Skipped tiles cost nothing.
// - A 192-row item spans two 128-row mask blocks, so two CSR rows: the producer walks the union of
//   their key tiles and flags each stage with the rows that visit it; a consumer releases the other
//   row's stages unread (kInA and below). Two rows that list the same blocks run as one. The consumers'
//   work on an item is compiled apart for one row and for two, so that the one-row loop pays nothing for it.
//   Masks of 192-row query blocks make every item one row (1-3% more effective throughput on
//   CogVideoX's bands and tiles timed alone, 2.5-4% timed in turn with dense; RESULTS).
// - Consumers: S = Q K^T by wgmma from shared memory, online softmax in registers (exp2), P
//   converted to bf16/fp16 in registers and fed as the register A operand of the O += P V wgmma.
//   S(j) = Q K(j)^T and O += P(j-1) V(j-1) are issued together, and the softmax of tile j runs
//   while the P V GEMM does (intra-warpgroup overlap); setmaxnreg moves registers to the consumers.
//   At d = 64 that GEMM also sums P's rows (8 more columns of O against ones), which takes a fifth of
//   the softmax's instructions off the issue-bound warps (3-7% faster); there only the running max
//   overlaps P V, and the exponentials follow its wait (see order_after in consumer).
//   (FA3's inter-warpgroup pingpong measured slower here: 588 vs 651 TFLOP/s dense at d = 128.)
// - Ragged tails: TMA fills out-of-bounds rows with zeros; keys >= S_k are masked to -inf; rows
//   >= S are not stored. Rows with no kept block get O = 0 and LSE = -inf. Dense attention may
//   have any number of keys (cross-attention); block-sparse masks need S_k = S.
// - Epilogue: O goes through shared memory and a TMA store; the rows of token-major slots
//   (FlashParams::unpermute) go straight from the registers to their frame-major rows instead. At
//   d = 64, O has a buffer of its own, so a warpgroup never waits for the other at an item's end
//   (up to 12% on short rows); at d = 96 and 128 there is no room, and O goes through the item's
//   last K, once every warpgroup's last Q K^T has read it (not its last V, which would make each
//   wait for the other's last P V). The producer hands each item's tile counts
//   (ItemSlot) and each stage's flags to the consumers in shared memory.
// - Tiles are swizzled in rows of 128 bytes (64 columns) at d = 64 and 128, of 64 bytes (32
//   columns, TMA's 64-byte swizzle) at d = 96, so that d = 96 computes 96 columns, not 128.
//
// The kernel body is compiled for sm_90a only (__CUDA_ARCH_FEAT_SM90_ALL); the sm_80 pass builds
// an empty stub, and flash_fwd_sm90_supports() says no on anything but compute capability 9.0.
#include <cuda.h>  // CUtensorMap and its enums only: the driver is reached through the runtime
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/flash_fwd.h"
#include "kernels/cuda/fragment_math.h"
#include "kernels/cuda/mask_item.h"
#include "kernels/cuda/sm90_device.h"
#include "kernels/cuda/tensor_map.h"
#include "kernels/cuda/token_major.h"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "kernels/cuda/sm90_pipeline.h"
#endif

namespace vdit::cuda {
namespace {

struct Sm90Tiles {
  int consumers;  // consumer warpgroups of 64 query rows: the query rows of a work item / 64
  int block_n;    // keys per K/V tile
  int stages;     // K/V ring depth
};

// The one place tile sizes are chosen. Shared memory: Q + stages * (K + V) = 32 + 3 * 64 KB at d =
// 128, 24 + 4 * 48 KB at d = 96, 24 + 5 * 32 KB + 24 KB for O + 2 KB of ones at d = 64 (five stages:
// 2-4% on short sparse rows over four, 10% on rows of two unrelated CSR rows).
constexpr Sm90Tiles sm90_tiles(int head_dim) {
  return head_dim == 128 ? Sm90Tiles{2, 128, 3} : head_dim == 96 ? Sm90Tiles{2, 128, 4} : Sm90Tiles{3, 128, 5};
}

constexpr int kMaskBlockMultiple = 128;

template <int kHeadDim_, bool kBf16_>
struct Sm90Traits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kBf16 = kBf16_;
  static constexpr int kConsumers = sm90_tiles(kHeadDim).consumers;
  static constexpr int kThreads = 128 * (kConsumers + 1);  // producer warpgroup + consumers
  static constexpr int kConsumerThreads = 128 * kConsumers;
  // setmaxnreg moves registers from the producer to the consumers within what the CTA was launched
  // with (65536 / kThreads a thread, in steps of 8); asking for more than that hangs.
  static constexpr int kProducerRegs = kConsumers == 2 ? 40 : 32;
  static constexpr int kConsumerRegs = kConsumers == 2 ? 232 : 160;
  static_assert(128 * kProducerRegs + kConsumerThreads * kConsumerRegs <= kThreads * (65536 / kThreads / 8 * 8));
  static constexpr int kBlockM = 64 * kConsumers;
  static constexpr int kBlockN = sm90_tiles(kHeadDim).block_n;
  static constexpr int kStages = sm90_tiles(kHeadDim).stages;
  // Each operand tile is kChunks column chunks of [rows][kChunk] elements, kRowBytes a row, as TMA
  // writes them with the swizzle of that row size (128 bytes; 64 at d = 96, three chunks of 32
  // columns); chunks follow each other.
  static constexpr int kChunk = kHeadDim == 96 ? 32 : 64;
  static constexpr int kRowBytes = 2 * kChunk;
  static constexpr int kUnits = kRowBytes / 16;  // 16-byte units a row, the swizzle's granule
  static constexpr int kChunks = kHeadDim / kChunk;
  static constexpr int kQChunkBytes = kBlockM * kRowBytes;
  static constexpr int kKVChunkBytes = kBlockN * kRowBytes;
  static constexpr int kQBytes = kQChunkBytes * kChunks;
  static constexpr int kKVBytes = kKVChunkBytes * kChunks;
  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQBytes;
  static constexpr int kVOffset = kKOffset + kStages * kKVBytes;
  // O's own staging buffer (kOwnO; otherwise O goes through the item's last K), the ones of the row
  // sums (kSumsByMma); then the mbarriers:
  // q_full, q_empty, then k_full, v_full, kv_empty for each stage, then claim_full, claim_empty for
  // each of the two claimed items; then the work slot (ItemSlot), the stages' flags, the claimed
  // items (Claimed) and one word per consumer thread (see order_after).
  static constexpr bool kOwnO = kHeadDim == 64;
  static constexpr int kOOffset = kVOffset + kStages * kKVBytes;
  // At d = 64 P V also sums P's rows into 8 more columns of O (pv_wgmmas, reading 2 KB of ones):
  // the softmax's adds, a fifth of its instructions, go to the tensor cores.
  static constexpr int kOCols = kHeadDim == 64 ? kHeadDim + 8 : kHeadDim;
  static constexpr bool kSumsByMma = kOCols > kHeadDim;
  static constexpr int kOnesOffset = kOOffset + (kOwnO ? kQBytes : 0);
  static constexpr int kOnesBytes = kSumsByMma ? 16 * kRowBytes : 0;  // 16 rows: a P V step's keys
  static constexpr int kBarOffset = kOnesOffset + kOnesBytes;
  static constexpr int kBarCount = 2 + 3 * kStages + 4;  // (Barriers)
  static constexpr int kSlotOffset = kBarOffset + 8 * kBarCount;
  static constexpr int kInfoOffset = kSlotOffset + 16;  // one word per stage (kInA ...)
  static constexpr int kClaimOffset = kInfoOffset + 16 * ((4 * kStages + 15) / 16);  // the producer's (Claimed)
  static constexpr int kSinkOffset = kClaimOffset + 128;
  static constexpr int kSmemBytes = kSinkOffset + 4 * kConsumerThreads + 1024;  // + slack to align to 1024
  static_assert(kBlockN == 128 && kMaskBlockMultiple % kBlockN == 0 &&
                (kConsumers == 3 || kMaskBlockMultiple % kBlockM == 0));
  static_assert(kSmemBytes <= 227 * 1024, "shared memory over the sm_90 limit");
  // (the ones after every V stage, so that each P V step's stride to them is positive; swizzle-aligned)
  static_assert(!kSumsByMma || (kOnesOffset > kVOffset && kOnesOffset % 1024 == 0));
};

// Kernel arguments besides the params and the tensor maps.
struct Sm90Work {
  int* counter;         // next work-item index, zeroed before the launch
  const int* order;     // work items longest first, or null for the natural order (dense)
  int total;            // batch * heads * q_tiles
  int keys;             // S_k: S, or the keys of a dense cross-attention
  int block_m;          // query rows per work item
  int q_tiles;
  int k_tiles;
  int mask_q_blocks;
  int mask_k_blocks;
};

__host__ __device__ inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Which CSR rows a sparse work item's consumer warpgroups (64 query rows each) follow. A 192-row
// item spans two 128-row mask blocks: `a` is the first warpgroup's row, `b` the last active one's
// (warpgroups whose rows all lie at or past S are inactive); warpgroup g follows `a` when its rows
// lie in a's mask block, else `b`.
struct ItemRows {
  int a, b;
  int groups;    // active warpgroups
  int in_a;      // how many of them follow `a`
};

// The mask block of warpgroup g's rows in the item whose rows start at `first`: warpgroup g follows
// row a when it is warpgroup 0's (item_rows, the order kernel and the consumers must agree).
__device__ inline int group_block(const FlashParams& p, int first, int g) { return (first + 64 * g) / p.mask_block_q; }

__device__ inline ItemRows item_rows(const FlashParams& p, const Sm90Work& w, int b, int h, int t) {
  const int slot = p.mask_heads == p.heads ? h : b * p.heads + h;
  const int first = t * w.block_m, base = slot * w.mask_q_blocks;
  const int groups = min(w.block_m / 64, ceil_div(p.seqlen - first, 64));
  const int block_a = group_block(p, first, 0);
  int in_a = 0;
  for (int g = 0; g < groups; ++g) in_a += group_block(p, first, g) == block_a;
  return {base + block_a, base + group_block(p, first, groups - 1), groups, in_a};
}

// Per K/V stage, what the producer tells the consumers (in shared memory, read after k_full): which
// of the item's CSR rows visit the tile (kInA, kInB; dense: both), whether it is the item's last
// (kLastTile) or a row's last (kLastA, kLastB), and its keys below S_k (from bit kValidShift).
constexpr int kInA = 1, kInB = 2, kLastTile = 4, kLastA = 8, kLastB = 16;
constexpr int kValidShift = 5;

struct WorkItem {
  int b, h, t;
};

// What the producer tells the consumers about the item whose Q it loads (in shared memory, read
// after q_full), so that they need no global-memory lookups of their own between items.
struct ItemSlot {
  int item;     // -1: no more work
  int tiles_a;  // key tiles of its CSR row a (every tile: dense)
  int tiles_b;  // of its row b
  int two_rows;  // rows a and b differ: a warpgroup may pass tiles of the other's
};

__device__ inline WorkItem decode_item(int item, int heads, int q_tiles) {
  int t = item % q_tiles;
  int bh = item / q_tiles;
  return {bh / heads, bh % heads, t};
}

// Per-item cycle counts, a diagnostic build (-DVDIT_FLASH_SM90_STATS; flash_sm90.sh STATS=1): the
// first thread of each consumer warpgroup counts the cycles it waits for Q, K and V, for its wgmma
// results and the stagger, spends in its epilogue (with the other row's trailing stages) and lives;
// after each launch a one-thread kernel prints them per item and per tile once every warpgroup has
// added its own.
#if defined(VDIT_FLASH_SM90_STATS)
// q, k, v waits, tiles, items, epilogue, lifetime, warpgroups; then the waits for wgmma results: the
// first tile's Q K^T, each later Q K^T, each P V, the last P V; the stagger's wait (d = 64); the
// longest lifetime (the launch's tail: its warpgroups live that long less the mean on average idle); an
// item's cycles from Q to the steady loop (its first tile), in the loop, and from the loop to the
// epilogue, and the items with a tile (the others have none of these three); then, for the items with a
// tile by kind (one CSR row; two rows, this warpgroup's row a; two rows, its row b): items, loop
// cycles, tiles in the loop, the other row's stages passed, K-wait cycles, and the cycles and tiles of
// the loop's first kStatsEarly tiles (an item's warpgroups settling into their rhythm)
constexpr int kStatsKinds = 3, kStatsByKind = 7, kStatsEarly = 4;
constexpr int kStatsCount = 18 + kStatsKinds * kStatsByKind;
__device__ unsigned long long g_stats[kStatsCount];
__device__ unsigned int g_stats_done;
#define VDIT_STATS(...) __VA_ARGS__
#define VDIT_STATS_TIMED(field, ...)                              \
  do {                                                            \
    const long long stats_t0 = clock64();                         \
    __VA_ARGS__;                                                  \
    stats.field += static_cast<uint32_t>(clock64() - stats_t0);   \
  } while (0)
#else
#define VDIT_STATS(...)
#define VDIT_STATS_TIMED(field, ...) __VA_ARGS__
#endif

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

using namespace sm90;

// One thread's view of the accumulator fragments: rows r = lane/4 and lane/4 + 8 of its warp's 16,
// columns 8j + 2*(lane%4) + {0, 1}; element [4j + 2r + e].
template <class Tr>
struct Softmax {
  float m[2];  // running max of the scaled scores, log2 units
  float l[2];  // running sum of exp2, this thread's columns only (unless kSumsByMma: O's last columns)

  __device__ void reset() {
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.f;
  }

  // Masks the columns >= valid (keys past S), folds the tile into the running max and sum (the sum
  // not with kSumsByMma), turns s into exp2(scaled - max) in place, and gives the factors the old O
  // must be multiplied by; returns false when they are all 1 in the warp (the max moves lazily:
  // softmax_exp2).
  __device__ __forceinline__ bool step(float (&s)[Tr::kBlockN / 2], int valid, float scale_log2,
                                       float (&correction)[2]) {
    const bool moved = softmax_exp2<Tr, true>(s, m, valid, scale_log2, correction);
    if constexpr (!Tr::kSumsByMma) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float v[Tr::kBlockN / 8];
#pragma unroll
        for (int j = 0; j < Tr::kBlockN / 8; ++j) v[j] = s[4 * j + 2 * r] + s[4 * j + 2 * r + 1];
        l[r] = l[r] * correction[r] + tree_reduce<Tr::kBlockN / 8>(v, [](float a, float b) { return a + b; });
      }
    }
    return moved;
  }
};

template <class Tr>
__device__ __forceinline__ void convert_p(const float (&s)[Tr::kBlockN / 2], uint32_t (&p)[Tr::kBlockN / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < Tr::kBlockN / 16; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) p[kk][i] = pack2<Tr::kBf16>(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]);
}

// The CTA's mbarriers, in the order of Sm90Traits (shared-memory addresses): a stage's are k_full +
// 8 * stage and so on, a claimed item's claim_full + 8 * k and claim_empty + 8 * k.
template <class Tr>
struct Barriers {
  uint32_t q_full, q_empty, k_full, v_full, kv_empty, claim_full, claim_empty;
  __device__ explicit Barriers(uint32_t smem)
      : q_full(smem + Tr::kBarOffset),
        q_empty(q_full + 8),
        k_full(q_full + 16),
        v_full(k_full + 8 * Tr::kStages),
        kv_empty(v_full + 8 * Tr::kStages),
        claim_full(kv_empty + 8 * Tr::kStages),
        claim_empty(claim_full + 16) {}
};

// A work item as the claiming warp hands it to the producer, an item ahead (in shared memory).
struct Claimed {
  int item;  // -1: no more work
  WorkItem wi;
  const int32_t* a;  // key blocks of CSR row a (null: dense, every tile)
  const int32_t* b;  // of row b, null when it lists what row a lists
  int tiles_a, tiles_b;  // key tiles of each (dense: every tile)
  bool token_major;      // read from the token-major copies
};
static_assert(sizeof(Claimed) <= 64);

// Claims the next work item, by a warp: its lookups (counter, order, CSR rows) are a chain of
// dependent global loads. Rows a and b that list the same key blocks (the rows of one frame, in the
// tile patterns) are found by the lanes in a step or few and run as one row: the consumers then
// read each stage's flags after their Q K^T, off the critical path, and pass no stages.
template <class Tr>
__device__ int claim(const FlashParams& p, const Sm90Work& w, Claimed& c) {
  const int lane = threadIdx.x % 32;
  Claimed n{};
  n.item = -1;
  const int index = __shfl_sync(0xffffffffu, lane == 0 ? atomicAdd(w.counter, 1) : 0, 0);
  if (index < w.total) {
    n.item = w.order ? w.order[index] : index;
    n.wi = decode_item(n.item, p.heads, w.q_tiles);
    n.token_major = p.unpermute && p.unpermute[p.unpermute_slots == p.heads ? n.wi.h : n.wi.b * p.heads + n.wi.h];
    n.a = n.b = nullptr;
    n.tiles_a = n.tiles_b = w.k_tiles;
    if (p.row_offsets) {
      const ItemRows rows = item_rows(p, w, n.wi.b, n.wi.h, n.wi.t);
      const int a0 = p.row_offsets[rows.a], a1 = p.row_offsets[rows.a + 1];
      n.a = p.key_blocks + a0;
      n.tiles_a = n.tiles_b = key_tile_count(n.a, a1 - a0, w.keys, p.mask_block_k, Tr::kBlockN);
      if (Tr::kConsumers > 2 && rows.b != rows.a) {  // (128-row items follow one row)
        const int b0 = p.row_offsets[rows.b], b1 = p.row_offsets[rows.b + 1];
        bool same = b1 - b0 == a1 - a0;
        for (int i = 0; same && i < a1 - a0; i += 32)  // (uniform: the warp's loop)
          same = __all_sync(0xffffffffu, i + lane >= a1 - a0 || n.a[i + lane] == p.key_blocks[b0 + i + lane]);
        if (!same) {
          n.b = p.key_blocks + b0;
          n.tiles_b = key_tile_count(n.b, b1 - b0, w.keys, p.mask_block_k, Tr::kBlockN);
        }
      }
    }
  }
  if (lane == 0) c = n;  // (only the producer thread reads it, after claim_full)
  return n.item;
}

// The claiming warp (the producer warpgroup's second): keeps the item after the producer's current
// one claimed, so that the producer never waits on claim's chain of loads with stages free.
template <class Tr>
__device__ void claimer(const FlashParams& p, const Sm90Work& w, uint32_t smem, Claimed (&claims)[2]) {
  const Barriers<Tr> bars(smem);
  uint32_t phase = 0;
  for (int k = 0;; k ^= 1) {
    mbar_wait(bars.claim_empty + 8 * k, phase ^ 1);
    const int item = claim<Tr>(p, w, claims[k]);
    if (threadIdx.x % 32 == 0) mbar_arrive(bars.claim_full + 8 * k);
    if (item < 0) return;
    if (k == 1) phase ^= 1;
  }
}

// tm[0..2]: Q, K, V; tm[3..5]: their token-major copies, read for the slots FlashParams::unpermute flags.
template <class Tr>
__device__ void producer(const FlashParams& p, const Sm90Work& w, const CUtensorMap* const (&tm)[6], uint32_t smem,
                         volatile ItemSlot* slot, Claimed (&claims)[2]) {
  const auto [q_full, q_empty, k_full, v_full, kv_empty, claim_full, claim_empty] = Barriers<Tr>(smem);
  volatile int* info = reinterpret_cast<volatile int*>(slot + 1);  // per stage, see kInA
  const int sub = p.row_offsets ? p.mask_block_k / Tr::kBlockN : 1;  // tiles per mask key block
  int stage = 0;
  uint32_t phase = 0, q_phase = 0;
  int k = 0;  // claims[k]: the current item
  uint32_t claim_phase = 0;
  for (;;) {
    mbar_wait(claim_full + 8 * k, claim_phase);
    const Claimed& cur = claims[k];
    auto load_kv = [&](int key0, int tile_info) {
      mbar_wait(kv_empty + 8 * stage, phase ^ 1);
      info[stage] = tile_info;
      const CUtensorMap* tm_k = cur.token_major ? tm[4] : tm[1];
      const CUtensorMap* tm_v = cur.token_major ? tm[5] : tm[2];
      const uint32_t k_dst = smem + Tr::kKOffset + stage * Tr::kKVBytes;
      const uint32_t v_dst = smem + Tr::kVOffset + stage * Tr::kKVBytes;
      mbar_expect_tx(k_full + 8 * stage, Tr::kKVBytes);
#pragma unroll
      for (int c = 0; c < Tr::kChunks; ++c)
        tma_load_4d(k_dst + c * Tr::kKVChunkBytes, tm_k, k_full + 8 * stage, c * Tr::kChunk, cur.wi.h, key0, cur.wi.b);
      mbar_expect_tx(v_full + 8 * stage, Tr::kKVBytes);
#pragma unroll
      for (int c = 0; c < Tr::kChunks; ++c)
        tma_load_4d(v_dst + c * Tr::kKVChunkBytes, tm_v, v_full + 8 * stage, c * Tr::kChunk, cur.wi.h, key0, cur.wi.b);
      if (++stage == Tr::kStages) {
        stage = 0;
        phase ^= 1;
      }
    };
    // Hands the item to the consumers and loads its Q; called after its first K/V tile, which
    // needs only a free stage and so loads while the consumers finish the last item.
    auto begin_item = [&]() {
      mbar_wait(q_empty, q_phase ^ 1);
      q_phase ^= 1;
      slot->item = cur.item;
      if (cur.item < 0) {
        mbar_arrive(q_full);
        return;
      }
      slot->tiles_a = cur.tiles_a;
      slot->tiles_b = cur.tiles_b;
      slot->two_rows = cur.b != nullptr;
      mbar_expect_tx(q_full, Tr::kQBytes);
      const CUtensorMap* tm_q = cur.token_major ? tm[3] : tm[0];
#pragma unroll
      for (int c = 0; c < Tr::kChunks; ++c)
        tma_load_4d(smem + Tr::kQOffset + c * Tr::kQChunkBytes, tm_q, q_full, c * Tr::kChunk, cur.wi.h,
                    cur.wi.t * Tr::kBlockM, cur.wi.b);
    };
    if (cur.item < 0) {
      begin_item();
      return;
    }
    // The union of rows a's and b's key tiles (both sorted), each tile flagged with the rows that
    // visit it, mostly in key order: a tile of one row only goes first when it is the lower one,
    // unless the other row's warpgroups have waited kStages - 2 stages. A warpgroup holds its last
    // stage until its next Q K^T, so the ring must not come round to it (and where the two rows
    // keep different keys, say two frames, their warpgroups then work side by side, not in turn).
    // A tile taken early for row b that row a also keeps comes again later for row a.
    const int32_t* const row_b = Tr::kConsumers > 2 ? cur.b : nullptr;
    const int tiles_b = row_b ? cur.tiles_b : 0;
    // A row's i-th key tile. (Mask blocks of one tile, the usual case, skip the division: 1-4% on the
    // sparse rows, measured; RESULTS.)
    auto tile_of = [&](const int32_t* row, int tiles, int i) {
      return i >= tiles ? INT_MAX : !row ? i : sub == 1 ? row[i] : row[i / sub] * sub + i % sub;
    };
    const int both = row_b ? 0 : kInB | kLastB;  // one row: b is a, or lists the same blocks
    int ia = 0, ib = 0, since_a = 0, since_b = 0, loaded = 0;
    int next_a = tile_of(cur.a, cur.tiles_a, 0), next_b = tile_of(row_b, tiles_b, 0);
    if (min(next_a, next_b) == INT_MAX) begin_item();
    while (min(next_a, next_b) != INT_MAX) {
      bool in_a = next_a <= next_b, in_b = next_b <= next_a;
      if (in_a != in_b && (in_a ? next_b != INT_MAX && since_b >= Tr::kStages - 2
                                : next_a != INT_MAX && since_a >= Tr::kStages - 2)) {
        in_a = !in_a;
        in_b = !in_b;
      }
      const int tile = in_a ? next_a : next_b;
      int flags = 0;
      if (in_a) {
        next_a = tile_of(cur.a, cur.tiles_a, ++ia);
        flags |= kInA | (both & kInB) | (next_a == INT_MAX ? kLastA | (both & kLastB) : 0);
      }
      if (in_b) {
        next_b = tile_of(row_b, tiles_b, ++ib);
        flags |= kInB | (next_b == INT_MAX ? kLastB : 0);
      }
      since_a = in_a ? 0 : since_a + 1;
      since_b = in_b ? 0 : since_b + 1;
      if (min(next_a, next_b) == INT_MAX) flags |= kLastTile;
      const int key0 = tile * Tr::kBlockN;
      load_kv(key0, flags | min(Tr::kBlockN, w.keys - key0) << kValidShift);
      if (++loaded == 1) begin_item();
    }
    mbar_arrive(claim_empty + 8 * k);
    if (k == 1) claim_phase ^= 1;
    k ^= 1;
  }
}

// O / l of this warpgroup's 64 rows to global memory: written as 16-bit values (swizzled like a TMA
// load) into `buffer`, then stored by TMA, which clips rows >= S. With kOwnO, `buffer` is O's own
// and the warpgroup waits only for its previous store to have been read out. Otherwise it is the K of
// the item's last stage, written once every warpgroup's last Q K^T has read it (the item's q_empty
// phase, `q_done`: no wait for the other warpgroup's last P V, so the warpgroups do not leave every
// item together); the thread that issues the store releases the stage later (release_stage), once
// TMA has read it.
template <class Tr>
__device__ __forceinline__ void store_o(const float (&o)[Tr::kOCols / 2], const float (&inv)[2], uint32_t buffer,
                                       const CUtensorMap* tm_o, const WorkItem& wi, int group, uint32_t kv_empty,
                                       uint32_t q_empty, uint32_t q_done) {
  const int thread = threadIdx.x % 128, lane = thread % 32;
  if constexpr (Tr::kOwnO) {
    // this warpgroup's previous O store has been read out of its half of the buffer
    if (thread == 0) asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
    named_barrier(5 + group, 128);
  } else {
    mbar_wait(q_empty, q_done);  // every warpgroup's last Q K^T has read this K
  }
  const uint32_t base = buffer + group * 64 * Tr::kRowBytes;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = (thread / 32) * 16 + lane / 4 + 8 * r;
#pragma unroll
    for (int j = 0; j < Tr::kHeadDim / 8; ++j) {
      const uint32_t address = base + (j / Tr::kUnits) * Tr::kKVChunkBytes + row * Tr::kRowBytes +
                               swizzled_unit<Tr>(row, j % Tr::kUnits) * 16 + 4 * (lane % 4);
      const uint32_t value = pack2<Tr::kBf16>(o[4 * j + 2 * r] * inv[r], o[4 * j + 2 * r + 1] * inv[r]);
      asm volatile("st.shared.b32 [%0], %1;" ::"r"(address), "r"(value) : "memory");
    }
  }
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // visible to TMA
  named_barrier(2 + group, 128);
  if (thread == 0) {
#pragma unroll
    for (int c = 0; c < Tr::kChunks; ++c)
      tma_store_4d(tm_o, base + c * Tr::kKVChunkBytes, c * Tr::kChunk, wi.h, wi.t * Tr::kBlockM + group * 64,
                   wi.b);
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
  } else if constexpr (!Tr::kOwnO) {
    mbar_arrive(kv_empty);
  }
}

// At d = 64 (three consumer warpgroups) warpgroups start an item in turn: each issues its first Q
// K^T once the previous one's has completed (named barriers 8 and 9), so that they do not all wait
// on the tensor cores and then all run their softmax at once at every item's start. (Nsight
// Compute: the short sparse rows wait ~2x longer on wgmma than the dense rows.) It gained 1-2.5% on
// Wan's short rows while O went through the last V; since it goes through the last K (store_o), the
// two warpgroups of d = 96 and 128 do not leave an item together, and there it measured equal or
// slower (HunyuanVideo tile:4 69.4 ms with it, 68.7 without). At d = 64 it is within the spread of
// the A/B calls (CogVideoX's short rows 1-2.5% either way, RESULTS). A warpgroup cannot start the next
// item before the one after it has completed its last Q K^T of this one (q_empty), so the barriers'
// arrivals never run an item ahead. Items of two CSR rows (`two_rows`) skip it (every warpgroup of the
// CTA reads the same slot, so all skip both sides): their rows' warpgroups start apart anyway, and the
// turn cost their spatial and temporal rows 0.7-1% of an item's cycles (STATS, RESULTS).
template <class Tr>
__device__ __forceinline__ void stagger_wait(int group, bool two_rows) {
  if (Tr::kConsumers > 2 && !two_rows && group > 0) named_barrier(7 + group, 256);
}

template <class Tr>
__device__ __forceinline__ void stagger_arrive(int group, bool two_rows) {
  if (Tr::kConsumers > 2 && !two_rows && group + 1 < Tr::kConsumers)
    asm volatile("bar.arrive %0, %1;" ::"r"(8 + group), "r"(256) : "memory");
}

// The issuing thread's share of releasing the stage store_o used, once TMA has read it: called
// after the next item's first Q K^T is issued, so that the wait overlaps it.
__device__ __forceinline__ void release_stage(int& pending, uint32_t kv_empty) {
  if (pending >= 0 && threadIdx.x % 128 == 0) {
    asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
    mbar_arrive(kv_empty + 8 * pending);
  }
  pending = -1;
}

// Frame-major row of token-major row r (text rows stay).
__device__ __forceinline__ int frame_major_row(const FlashParams& p, int r) {
  const int begin = p.text_first ? p.text : 0, video = p.frames * p.frame_tokens;
  if (r < begin || r >= begin + video) return r;
  return begin + static_cast<int>(frame_major_of_token_major(r - begin, p.frames, p.frame_tokens));
}

// O / l of this thread's two rows to global memory from the registers, each at its frame-major row
// when `unpermute`.
template <class Tr>
__device__ __forceinline__ void store_o_rows(const FlashParams& p, const float (&o)[Tr::kOCols / 2],
                                             const float (&inv)[2], const WorkItem& wi, int row_in_tile,
                                             bool unpermute) {
  using Element = std::conditional_t<Tr::kBf16, __nv_bfloat16, __half>;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    int row = wi.t * Tr::kBlockM + row_in_tile + 8 * r;
    if (row >= p.seqlen) continue;
    if (unpermute) row = frame_major_row(p, row);
    Element* out =
        static_cast<Element*>(p.o) + wi.b * p.o_batch_stride + int64_t{row} * p.o_row_stride + wi.h * p.o_head_stride;
#pragma unroll
    for (int j = 0; j < Tr::kHeadDim / 8; ++j) {
      const int col = 8 * j + 2 * (lane % 4);
      if (Tr::kHeadDim == p.head_dim || col < p.head_dim)
        *reinterpret_cast<uint32_t*>(out + col) =
            pack2<Tr::kBf16>(o[4 * j + 2 * r] * inv[r], o[4 * j + 2 * r + 1] * inv[r]);
    }
  }
}

#if defined(VDIT_FLASH_SM90_STATS)
struct ConsumerStats {
  long long start;
  uint32_t q = 0, k = 0, v = 0, tiles = 0, items = 0, epilogue = 0;
  uint32_t first_qk = 0, qk = 0, pv = 0, last_pv = 0, stagger = 0;
  uint32_t head = 0, loop = 0, tail = 0, busy = 0, passes = 0;
  uint32_t by_kind[kStatsKinds][kStatsByKind] = {};
  uint32_t early = 0, it = 0;                 // the loop's first kStatsEarly tiles' cycles; loop tiles so far
  uint32_t loop0 = 0, k0 = 0, passes0 = 0, early0 = 0;  // at the item's start
  long long mark = 0;
  __device__ void begin_item() {
    loop0 = loop;
    k0 = k;
    passes0 = passes;
    early0 = early;
    it = 0;
  }
  __device__ void end_item(int kind) {
    uint32_t* c = by_kind[kind];
    const uint32_t add[kStatsByKind] = {1u, loop - loop0 + early - early0, it,
                                        passes - passes0, k - k0, early - early0, min(it, kStatsEarly)};
    for (int i = 0; i < kStatsByKind; ++i) c[i] += add[i];
  }
  __device__ ConsumerStats() : start(clock64()) {}
  __device__ void lap(uint32_t& field) {
    const long long now = clock64();
    field += static_cast<uint32_t>(now - mark);
    mark = now;
  }
  __device__ void flush() const {
    const uint32_t counts[6] = {q, k, v, tiles, items, epilogue};
    for (int i = 0; i < 6; ++i) atomicAdd(&g_stats[i], counts[i]);
    const auto lifetime = static_cast<unsigned long long>(clock64() - start);
    atomicAdd(&g_stats[6], lifetime);
    atomicMax(&g_stats[13], lifetime);
    atomicAdd(&g_stats[7], 1ull);
    const uint32_t waits[5] = {first_qk, qk, pv, last_pv, stagger};
    for (int i = 0; i < 5; ++i) atomicAdd(&g_stats[8 + i], waits[i]);
    const uint32_t laps[4] = {head, loop + early, tail, busy};
    for (int i = 0; i < 4; ++i) atomicAdd(&g_stats[14 + i], laps[i]);
    for (int kind = 0; kind < kStatsKinds; ++kind)
      for (int i = 0; i < kStatsByKind; ++i) atomicAdd(&g_stats[18 + kStatsByKind * kind + i], by_kind[kind][i]);
    __threadfence();
    atomicAdd(&g_stats_done, 1u);
  }
};
#endif

template <class Tr>
__device__ void consumer(const FlashParams& p, const Sm90Work& w, const CUtensorMap* tm_o, uint32_t smem,
                         volatile ItemSlot* slot) {
  const auto [q_full, q_empty, k_full, v_full, kv_empty, claim_full, claim_empty] = Barriers<Tr>(smem);
  // consumer warpgroup: query rows 64*group .. (through a shuffle, so that ptxas sees it uniform
  // across the warp and does not serialise the wgmma on the paths that depend on it)
  const int group = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x / 128) - 1, 0);
  const int thread = threadIdx.x % 128;
  const int lane = thread % 32;
  const uint32_t q_address = smem + Tr::kQOffset + group * 64 * Tr::kRowBytes;
  const float scale_log2 = p.scale * 1.4426950408889634f;
  const uint32_t sink = smem + Tr::kSinkOffset + 4 * (threadIdx.x - 128);

  volatile const int* info = reinterpret_cast<volatile const int*>(slot + 1);
  int stage = 0, pending = -1;  // pending: the stage of the last O store, until release_stage
  uint32_t phase = 0, q_phase = 0;
  VDIT_STATS(ConsumerStats stats;)
  auto advance = [&]() {
    if (++stage == Tr::kStages) {
      stage = 0;
      phase ^= 1;
    }
  };
  // Waits for the K of this warpgroup's next tile and, when the item has two rows, returns its info
  // word, the other row's stages on the way released unread. (With one row every tile is this
  // warpgroup's, and the caller reads the word after issuing Q K^T, off the critical path.)
  auto next_own = [&](int mine, auto two_rows) {
    if constexpr (!two_rows) {
      VDIT_STATS_TIMED(k, mbar_wait(k_full + 8 * stage, phase));
      return 0;
    } else {
      for (;;) {
        VDIT_STATS_TIMED(k, mbar_wait(k_full + 8 * stage, phase));
        const int tile = info[stage];
        if (tile & mine) return tile;
        mbar_arrive(kv_empty + 8 * stage);
        VDIT_STATS(++stats.passes;)
        advance();
      }
    }
  };
  // Releases the item's stages after this warpgroup's last tile (the other row's).
  auto skip_rest = [&]() {
    for (;;) {
      mbar_wait(k_full + 8 * stage, phase);
      const int tile = info[stage];
      mbar_arrive(kv_empty + 8 * stage);
      advance();
      if (tile & kLastTile) return;
    }
  };
  for (;;) {
    VDIT_STATS_TIMED(q, mbar_wait(q_full, q_phase));
    q_phase ^= 1;
    VDIT_STATS(stats.mark = clock64(); stats.begin_item();)
    const int item = slot->item;
    if (item < 0) {
      VDIT_STATS(if (thread == 0) stats.flush();)
      release_stage(pending, kv_empty);
      if (thread == 0) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");  // the last O stores done
      return;
    }
    const int tiles_a = slot->tiles_a, tiles_b = slot->tiles_b;
    const bool item_two_rows = Tr::kConsumers > 2 && slot->two_rows;
    const WorkItem wi = decode_item(item, p.heads, w.q_tiles);
    // This warpgroup's CSR row (see item_rows) and its tile count. (Rows past S compute on zeros
    // and are not stored.)
    const int first = wi.t * Tr::kBlockM;
    const bool in_a = !p.row_offsets || group_block(p, first, group) == group_block(p, first, 0);
    const int mine = in_a ? kInA : kInB, my_last = in_a ? kLastA : kLastB;
    const int count = in_a ? tiles_a : tiles_b;
    bool rest = tiles_a + tiles_b > 0;  // stages of the item this warpgroup still has to release

    // The item, compiled apart for one row and for two (`two_rows` a std::bool_constant): the one-row loop then
    // carries none of the two-row path's branches (STATS: 2% fewer cycles a tile on dense, 0.6% on two-row
    // items). (Specialising only the tile loop, with O declared outside it, made ptxas serialise the wgmma for
    // want of registers.)
    auto item_body = [&](auto two_rows) {
      float o[Tr::kOCols / 2];
#pragma unroll
      for (int i = 0; i < Tr::kOCols / 2; ++i) o[i] = 0.f;
      Softmax<Tr> softmax;
      softmax.reset();
      int prev_stage = stage;

      if (count == 0) {
        stagger_wait<Tr>(group, two_rows);
        stagger_arrive<Tr>(group, two_rows);
        release_stage(pending, kv_empty);
        mbar_arrive(q_empty);
      } else {
        float s[Tr::kBlockN / 2];
        uint32_t pf[Tr::kBlockN / 16][4];
        float correction[2];
        bool moved;

        // The first tile alone, then each next tile's Q K^T together with the last one's P V, whose
        // softmax runs while P V does.
        int tile = next_own(mine, two_rows);
        VDIT_STATS_TIMED(stagger, stagger_wait<Tr>(group, two_rows));
        issue_qk<Tr>(s, q_address, smem + Tr::kKOffset + stage * Tr::kKVBytes);
        if constexpr (!two_rows) tile = info[stage];
        release_stage(pending, kv_empty);
        VDIT_STATS_TIMED(first_qk, wgmma_wait<0>());
        fence_registers(s);
        stagger_arrive<Tr>(group, two_rows);
        if (tile & my_last) mbar_arrive(q_empty);
        moved = softmax.step(s, tile >> kValidShift, scale_log2, correction);
        convert_p<Tr>(s, pf);
        prev_stage = stage;
        uint32_t prev_phase = phase;
        advance();
        VDIT_STATS(stats.lap(stats.head);)
        while (!(tile & my_last)) {
          tile = next_own(mine, two_rows);
          VDIT_STATS_TIMED(v, mbar_wait(v_full + 8 * prev_stage, prev_phase));
          VDIT_STATS(++stats.tiles;)
          issue_qk<Tr>(s, q_address, smem + Tr::kKOffset + stage * Tr::kKVBytes);
          if constexpr (!two_rows) tile = info[stage];
          if (moved) rescale_o<Tr>(o, correction);  // O to the scale of P before P V is added (warp-uniform)
          issue_pv<Tr>(o, pf, smem + Tr::kVOffset + prev_stage * Tr::kKVBytes, smem + Tr::kOnesOffset);
          VDIT_STATS_TIMED(qk, wgmma_wait<1>());
          fence_registers(s);
          if (tile & my_last) mbar_arrive(q_empty);
          moved = softmax.step(s, tile >> kValidShift, scale_log2, correction);
          // The softmax must happen while P V runs: keep ptxas from hoisting the wait above it. (At d = 64 the
          // row sums are O's, l stays 0, and the store keeps only the running max's reduction above the wait;
          // the exponentials follow it. Measured there: without the store 6% slower, with one that depends on
          // every probability 3% slower, with one of m within the spread; RESULTS.)
          order_after(sink, softmax.l[0] + softmax.l[1]);
          VDIT_STATS_TIMED(pv, wgmma_wait<0>());
          fence_registers(o);
          mbar_arrive(kv_empty + 8 * prev_stage);
          convert_p<Tr>(s, pf);
          prev_stage = stage;
          prev_phase = phase;
          advance();
          VDIT_STATS(if (++stats.it == kStatsEarly) stats.lap(stats.early);)
        }
        VDIT_STATS(stats.lap(stats.it < kStatsEarly ? stats.early : stats.loop);)
        rest = !(tile & kLastTile);
        VDIT_STATS_TIMED(v, mbar_wait(v_full + 8 * prev_stage, prev_phase));
        VDIT_STATS(++stats.tiles;)
        if (moved) rescale_o<Tr>(o, correction);
        issue_pv<Tr>(o, pf, smem + Tr::kVOffset + prev_stage * Tr::kKVBytes, smem + Tr::kOnesOffset);
        VDIT_STATS_TIMED(last_pv, wgmma_wait<0>());
        fence_registers(o);
        if constexpr (Tr::kOwnO) mbar_arrive(kv_empty + 8 * prev_stage);
      }

      VDIT_STATS(++stats.items; if (count > 0) {
        stats.lap(stats.tail);
        ++stats.busy;
        stats.end_item(two_rows ? (in_a ? 1 : 2) : 0);
      } const long long epilogue_start = clock64();)
      // Epilogue: O / l (through the last tile's stage, by TMA; rows with no kept tile store zeros
      // directly), LSE.
      const int row_in_tile = group * 64 + (thread / 32) * 16 + lane / 4;
      float inv[2], l[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        if constexpr (Tr::kSumsByMma) {
          l[r] = o[Tr::kHeadDim / 2 + 2 * r];  // (every column of the 8 holds the row's sum)
        } else {
          l[r] = softmax.l[r];
          l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
          l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        }
        inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;
      }
      const bool unpermute =
          p.unpermute && p.unpermute[p.unpermute_slots == p.heads ? wi.h : wi.b * p.heads + wi.h];
      if (count > 0 && !unpermute) {
        store_o<Tr>(o, inv, Tr::kOwnO ? smem + Tr::kOOffset : smem + Tr::kKOffset + prev_stage * Tr::kKVBytes, tm_o,
                    wi, group, kv_empty + 8 * prev_stage, q_empty, q_phase ^ 1);
        if constexpr (!Tr::kOwnO) pending = prev_stage;
      } else {
        // Rows with no kept tile (O = 0), and token-major rows going back to their frame-major place:
        // straight from the registers.
        store_o_rows<Tr>(p, o, inv, wi, row_in_tile, unpermute);
        if (!Tr::kOwnO && count > 0) mbar_arrive(kv_empty + 8 * prev_stage);
      }
      if (p.lse && lane % 4 == 0) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int row = wi.t * Tr::kBlockM + row_in_tile + 8 * r;
          if (row < p.seqlen)
            p.lse[(static_cast<int64_t>(wi.b) * p.heads + wi.h) * p.seqlen + row] =
                l[r] > 0.f ? (softmax.m[r] + log2f(l[r])) * 0.6931471805599453f : -INFINITY;
        }
      }
      if (rest) skip_rest();
      VDIT_STATS(stats.epilogue += static_cast<uint32_t>(clock64() - epilogue_start);)
    };
    if (item_two_rows)
      item_body(std::true_type{});
    else
      item_body(std::false_type{});
  }
}

template <class Tr>
__device__ void kernel_body(const FlashParams& p, const Sm90Work& w, const CUtensorMap* const (&tm)[6],
                            const CUtensorMap* tm_o) {
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_address(smem_raw);
  const uint32_t smem = (raw + 1023) & ~1023u;
  volatile ItemSlot* slot = reinterpret_cast<volatile ItemSlot*>(smem_raw + (smem - raw) + Tr::kSlotOffset);

  if (threadIdx.x == 0) {
    const Barriers<Tr> bars(smem);
    mbar_init(bars.q_full, 1);  // the producer's expect_tx
    mbar_init(bars.q_empty, Tr::kConsumerThreads);
    for (int s = 0; s < Tr::kStages; ++s) {
      mbar_init(bars.k_full + 8 * s, 1);
      mbar_init(bars.v_full + 8 * s, 1);
      mbar_init(bars.kv_empty + 8 * s, Tr::kConsumerThreads);
    }
    for (int k = 0; k < 2; ++k) mbar_init(bars.claim_full + 8 * k, 1);
    for (int k = 0; k < 2; ++k) mbar_init(bars.claim_empty + 8 * k, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  if constexpr (Tr::kSumsByMma) fill_ones<Tr::kBf16, Tr::kOnesBytes, Tr::kThreads>(smem + Tr::kOnesOffset);
  __syncthreads();

  if (threadIdx.x < 128) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Tr::kProducerRegs) : "memory");
    Claimed(&claims)[2] = *reinterpret_cast<Claimed(*)[2]>(smem_raw + (smem - raw) + Tr::kClaimOffset);
    if (threadIdx.x == 0) {
      producer<Tr>(p, w, tm, smem, slot, claims);
    } else if (threadIdx.x / 32 == 1) {
      claimer<Tr>(p, w, smem, claims);
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Tr::kConsumerRegs) : "memory");
    consumer<Tr>(p, w, tm_o, smem, slot);
  }
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

#if defined(VDIT_FLASH_SM90_STATS)
// Prints and clears the counts once all `warpgroups` of the launch have added theirs.
__global__ void flash_sm90_stats_kernel(unsigned int warpgroups) {
  if (g_stats_done != warpgroups) return;
  unsigned long long v[kStatsCount];
  for (int i = 0; i < kStatsCount; ++i) v[i] = g_stats[i], g_stats[i] = 0;
  g_stats_done = 0;
  const double items = static_cast<double>(v[4]), tiles = static_cast<double>(v[3]), groups = static_cast<double>(v[7]);
  const double busy = static_cast<double>(v[17]);  // items with a tile: head, loop (tiles - 1 each), tail
  printf("stats: %.0f warpgroups, %.1f items and %.2f tiles an item each; cycles an item: Q wait %.0f, K wait %.0f, "
         "V wait %.0f, epilogue %.0f, all %.0f; a tile %.0f; wgmma waits an item: first Q K^T %.0f, Q K^T %.0f, "
         "P V %.0f, last P V %.0f; stagger %.0f; lifetime: mean %.0f, longest %.0f (%.1f%% idle); head %.0f, "
         "loop %.0f (%.0f a tile), tail %.0f\n",
         groups, items / groups, tiles / items, v[0] / items, v[1] / items, v[2] / items, v[5] / items, v[6] / items,
         v[6] / tiles, v[8] / items, v[9] / items, v[10] / items, v[11] / items, v[12] / items, v[6] / groups,
         static_cast<double>(v[13]), 100.0 * (1.0 - v[6] / groups / static_cast<double>(v[13])), v[14] / busy,
         v[15] / busy, v[15] / (tiles - busy), v[16] / busy);
  const char* kinds[kStatsKinds] = {"one row", "two rows, row a", "two rows, row b"};
  for (int kind = 0; kind < kStatsKinds; ++kind) {
    const unsigned long long* c = v + 18 + kStatsByKind * kind;
    if (c[0] == 0) continue;
    const double n = static_cast<double>(c[0]), t = static_cast<double>(c[2]);
    const double early = static_cast<double>(c[6]);
    printf("stats %s: %.0f items, %.2f loop tiles an item, loop %.0f cycles a tile (the first %d: %.0f, the rest: "
           "%.0f), %.2f stages passed an item, K wait %.0f an item\n",
           kinds[kind], n, t / n, t > 0 ? c[1] / t : 0.0, kStatsEarly, early > 0 ? c[5] / early : 0.0,
           t > early ? (c[1] - c[5]) / (t - early) : 0.0, c[3] / n, c[4] / n);
  }
}
#endif

template <int kHeadDim, bool kBf16>
__global__ void __launch_bounds__(Sm90Traits<kHeadDim, kBf16>::kThreads, 1)
    flash_fwd_sm90_kernel(const __grid_constant__ FlashParams p, const __grid_constant__ Sm90Work w,
                          const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                          const __grid_constant__ CUtensorMap tm_v, const __grid_constant__ CUtensorMap tm_q2,
                          const __grid_constant__ CUtensorMap tm_k2, const __grid_constant__ CUtensorMap tm_v2,
                          const __grid_constant__ CUtensorMap tm_o) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  const CUtensorMap* const maps[6] = {&tm_q, &tm_k, &tm_v, &tm_q2, &tm_k2, &tm_v2};
  kernel_body<Sm90Traits<kHeadDim, kBf16>>(p, w, maps, &tm_o);
#endif
}

// Work items in order of decreasing CSR row length, in kOrderBuckets buckets of equal width, and
// in their natural (batch, head, tile) order within a bucket, so that concurrent CTAs mostly read
// the K/V of one head (L2 reuse). A stable counting sort in one CTA: first the bucket sizes, then
// chunks of 1024 items in item order, each item placed at its bucket's next free position plus its
// rank among the chunk's earlier items of that bucket (ranks by warp match, offsets by a scan over
// the warps). Also zeroes the work counter. work[0] = counter, work[1..total] = order.
constexpr int kOrderThreads = 1024;
constexpr int kOrderBuckets = 32;  // = warps of the CTA = lanes of a warp (the scans below)

__global__ void __launch_bounds__(kOrderThreads)
    flash_sm90_order_kernel(const __grid_constant__ FlashParams p, const __grid_constant__ Sm90Work w, int* work) {
  __shared__ int next[kOrderBuckets];                 // next free position of each bucket
  __shared__ int offset[kOrderBuckets][kOrderBuckets];  // [bucket][warp] within the current chunk
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const unsigned lanes_below = (1u << lane) - 1;
  auto bucket_of = [&](int item) {  // by the mean CSR row length of the item's warpgroups
    const int t = item % w.q_tiles, bh = item / w.q_tiles;
    const ItemRows rows = item_rows(p, w, bh / p.heads, bh % p.heads, t);
    const int length_a = p.row_offsets[rows.a + 1] - p.row_offsets[rows.a];
    const int length_b = p.row_offsets[rows.b + 1] - p.row_offsets[rows.b];
    const int length = (length_a * rows.in_a + length_b * (rows.groups - rows.in_a)) / rows.groups;
    return kOrderBuckets - 1 - static_cast<int>(int64_t{length} * kOrderBuckets / (w.mask_k_blocks + 1));
  };
  if (tid < kOrderBuckets) next[tid] = 0;
  if (tid == 0) work[0] = 0;
  __syncthreads();
  for (int item = tid; item < w.total; item += kOrderThreads) {
    const int bucket = bucket_of(item);
    const unsigned peers = __match_any_sync(__activemask(), bucket);
    if ((peers & lanes_below) == 0) atomicAdd(&next[bucket], __popc(peers));
  }
  __syncthreads();
  if (warp == 0) {  // sizes -> starts: exclusive scan over the 32 buckets
    const int size = next[lane];
    int sum = size;
    for (int d = 1; d < 32; d *= 2) {
      const int up = __shfl_up_sync(0xffffffffu, sum, d);
      if (lane >= d) sum += up;
    }
    next[lane] = sum - size;
  }
  for (int base = 0; base < w.total; base += kOrderThreads) {
    const int item = base + tid;
    const int bucket = item < w.total ? bucket_of(item) : -1;
    offset[warp][lane] = 0;
    __syncthreads();
    const unsigned peers = __match_any_sync(0xffffffffu, bucket);
    const int rank = __popc(peers & lanes_below);
    if (bucket >= 0 && rank == 0) offset[bucket][warp] = __popc(peers);
    __syncthreads();
    {  // warp k scans bucket k over the warps
      const int count = offset[warp][lane];
      int sum = count;
      for (int d = 1; d < 32; d *= 2) {
        const int up = __shfl_up_sync(0xffffffffu, sum, d);
        if (lane >= d) sum += up;
      }
      offset[warp][lane] = next[warp] + sum - count;
      const int chunk_total = __shfl_sync(0xffffffffu, sum, 31);
      __syncwarp();
      if (lane == 0) next[warp] += chunk_total;  // read above by this warp only
    }
    __syncthreads();
    if (bucket >= 0) work[1 + offset[bucket][warp] + rank] = item;
    __syncthreads();
  }
}

// ---- Host side ----------------------------------------------------------------------------

// Host failures throw (std::runtime_error; fmt does not build under nvcc) naming the call.
[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("flash_fwd_sm90: " + what); }

void cuda_ok(cudaError_t status, const char* call) {
  if (status != cudaSuccess) fail(std::string(call) + " failed: " + cudaGetErrorString(status));
}
#define VDIT_CUDA_OK(call) cuda_ok((call), #call)

// [B, S, H, D] as a TMA map (make_head_tensor_map), boxes of Tr::kChunk columns x `rows` rows.
template <class Tr>
CUtensorMap make_tensor_map(const FlashParams& p, const void* data, int tokens, int64_t batch_stride,
                            int64_t row_stride, int64_t head_stride, int rows, const char* name) {
  CUtensorMap map;
  const HeadMajorTensor t{data, p.bf16, p.head_dim, p.heads, tokens, p.batch, batch_stride, row_stride, head_stride};
  const CUresult result = make_head_tensor_map(&map, t, rows, Tr::kChunk);
  if (result != CUDA_SUCCESS)
    fail(std::string("cuTensorMapEncodeTiled(") + name + ") failed: CUresult " + std::to_string(result));
  return map;
}

template <int kHeadDim, bool kBf16>
void launch(const FlashParams& p, cudaStream_t stream) {
  using Tr = Sm90Traits<kHeadDim, kBf16>;
  Sm90Work w{};
  w.keys = p.seqlen_k > 0 ? p.seqlen_k : p.seqlen;
  w.block_m = Tr::kBlockM;
  w.q_tiles = ceil_div(p.seqlen, Tr::kBlockM);
  w.k_tiles = ceil_div(w.keys, Tr::kBlockN);
  w.total = p.batch * p.heads * w.q_tiles;
  const bool sparse = p.row_offsets != nullptr;
  if (sparse) {
    w.mask_q_blocks = ceil_div(p.seqlen, p.mask_block_q);
    w.mask_k_blocks = ceil_div(p.seqlen, p.mask_block_k);
  }
  if (w.total == 0) return;

  auto map = [&](const void* data, int tokens, int64_t batch, int64_t row, int64_t head, int rows, const char* name) {
    return make_tensor_map<Tr>(p, data, tokens, batch, row, head, rows, name);
  };
  const CUtensorMap tm_q = map(p.q, p.seqlen, p.q_batch_stride, p.q_row_stride, p.q_head_stride, Tr::kBlockM, "q");
  const CUtensorMap tm_k = map(p.k, w.keys, p.k_batch_stride, p.k_row_stride, p.k_head_stride, Tr::kBlockN, "k");
  const CUtensorMap tm_v = map(p.v, w.keys, p.v_batch_stride, p.v_row_stride, p.v_head_stride, Tr::kBlockN, "v");
  const CUtensorMap tm_o =
      map(p.o, p.seqlen, p.o_batch_stride, p.o_row_stride, p.o_head_stride, 64, "o");
  // The token-major copies (FlashParams::unpermute), or Q, K, V again.
  const CUtensorMap tm_q2 = p.q_token_major ? map(p.q_token_major, p.seqlen, p.q_batch_stride, p.q_row_stride,
                                                  p.q_head_stride, Tr::kBlockM, "q_token_major")
                                            : tm_q;
  const CUtensorMap tm_k2 = p.k_token_major ? map(p.k_token_major, w.keys, p.k_batch_stride, p.k_row_stride,
                                                  p.k_head_stride, Tr::kBlockN, "k_token_major")
                                            : tm_k;
  const CUtensorMap tm_v2 = p.v_token_major ? map(p.v_token_major, w.keys, p.v_batch_stride, p.v_row_stride,
                                                  p.v_head_stride, Tr::kBlockN, "v_token_major")
                                            : tm_v;

  int device = 0, sms = 0;
  VDIT_CUDA_OK(cudaGetDevice(&device));
  VDIT_CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));

  int* work = nullptr;
  VDIT_CUDA_OK(cudaMallocAsync(&work, sizeof(int) * (sparse ? 1 + static_cast<size_t>(w.total) : 1), stream));
  w.counter = work;
  if (sparse) {
    w.order = work + 1;
    flash_sm90_order_kernel<<<1, kOrderThreads, 0, stream>>>(p, w, work);
    VDIT_CUDA_OK(cudaGetLastError());
  } else {
    VDIT_CUDA_OK(cudaMemsetAsync(work, 0, sizeof(int), stream));
  }

  auto kernel = flash_fwd_sm90_kernel<kHeadDim, kBf16>;
  VDIT_CUDA_OK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tr::kSmemBytes));
  const int grid = w.total < sms ? w.total : sms;
  kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, stream>>>(p, w, tm_q, tm_k, tm_v, tm_q2, tm_k2, tm_v2, tm_o);
  VDIT_CUDA_OK(cudaGetLastError());
#if defined(VDIT_FLASH_SM90_STATS)
  flash_sm90_stats_kernel<<<1, 1, 0, stream>>>(static_cast<unsigned int>(grid * Tr::kConsumers));
#endif
  VDIT_CUDA_OK(cudaFreeAsync(work, stream));
}

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

bool strides_ok(int64_t batch, int64_t row, int64_t head, int batches) {
  return row % 8 == 0 && head % 8 == 0 && (batches == 1 || batch % 8 == 0) && row > 0 && head > 0;
}

}  // namespace

bool flash_fwd_sm90_supports(const FlashParams& p) {
  if (!current_device_is_sm90()) return false;
  if (p.head_dim != 64 && p.head_dim != 96 && p.head_dim != 128) return false;
  if (p.batch < 1 || p.heads < 1 || p.seqlen < 1 || !(p.scale > 0.f)) return false;
  if (p.seqlen_k < 0 || (p.row_offsets && p.seqlen_k != 0 && p.seqlen_k != p.seqlen)) return false;
  if (p.unpermute && (p.seqlen_k != 0 && p.seqlen_k != p.seqlen)) return false;
  if ((p.q_token_major || p.k_token_major || p.v_token_major) &&
      (!p.unpermute || !aligned16(p.q_token_major) || !aligned16(p.k_token_major) || !aligned16(p.v_token_major)))
    return false;
  if (p.unpermute && (p.frames < 1 || p.frame_tokens < 1 || p.text < 0 ||
                      int64_t{p.frames} * p.frame_tokens + p.text != p.seqlen ||
                      (p.unpermute_slots != p.heads && p.unpermute_slots != p.batch * p.heads)))
    return false;
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.o)) return false;
  if (!strides_ok(p.q_batch_stride, p.q_row_stride, p.q_head_stride, p.batch) ||
      !strides_ok(p.k_batch_stride, p.k_row_stride, p.k_head_stride, p.batch) ||
      !strides_ok(p.v_batch_stride, p.v_row_stride, p.v_head_stride, p.batch))
    return false;
  if (!strides_ok(p.o_batch_stride, p.o_row_stride, p.o_head_stride, p.batch)) return false;
  if (p.row_offsets) {
    if (!p.key_blocks || p.mask_block_q < 1 || p.mask_block_k < 1) return false;
    // Query blocks of whole items: 128-row items (d = 96, 128) lie in one block, so multiples of 128. At
    // d = 64 a 192-row item lies in at most two blocks, each warpgroup's 64 rows in one: multiples of 64
    // from 128 (192: every item one block, one CSR row).
    const int q_multiple = p.head_dim == 64 ? 64 : kMaskBlockMultiple;
    if (p.mask_block_q % q_multiple != 0 || p.mask_block_q < kMaskBlockMultiple) return false;
    if (p.mask_block_k % kMaskBlockMultiple != 0) return false;
    if (p.mask_heads != p.heads && p.mask_heads != p.batch * p.heads) return false;
  }
  return true;
}

void flash_fwd_sm90(const FlashParams& p, cudaStream_t stream) {
  if (!flash_fwd_sm90_supports(p))
    fail("unsupported parameters (head_dim " + std::to_string(p.head_dim) + ", mask blocks " +
         std::to_string(p.mask_block_q) + "x" + std::to_string(p.mask_block_k) + ") or not an sm_90 GPU");
  if (p.head_dim == 64) {
    p.bf16 ? launch<64, true>(p, stream) : launch<64, false>(p, stream);
  } else if (p.head_dim == 96) {
    p.bf16 ? launch<96, true>(p, stream) : launch<96, false>(p, stream);
  } else {
    p.bf16 ? launch<128, true>(p, stream) : launch<128, false>(p, stream);
  }
}

}  // namespace vdit::cuda
