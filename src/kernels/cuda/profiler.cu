// The GPU profiler's kernels (see profiler.h). The partial-output kernel is a small flash-attention
// forward on mma.sync (sm_80 and later) of 64 sampled rows over a piece of the keys, for dense and
// every candidate at once, computed transposed: S^T = K Q^T and O^T += V^T P^T, so that each of the
// 8 warps owns 8 sampled rows with all their keys and all of D and needs no other warp's scores:
// - One block a multiprocessor, each with an equal share of the (slot, row tile, key step) steps:
//   a piece of one segment (slot and row tile), or the end of one and the start of the next.
// - K/V steps of 128 keys stream through a ring of shared-memory stages (cp.async, completion on
//   mbarriers), each warp issuing its share of a step ahead, each thread also its keep bits of the
//   step (built once per profile by profile_kept) into the 16-byte padding of one K or V row. A
//   warp waits for the others only to refill a stage, and at a piece's end (Q changes).
// - S^T is computed once per step and serves every output: its C fragments hold keys g, g + 8 (of
//   each 16) of rows 2t, 2t + 1, so a thread's softmax state covers two rows. P^T is packed and
//   transposed 8x8 by movmatrix into the B operand of O^T += V^T P^T; a V^T fragment serves every
//   output, and a row of ones as one more A fragment gives the rows' probability sums.
// - Softmax in base 2 against lazy references, one per row and output: an integer that moves only
//   when a step's maximum passes it by more than 8, so rescaling is rare and exact. A candidate's
//   row takes dense's reference wherever its maximum so far is known to lie at most kShareRange
//   below it (64 in bf16, 1 in f16); where the warp's rows all do, the candidate's P^T is dense's
//   B operand masked (two PRMT and two LOP3 a tile: no exponential, no transposition), and its
//   maxima are needed only when dense's reference moves. Elsewhere (keys far below the dense
//   maximum) the row keeps its own reference and the step computes the candidate's probabilities
//   itself, so nothing underflows. Between 16-key tiles the P V loop has no branch, so the compiler
//   can overlap them.
// - A candidate keeps a key when the key's block lies in the row's runs (BandRow): a bit per score,
//   read with the stage in the thread's fragment order (two shuffles give the transposed order).
//   16 keys that none of a warp's rows keeps skip their P V product.
#include "kernels/cuda/profiler.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda/dependent_launch.h"
#include "kernels/cuda/fragment_math.h"
#include "kernels/cuda/sm90_device.h"
#include "kernels/cuda/static_switch.h"

namespace vdit::cuda {
namespace {

constexpr int kCombineRows = 4;  // rows of a slot a combine block: a warp each
// Combine blocks a multiprocessor, and the output loads a lane has in flight, by head dim / 32. At
// d = 64 six blocks (80 registers) fit CogVideoX's 768 blocks at batch 1 in one wave (H100 A/B: 118
// against 121 us a profile); at d = 128 five with more loads each were 1-2 us faster at Wan batch 2.
constexpr int combine_blocks(int columns) { return columns <= 2 ? 6 : 5; }
constexpr int combine_loads(int columns) { return columns <= 2 ? 40 : 48; }
static_assert(kProfileMaxSampleRows == kCombineRows * 65535);  // the combine grid's y
constexpr int kWarps = kProfileRowTile / 8;  // 8 rows a warp
constexpr int kThreads = kProfileThreads;
static_assert(kThreads == 32 * kWarps);
constexpr float kReferenceSlack = 8.f;  // probabilities stay below 2^8: no overflow in f16

// Shared memory of a block, bytes: Q, then per stage K and V of `step_keys` keys (rows padded by 16
// bytes against bank conflicts; the padding of K row r holds thread r's keep bits, that of V row r
// thread step_keys + r's); mbarriers.
constexpr size_t profile_smem(int head_dim, int step_keys, int stages) {
  const size_t row = 2 * (head_dim + 8);
  return kProfileRowTile * row + stages * 2 * step_keys * row + stages * 16;
}

template <int D, int NC>
struct Shape {
  static constexpr int kOut = NC + 1;  // outputs: dense and each candidate
  // One block a multiprocessor (8 warps of up to 255 registers) and 128-key steps, at every d:
  // at d = 64, two blocks of 64-key steps (128 registers) ran slower, each step's fixed work
  // spread over half the keys.
  static constexpr int kM = 8;  // 16-key tiles per step
  static constexpr int kStepKeys = 16 * kM;
  static constexpr int kStages = profile_smem(D, kStepKeys, 4) <= 227 * 1024   ? 4
                                 : profile_smem(D, kStepKeys, 3) <= 227 * 1024 ? 3
                                                                               : 2;
  // One step issued ahead of the one computed, whatever the stages: with 4 stages (d = 64) two
  // ahead ran slower (refilling a stage then waits for every warp to be done with the step two
  // back rather than three).
  static constexpr int kAhead = 1;
  static constexpr int kDTiles = D / 16;  // 16-column tiles of O^T (and 16-wide k-steps of S^T)
  static constexpr int kStride = D + 8;   // smem row, elements
  static constexpr int kTile = kStepKeys * kStride;
  static constexpr int kVectors = D / 8;  // 16-byte vectors per row
  static constexpr int kRowLanes = kVectors <= 8 ? 8 : 16;  // threads per K/V row when copying
  static constexpr int kCopyRows = kThreads / kRowLanes;    // rows per copy pass
  // Shared memory offsets, bytes. mbarriers: full[stage], then empty[stage].
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + size_t{2} * kProfileRowTile * kStride;
  static constexpr size_t kV = kK + size_t{2} * kStages * kTile;
  static constexpr size_t kBars = kV + size_t{2} * kStages * kTile;
  static constexpr size_t kSmem = kBars + size_t{2} * kStages * sizeof(uint64_t);
  static_assert(kSmem == profile_smem(D, kStepKeys, kStages));
  static_assert(kSmem <= 227 * 1024, "shared memory over the sm_90 limit");
  static_assert(kVectors <= kRowLanes && kStepKeys % kCopyRows == 0 && kStepKeys == kProfileKeyTile);
  static_assert(kThreads == 2 * kStepKeys && (kStride - D) * 2 == 4 * kProfileKeptWords);  // keep bits in padding

  // Where thread `tid`'s keep bits lie in a stage: the padding of K row tid, or of V row tid - kStepKeys.
  static __device__ __forceinline__ uint32_t* kept_words(unsigned char* smem, int stage, int tid) {
    const size_t element = static_cast<size_t>(stage) * kTile + (tid % kStepKeys) * kStride + D;
    return reinterpret_cast<uint32_t*>(smem + (tid < kStepKeys ? kK : kV) + 2 * element);
  }
};

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const int bytes = valid ? 16 : 0;  // 0: fill with zeros
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem)), "l"(gmem), "r"(bytes)
               : "memory");
}
// The same for data read once (policy: l2_evict_first).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid, uint64_t policy) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(smem_address(smem)),
               "l"(gmem), "r"(bytes), "l"(policy)
               : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// One arrival on `bar` once every cp.async this thread has issued has landed (counted in the
// barrier's expected arrivals).
__device__ __forceinline__ void cp_async_arrive(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(smem_address(bar)) : "memory");
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(smem_address(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_address(bar)) : "memory");
}
// Waits for the completion of the barrier's phase of this parity.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, int parity) {
#if __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n.reg .pred done;\nwait_again:\nmbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_again;\n}\n" ::"r"(smem_address(bar)), "r"(parity) : "memory");
#else
  asm volatile(
      "{\n.reg .pred done;\nwait_again:\nmbarrier.test_wait.parity.shared.b64 done, [%0], %1;\n"
      "@!done bra wait_again;\n}\n" ::"r"(smem_address(bar)), "r"(parity) : "memory");
#endif
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_address(smem)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_address(smem)));
}

template <bool BF16>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (BF16) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Transposes an 8x8 matrix of 16-bit values held one row pair per thread (the mma fragment layout).
__device__ __forceinline__ uint32_t transpose8x8(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

// Bytes of a and b picked by the selector's nibbles (PTX prmt; nibble bit 3: the byte's sign, spread).
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(selector));
  return d;
}

// 2^e for an integer-valued e <= 127, or -inf; 0 below the normal range.
__device__ __forceinline__ float pow2(float e) {
  return e < -126.f ? 0.f : __int_as_float((static_cast<int>(e) + 127) << 23);
}

// Row maxima over the eight threads (g = 0..7) that share rows 2t, 2t + 1.
__device__ __forceinline__ void row_max(float (&x)[2]) {
#pragma unroll
  for (int rr = 0; rr < 2; ++rr)
#pragma unroll
    for (int offset = 4; offset < 32; offset *= 2) x[rr] = fmaxf(x[rr], __shfl_xor_sync(0xffffffffu, x[rr], offset));
}

// Moves a row's reference (log2 units) to ceil(step maximum) when the step's maximum (raw scores)
// passes it by more than kReferenceSlack, and rescales what was accumulated against the old one.
// acc: O^T fragments (and the sums'), elements rr and 2 + rr of row 2t + rr.
template <int kTiles>
__device__ __forceinline__ void raise_references(float (&ref)[2], float (&acc)[kTiles][4], const float (&step_max)[2],
                                                 float scale_log2) {
  float alpha[2] = {1.f, 1.f};
  bool moved = false;
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const float m = step_max[rr] * scale_log2;
    if (m > ref[rr] + kReferenceSlack) {
      const float next = ceilf(m);
      alpha[rr] = pow2(ref[rr] - next);
      ref[rr] = next;
      moved = true;
    }
  }
  if (!__any_sync(0xffffffffu, moved)) return;
#pragma unroll
  for (int n = 0; n < kTiles; ++n) {
    acc[n][0] *= alpha[0];
    acc[n][1] *= alpha[1];
    acc[n][2] *= alpha[0];
    acc[n][3] *= alpha[1];
  }
}

// Row maxima (raw scores) of the kept scores.
template <int kM>
__device__ __forceinline__ void kept_max(uint32_t kept, const float (&s)[kM][4], float (&max)[2]) {
  max[0] = max[1] = -INFINITY;
#pragma unroll
  for (int m = 0; m < kM; ++m)
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if ((kept >> (m + 8 * i)) & 1u) max[i % 2] = fmaxf(max[i % 2], s[m][i]);
  row_max(max);
}

// This thread's share of step `step` of a piece (its keys from key_begin) into `stage`: vector c of
// K/V rows r0 + kCopyRows * pass (`offset`: of row r0, vector c from the head's first key), and its
// own keep bits (`kept`: those of the piece's first step). The thread arrives on the stage's full
// barrier once they land.
template <int D, int NC>
__device__ __forceinline__ void issue_step(const ProfileParams& p, unsigned char* smem, const uint16_t* k,
                                           const uint16_t* v, const uint32_t* kept, int64_t offset,
                                           uint32_t key_begin, uint32_t key_end, int step, int stage, int warp,
                                           int lane) {
  using Sh = Shape<D, NC>;
  const int tid = warp * 32 + lane, r0 = tid / Sh::kRowLanes, c = tid % Sh::kRowLanes;
  uint16_t* k_tile = reinterpret_cast<uint16_t*>(smem + Sh::kK) + stage * Sh::kTile + r0 * Sh::kStride + c * 8;
  uint16_t* v_tile = reinterpret_cast<uint16_t*>(smem + Sh::kV) + stage * Sh::kTile + r0 * Sh::kStride + c * 8;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + Sh::kBars) + stage;
  const int64_t token_stride = int64_t{p.heads} * D;
  const uint32_t k0 = key_begin + static_cast<uint32_t>(Sh::kStepKeys) * step;
  const int64_t first = offset + int64_t{k0} * token_stride;
  constexpr int kPasses = Sh::kStepKeys / Sh::kCopyRows;
  const uint64_t once = l2_evict_first();
  if (c < Sh::kVectors) {
    if (k0 + Sh::kStepKeys <= key_end) {  // every key of the step in the piece: no test
      const uint16_t* k_at = k + first;
      const uint16_t* v_at = v + first;
#pragma unroll
      for (int pass = 0; pass < kPasses; ++pass) {
        cp_async16(k_tile + pass * Sh::kCopyRows * Sh::kStride, k_at, true, once);
        cp_async16(v_tile + pass * Sh::kCopyRows * Sh::kStride, v_at, true, once);
        k_at += Sh::kCopyRows * token_stride;
        v_at += Sh::kCopyRows * token_stride;
      }
    } else {
#pragma unroll
      for (int pass = 0; pass < kPasses; ++pass) {
        const bool valid = k0 + r0 + pass * Sh::kCopyRows < key_end;
        const int64_t at = valid ? first + pass * Sh::kCopyRows * token_stride : 0;
        cp_async16(k_tile + pass * Sh::kCopyRows * Sh::kStride, k + at, valid, once);
        cp_async16(v_tile + pass * Sh::kCopyRows * Sh::kStride, v + at, valid, once);
      }
    }
  }
  cp_async16(Sh::kept_words(smem, stage, tid), kept + int64_t{step} * kThreads * kProfileKeptWords, true);
  cp_async_arrive(full);
}

// The B fragment of P^T for 16 keys from a thread's four probabilities (keys g, g + 8 of rows
// 2t, 2t + 1): rows' pairs packed, then each 8x8 transposed.
template <bool BF16>
__device__ __forceinline__ void transpose_probabilities(uint32_t (&b)[2], const float (&p)[4]) {
  b[0] = transpose8x8(pack2<BF16>(p[0], p[1]));
  b[1] = transpose8x8(pack2<BF16>(p[2], p[3]));
}

// One warp: for its 8 rows, the partial outputs of dense and of every candidate over a piece's keys,
// written to the workspace as record `piece` of the rows. `done`: steps the block ran before the
// piece (the stages and their barriers' phases go on from there).
template <int D, bool BF16, int NC>
__device__ __forceinline__ void compute_partials(const ProfileParams& p, unsigned char* smem, const uint16_t* k,
                                                 const uint16_t* v, const uint32_t* kept_bits, uint32_t key_begin,
                                                 uint32_t key_end, int steps, int done, int slot, int row_tile,
                                                 int piece, int warp, int lane) {
  using Sh = Shape<D, NC>;
  constexpr int kOut = Sh::kOut, kM = Sh::kM, kDTiles = Sh::kDTiles;
  const uint16_t* s_q = reinterpret_cast<const uint16_t*>(smem + Sh::kQ);
  const uint16_t* s_k = reinterpret_cast<const uint16_t*>(smem + Sh::kK);
  const uint16_t* s_v = reinterpret_cast<const uint16_t*>(smem + Sh::kV);
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + Sh::kBars);

  const int g = lane / 4, t = lane % 4;
  const int mat = lane / 8, mat_row = lane % 8;  // ldmatrix: which 8x8 matrix this lane addresses
  const int row0 = warp * 8;                      // this thread's rows: row0 + 2t + rr
  const float scale = p.scale_log2;
  const uint32_t one = BF16 ? 0x3f803f80u : 0x3c003c00u;  // two 16-bit ones
  // A candidate shares dense's reference (its P^T is then dense's, masked) where its maximum lies at
  // most this far below that: dense's probabilities then resolve the candidate's as finely as its
  // own reference would (bf16: ex2 flushes below 2^-126 lose under 2^-62 of its maximum; f16: its
  // subnormals as with an own reference).
  constexpr float kShareRange = BF16 ? 64.f : 1.f;

  // Per output: O^T accumulators, element i: column 16n + g + 8(i / 2) of row 2t + i % 2; tile
  // kDTiles holds the rows' probability sums (elements 0, 1). References of rows 2t, 2t + 1.
  float acc[kOut][kDTiles + 1][4];
  float ref[kOut][2];
#pragma unroll
  for (int o = 0; o < kOut; ++o) {
#pragma unroll
    for (int n = 0; n <= kDTiles; ++n) acc[o][n][0] = acc[o][n][1] = acc[o][n][2] = acc[o][n][3] = 0.f;
    ref[o][0] = ref[o][1] = -INFINITY;
  }

  const int64_t copy_offset = int64_t{(warp * 32 + lane) / Sh::kRowLanes} * p.heads * D + (lane % Sh::kRowLanes) * 8;
  // Step i of the piece is the block's step done + i: stage (done + i) % kStages.
  for (int step = 0; step < min(steps, Sh::kAhead); ++step)
    issue_step<D, NC>(p, smem, k, v, kept_bits, copy_offset, key_begin, key_end, step, (done + step) % Sh::kStages,
                      warp, lane);
  for (int step = 0; step < steps; ++step) {
    const int next = step + Sh::kAhead, next_n = done + next, n = done + step;
    if (next < steps) {  // into the stage of block step next_n - kStages, once every warp is done with it
      if (next_n >= Sh::kStages) mbar_wait(bars + Sh::kStages + next_n % Sh::kStages, (next_n / Sh::kStages - 1) & 1);
      issue_step<D, NC>(p, smem, k, v, kept_bits, copy_offset, key_begin, key_end, next, next_n % Sh::kStages, warp,
                        lane);
    }
    const int stage = n % Sh::kStages;
    mbar_wait(bars + stage, (n / Sh::kStages) & 1);
    const uint16_t* k_tile = s_k + stage * Sh::kTile;
    const uint16_t* v_tile = s_v + stage * Sh::kTile;

    // S^T: s[m][i] is the score of key 16m + g + 8(i / 2) for row 2t + i % 2.
    float s[kM][4];
#pragma unroll
    for (int m = 0; m < kM; ++m) s[m][0] = s[m][1] = s[m][2] = s[m][3] = 0.f;
#pragma unroll
    for (int kp = 0; kp < kDTiles / 2; ++kp) {
      uint32_t qf[4];  // Q^T as the B operand, head dims 32kp .. 32kp + 31 (read each step: registers)
      ldmatrix_x4(qf, s_q + (row0 + mat_row) * Sh::kStride + 32 * kp + 8 * mat);
#pragma unroll
      for (int half = 0; half < 2; ++half)
#pragma unroll
        for (int m = 0; m < kM; ++m) {
          uint32_t kf[4];
          ldmatrix_x4(kf, k_tile + (16 * m + 8 * (mat % 2) + mat_row) * Sh::kStride + 32 * kp + 16 * half + 8 * (mat / 2));
          mma16816<BF16>(s[m], kf, qf[2 * half], qf[2 * half + 1]);
        }
    }
    const uint32_t k0 = key_begin + static_cast<uint32_t>(Sh::kStepKeys) * step;
    const uint32_t valid = min(static_cast<uint32_t>(Sh::kStepKeys), key_end - k0);
    if (valid < Sh::kStepKeys) {  // keys past the layout: kept by no output
#pragma unroll
      for (int m = 0; m < kM; ++m)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (16 * m + g + 8 * (i / 2) >= static_cast<int>(valid)) s[m][i] = -INFINITY;
    }

    // Dense: the step's row maxima and the references.
    float step_max[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float x[kM];
#pragma unroll
      for (int m = 0; m < kM; ++m) x[m] = fmaxf(s[m][rr], s[m][2 + rr]);
#pragma unroll
      for (int width = kM / 2; width > 0; width /= 2)
#pragma unroll
        for (int m = 0; m < width; ++m) x[m] = fmaxf(x[m], x[m + width]);
      step_max[rr] = x[0];
    }
    row_max(step_max);
    const float dense_before[2] = {ref[0][0], ref[0][1]};
    raise_references<kDTiles + 1>(ref[0], acc[0], step_max, scale);

    // Candidates: which scores each keeps (bit m + 8i: s[m][i]), their row maxima, references, and
    // which 16-key tiles any of the warp's rows keeps.
    uint32_t kept[NC], active[NC];
    {
      const uint4 words = *reinterpret_cast<const uint4*>(Sh::kept_words(smem, stage, warp * 32 + lane));
      const uint32_t all[4] = {words.x, words.y, words.z, words.w};
#pragma unroll
      for (int c = 0; c < NC; ++c) kept[c] = all[c];
    }
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      // Rows that keep a key need the candidate's maxima unless they share dense's reference and
      // that did not move (a row that keeps none keeps its reference).
      auto needs = [&](int rr, bool keeps) {
        const float own = ref[c + 1][rr];
        return keeps && !(own == ref[0][rr] && own == dense_before[rr]);
      };
      const bool update =
          __any_sync(0xffffffffu, needs(0, kept[c] & 0x00ff00ffu) || needs(1, kept[c] & 0xff00ff00u));
      if (update) {
        // A row's own reference rises as before; it then joins dense's where the candidate's
        // maximum so far is known to lie at most kShareRange below that.
        float max[2];
        kept_max<kM>(kept[c], s, max);
        float alpha[2] = {1.f, 1.f};
        bool moved = false;
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          const float own = ref[c + 1][rr], dense = ref[0][rr], m = max[rr] * scale;
          float next = m > own + kReferenceSlack ? ceilf(m) : own;
          if (next != -INFINITY && (next >= dense || m >= dense - kShareRange)) next = dense;
          if (next != own) {
            alpha[rr] = pow2(own - next);
            ref[c + 1][rr] = next;
            moved = true;
          }
        }
        if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
          for (int n = 0; n <= kDTiles; ++n) {
            acc[c + 1][n][0] *= alpha[0];
            acc[c + 1][n][1] *= alpha[1];
            acc[c + 1][n][2] *= alpha[0];
            acc[c + 1][n][3] *= alpha[1];
          }
        }
      }
      const uint32_t any = __reduce_or_sync(0xffffffffu, kept[c]);
      active[c] = any | any >> 8 | any >> 16 | any >> 24;
    }

    // Where every row of the warp shares dense's reference under every candidate (or keeps no key
    // of the step), a candidate's P^T is dense's, masked. Per candidate, after the transposition of
    // P^T (thread: row g, keys 2t, 2t + 1 and 8 + 2t, 9 + 2t of each tile): the row's keep bits, bit
    // m of byte 2e + j for key 16m + 8e + 2t + j.
    bool shared = true;
    uint32_t kept_t[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
#pragma unroll
      for (int rr = 0; rr < 2; ++rr)
        shared = shared && (ref[c + 1][rr] == ref[0][rr] || (kept[c] & (0x00ff00ffu << (8 * rr))) == 0);
      const uint32_t lo = __shfl_sync(0xffffffffu, kept[c], 8 * t + g / 2);
      const uint32_t hi = __shfl_sync(0xffffffffu, kept[c], 8 * t + 4 + g / 2);
      kept_t[c] = prmt(lo, hi, 0x6240u + (g & 1) * 0x1111u);
    }
    shared = __all_sync(0xffffffffu, shared);
    // Elsewhere each candidate's own references; a row still without one keeps only keys past the
    // chunk (scores -inf), so any finite reference gives them 0 (and no -inf - -inf).
    float own[NC][2];
#pragma unroll
    for (int c = 0; c < NC; ++c)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) own[c][rr] = ref[c + 1][rr] == -INFINITY ? 0.f : ref[c + 1][rr];

    // P^T and O^T += V^T P^T, 16 keys at a time, with no branch between the tiles: dense's
    // probabilities against its reference; a candidate's from dense's where shared, else against its
    // own reference (keys it drops: ex2(-inf) = 0); each V^T fragment serves every output.
    auto p_v = [&]<bool kShared>() {
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        uint32_t b[kOut][2];
        float pr[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) pr[i] = exp2_approx(fmaf(s[m][i], scale, -ref[0][i % 2]));
        transpose_probabilities<BF16>(b[0], pr);
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          if constexpr (kShared) {
            // Bit m of each byte to its sign bit, spread over the half of its key.
            const uint32_t bits = kept_t[c] << (7 - m);
            b[c + 1][0] = b[0][0] & prmt(bits, 0u, 0x9988u);
            b[c + 1][1] = b[0][1] & prmt(bits, 0u, 0xbbaau);
          } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const bool keep = (kept[c] >> (m + 8 * i)) & 1u;
              pr[i] = exp2_approx(keep ? fmaf(s[m][i], scale, -own[c][i % 2]) : -INFINITY);
            }
            transpose_probabilities<BF16>(b[c + 1], pr);
          }
        }
#pragma unroll
        for (int n = 0; n <= kDTiles; ++n) {
          uint32_t vf[4] = {one, one, one, one};  // tile kDTiles: ones, for the sums
          if (n < kDTiles)
            ldmatrix_x4_trans(vf, v_tile + (16 * m + 8 * (mat / 2) + mat_row) * Sh::kStride + 16 * n + 8 * (mat % 2));
          mma16816<BF16>(acc[0][n], vf, b[0][0], b[0][1]);
#pragma unroll
          for (int c = 0; c < NC; ++c)
            if ((active[c] >> m) & 1u) mma16816<BF16>(acc[c + 1][n], vf, b[c + 1][0], b[c + 1][1]);
        }
      }
    };
    if (shared) {
      p_v.template operator()<true>();
    } else {
      p_v.template operator()<false>();
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(bars + Sh::kStages + stage);  // this warp is done with the stage
  }

  // Partial results of rows 2t, 2t + 1: references and sums (from the g = 0 threads), and columns
  // 16n + g, +8.
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int row = row_tile * kProfileRowTile + row0 + 2 * t + rr;
    if (row >= p.sample_rows) continue;
#pragma unroll
    for (int o = 0; o < kOut; ++o) {
      const int64_t record = ((int64_t{slot} * p.sample_rows + row) * p.pieces + piece) * kOut + o;
      if (g == 0) p.partial_stats[record] = make_float2(ref[o][rr], acc[o][kDTiles][rr]);
      float* out = p.partial_out + record * D + g;
#pragma unroll
      for (int n = 0; n < kDTiles; ++n) {
        out[16 * n] = acc[o][n][rr];
        out[16 * n + 8] = acc[o][n][2 + rr];
      }
    }
  }
}

// The token of sampled row r of a row tile (past the sample: the last row again, not stored).
__device__ __forceinline__ int64_t sampled_token(const ProfileParams& p, int b, int row_tile, int r) {
  const int i = row_tile * kProfileRowTile + r;
  return p.rows[int64_t{b} * p.sample_rows + (i < p.sample_rows ? i : p.sample_rows - 1)];
}

// Partial outputs of the sampled rows, for dense and NC candidates, over the block's range of
// steps: a piece for each segment (slot and row tile) it crosses.
template <int D, bool BF16, int NC>
__global__ void __launch_bounds__(kThreads, 1) profile_partials(ProfileParams p) {
  using Sh = Shape<D, NC>;
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* s_q = reinterpret_cast<uint16_t*>(smem + Sh::kQ);
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + Sh::kBars);

  const MaskGeometry& geo = p.geometry;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int row_tiles = profile_row_tiles(p.sample_rows);
  const int64_t token_stride = int64_t{p.heads} * D;
  allow_dependents();  // (the combine: it waits for this kernel's end)
  if (tid == 0) {
    for (int s = 0; s < Sh::kStages; ++s) {
      mbar_init(bars + s, kThreads);              // full: each thread's copies landed
      mbar_init(bars + Sh::kStages + s, kWarps);  // empty: one arrival per warp
    }
  }
  dependency_wait();  // Q, K, V from the kernels before; the records the previous call's combine reads
  int done = 0;  // steps run by the block so far
  for (int64_t at = p.split.begin(blockIdx.x), end = p.split.begin(blockIdx.x + 1); at < end;) {
    const int64_t segment = at / p.key_steps, first = at - segment * p.key_steps;
    const int steps = static_cast<int>(min(p.key_steps, first + end - at) - first);
    const int slot = static_cast<int>(segment / row_tiles), row_tile = static_cast<int>(segment % row_tiles);
    const int b = slot / p.heads, h = slot % p.heads;
    const int64_t head_base = int64_t{b} * geo.tokens * token_stride + int64_t{h} * D;
    // The sampled Q rows, once every warp is done with the last piece's (and so with its stages).
    __syncthreads();
    const uint16_t* q = static_cast<const uint16_t*>(p.q) + head_base;
    for (int i = tid; i < kProfileRowTile * Sh::kVectors; i += kThreads) {
      const int r = i / Sh::kVectors, c = i % Sh::kVectors;
      cp_async16(s_q + r * Sh::kStride + c * 8, q + sampled_token(p, b, row_tile, r) * token_stride + c * 8, true);
    }
    cp_async_wait_all();
    __syncthreads();

    const int64_t key_begin = first * Sh::kStepKeys;
    const int64_t key_end = min(geo.tokens, (first + steps) * Sh::kStepKeys);
    const int64_t kept_step = (int64_t{b} * row_tiles + row_tile) * p.key_steps + first;
    const uint32_t* kept = p.kept + (kept_step * kThreads + tid) * kProfileKeptWords;
    const int piece = static_cast<int>(blockIdx.x) - p.split.block_of(segment * p.key_steps);
    compute_partials<D, BF16, NC>(p, smem, static_cast<const uint16_t*>(p.k) + head_base,
                                  static_cast<const uint16_t*>(p.v) + head_base, kept, static_cast<uint32_t>(key_begin),
                                  static_cast<uint32_t>(key_end), steps, done, slot, row_tile, piece, warp, lane);
    done += steps;
    at += steps;
  }
}

// The key blocks a candidate keeps for a sampled row (its CSR row), and whether it keeps a key.
__device__ __forceinline__ BandRow candidate_row(const MaskGeometry& geo, const MaskPattern& pattern, int64_t token) {
  return band_mask_row(geo, pattern, (pattern.permuted ? token_major_position(geo, token) : token) / geo.block_q);
}
__device__ __forceinline__ bool candidate_keeps(const MaskGeometry& geo, const MaskPattern& pattern,
                                                const BandRow& row, int64_t key) {
  return key < geo.tokens && row.keeps((pattern.permuted ? token_major_position(geo, key) : key) / geo.block_k);
}

// The keep bits of one (key step, row tile, batch item), a thread's words each, in the order the
// partial kernel's threads hold their scores:
// - mma_sync (256 threads): word c has bit m + 8i for candidate c and the score of key 16m + g +
//   8(i / 2) and row 2t + i % 2 of the warp's rows (compute_partials' order; g = lane / 4, t = lane % 4).
// - wgmma (128 threads): words 2c, 2c + 1 for candidate c; the thread's register q (0..31) holds
//   scores e = 0, 1 of row 16 warp + g + 8 (q % 2) and key 8 (q / 2) + 2t + e, whose bit is 16 ((q %
//   16) / 8) + 8e + 7 - q % 8 of word q / 16: shifted left by q % 8, the sign bits of bytes 0, 1
//   (or 2, 3) mask the register's two halves (the wgmma kernel's register_mask).
template <int NC, ProfileKernel kKernel>
__global__ void __launch_bounds__(kThreads) profile_kept(ProfileParams p, uint32_t* out) {
  constexpr int kKeptThreads = profile_kept_threads(kKernel);
  const MaskGeometry& geo = p.geometry;
  const int step = blockIdx.x, row_tile = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int64_t k0 = int64_t{step} * kProfileKeyTile;
  uint32_t words[kProfileKeptWords] = {};
  for (int c = 0; c < NC; ++c) {
    const MaskPattern pattern = p.patterns[c];
    auto band_row = [&](int r) { return candidate_row(geo, pattern, sampled_token(p, b, row_tile, r)); };
    if constexpr (kKernel == ProfileKernel::mma_sync) {
      const int row0 = tid / 32 * 8;
      const BandRow rows[2] = {band_row(row0 + 2 * t), band_row(row0 + 2 * t + 1)};
      for (int m = 0; m < 8; ++m)
        for (int i = 0; i < 4; ++i)
          if (candidate_keeps(geo, pattern, rows[i % 2], k0 + 16 * m + g + 8 * (i / 2))) words[c] |= 1u << (m + 8 * i);
    } else {
      const int row0 = tid / 32 * 16 + g;
      const BandRow rows[2] = {band_row(row0), band_row(row0 + 8)};
      for (int q = 0; q < 32; ++q)
        for (int e = 0; e < 2; ++e)
          if (candidate_keeps(geo, pattern, rows[q % 2], k0 + 8 * (q / 2) + 2 * t + e))
            words[2 * c + q / 16] |= 1u << (16 * ((q % 16) / 8) + 8 * e + 7 - q % 8);
    }
  }
  uint32_t* to = out + ((int64_t{b} * gridDim.y + row_tile) * p.key_steps + step) * kKeptThreads * kProfileKeptWords +
                 tid * kProfileKeptWords;
  for (int w = 0; w < kProfileKeptWords; ++w) to[w] = words[w];
}

// Sum and maximum over a warp; every lane gets the result.
template <class T>
__device__ __forceinline__ T warp_sum(T x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

__device__ __forceinline__ float load_float(const uint16_t* x, bool bf16) {
  return bf16 ? __bfloat162float(__ushort_as_bfloat16(*x)) : __half2float(__ushort_as_half(*x));
}

// Candidate c's output of sampled row `row` of `slot` (columns as above), computed directly in f32
// over every key it keeps, by one warp: the rows the wgmma kernel flags (see profiler_sm90.cu).
// Slow (the warp walks every key twice) and rare: only where a candidate's kept scores lie some 70
// (natural log units) below the row's dense maximum. q_row and weights: the warp's shared memory.
// A combine warp's columns: lane + 32 j for j < kColumns = D / 32.
template <int kColumns>
__device__ void exact_candidate_output(const ProfileParams& p, int slot, int row, int c, float (&out)[kColumns],
                                       float* q_row, float* weights) {
  const MaskGeometry& geo = p.geometry;
  const int lane = threadIdx.x % 32, b = slot / p.heads, h = slot % p.heads, D = p.head_dim;
  const int64_t stride = int64_t{p.heads} * D, head = int64_t{b} * geo.tokens * stride + int64_t{h} * D;
  const uint16_t* k = static_cast<const uint16_t*>(p.k) + head;
  const uint16_t* v = static_cast<const uint16_t*>(p.v) + head;
  const int64_t token = p.rows[int64_t{b} * p.sample_rows + row];
  const MaskPattern pattern = p.patterns[c];
  const BandRow band = candidate_row(geo, pattern, token);
  const uint16_t* q = static_cast<const uint16_t*>(p.q) + head + token * stride;
  __syncwarp();  // a call before, for the row's other candidate, is done reading q_row
  for (int d = lane; d < D; d += 32) q_row[d] = load_float(q + d, p.bf16);
  __syncwarp();
  auto score = [&](int64_t key) {  // log2 units
    float dot = 0.f;
    for (int d = 0; d < D; ++d) dot = fmaf(q_row[d], load_float(k + key * stride + d, p.bf16), dot);
    return dot * p.scale_log2;
  };
  float top = -INFINITY;
  for (int64_t key = lane; key < geo.tokens; key += 32)
    if (candidate_keeps(geo, pattern, band, key)) top = fmaxf(top, score(key));
  top = warp_max(top);
  float value[kColumns] = {}, sum = 0.f;
  for (int64_t k0 = 0; k0 < geo.tokens; k0 += 32) {
    const int64_t key = k0 + lane;
    const float w = key < geo.tokens && candidate_keeps(geo, pattern, band, key) ? exp2f(score(key) - top) : 0.f;
    sum += w;
    __syncwarp();
    weights[lane] = w;
    __syncwarp();
    for (int i = 0; i < 32 && k0 + i < geo.tokens; ++i) {
      if (weights[i] == 0.f) continue;
      const uint16_t* v_row = v + (k0 + i) * stride + lane;
#pragma unroll
      for (int j = 0; j < kColumns; ++j)
        value[j] = fmaf(weights[i], load_float(v_row + 32 * j, p.bf16), value[j]);
    }
  }
  const double total = warp_sum(double{sum});
#pragma unroll
  for (int j = 0; j < kColumns; ++j) out[j] = total > 0.0 ? static_cast<float>(value[j] / total) : 0.f;
}

// One warp: merges the pieces of (slot, row)'s every output (or computes a flagged candidate's
// directly), then writes its squared errors against dense. All outputs' piece stats come in one load
// per kPieces pieces (lane i: piece i / kOut, output i % kOut), and their outputs up to eight pieces a
// round (combine_loads a lane).
template <int kOut, int kColumns>
__device__ void combine_row(const ProfileParams& p, int slot, int row, float* q_row, float* weights) {
  constexpr int kPieces = 32 / kOut;  // pieces a stats load covers
  // Pieces whose outputs are loaded before they are summed.
  constexpr int kRound = std::clamp(combine_loads(kColumns) / (kOut * kColumns), 1, 8);
  const int lane = threadIdx.x % 32, mine = lane % kOut;  // the output of this lane's stats
  const int64_t index = int64_t{slot} * p.sample_rows + row;
  const int64_t first = index * p.pieces * kOut;
  const int64_t segment = int64_t{slot} * profile_row_tiles(p.sample_rows) + row / kProfileRowTile;
  const int pieces = p.split.pieces(segment, p.key_steps);
  // This lane's (piece, output) stats of the chunk from piece c0; a sum of 0 past the last piece.
  auto stats_at = [&](int c0) {
    return lane < kPieces * kOut && c0 + lane / kOut < pieces ? p.partial_stats[first + int64_t{c0} * kOut + lane]
                                                              : make_float2(0.f, 0.f);
  };
  const float2 head = stats_at(0);  // the first chunk's, kept for the weights: mostly the only one
  // The largest piece's log2 mass per output: a candidate's record may carry dense's reference, far
  // above its own scores, next to a piece where it keeps nothing (sum 0).
  float m = -INFINITY;  // of output `mine`, over this lane's pieces
  bool flagged = false;
#pragma unroll 1
  for (int c0 = 0; c0 < pieces; c0 += kPieces) {
    const float2 stats = c0 == 0 ? head : stats_at(c0);
    if (stats.y > 0.f) m = fmaxf(m, stats.x + log2f(stats.y));
    flagged |= stats.y < 0.f;
  }
  float top[kOut];
  bool exact[kOut];
#pragma unroll
  for (int o = 0; o < kOut; ++o) {
    top[o] = warp_max(mine == o ? m : -INFINITY);
    exact[o] = __any_sync(0xffffffffu, mine == o && flagged);
  }
  float mine_top = top[0], mass = 0.f, value[kOut][kColumns] = {};
#pragma unroll
  for (int o = 1; o < kOut; ++o) mine_top = mine == o ? top[o] : mine_top;
#pragma unroll 1
  for (int c0 = 0; c0 < pieces; c0 += kPieces) {
    const float2 stats = c0 == 0 ? head : stats_at(c0);
    const float w = stats.y > 0.f ? exp2f(stats.x - mine_top) : 0.f;  // of this lane's (piece, output)
    mass += w * stats.y;
    const int n = min(kPieces, pieces - c0);
    const float* part = p.partial_out + (first + int64_t{c0} * kOut) * p.head_dim + lane;
#pragma unroll 1
    for (int i0 = 0; i0 < n; i0 += kRound) {
      float x[kRound][kOut][kColumns];
#pragma unroll
      for (int i = 0; i < kRound; ++i)
#pragma unroll
        for (int o = 0; o < kOut; ++o)
#pragma unroll
          for (int j = 0; j < kColumns; ++j) {
            x[i][o][j] = i0 + i < n ? part[(int64_t{i0 + i} * kOut + o) * p.head_dim + 32 * j] : 0.f;
          }
#pragma unroll
      for (int i = 0; i < kRound; ++i)
#pragma unroll
        for (int o = 0; o < kOut; ++o) {
          // Past n, x is 0 and wi is another lane's weight (0, or past kPieces another piece's, of any
          // output), so the product is 0: every weight is finite, at most 1 / sum <= 2^100 (the
          // wgmma kernel flags smaller sums; the mma.sync kernel's lie within kShareRange + slack).
          const float wi = __shfl_sync(0xffffffffu, w, ((i0 + i) * kOut + o) % 32);
#pragma unroll
          for (int j = 0; j < kColumns; ++j) value[o][j] = fmaf(wi, x[i][o][j], value[o][j]);
        }
    }
  }
  float out[kOut][kColumns];
#pragma unroll
  for (int o = 0; o < kOut; ++o) {
    const float sum = warp_sum(mine == o ? mass : 0.f);
#pragma unroll
    for (int j = 0; j < kColumns; ++j) out[o][j] = sum > 0.f ? value[o][j] / sum : 0.f;
  }
  // Dense is never flagged (its reference is its own maximum).
#pragma unroll
  for (int o = 1; o < kOut; ++o)
    if (exact[o]) exact_candidate_output(p, slot, row, o - 1, out[o], q_row, weights);
  double* errors = p.row_errors + index * kOut;
  double square = 0.0;
#pragma unroll
  for (int j = 0; j < kColumns; ++j) square += double{out[0][j]} * out[0][j];
  square = warp_sum(square);
  if (lane == 0) errors[0] = square;
#pragma unroll
  for (int o = 1; o < kOut; ++o) {
    double error = 0.0;
#pragma unroll
    for (int j = 0; j < kColumns; ++j) {
      const double e = double{out[o][j]} - out[0][j];
      error += e * e;
    }
    error = warp_sum(error);
    if (lane == 0) errors[o] = error;
  }
}

// Slot `slot`'s decision, by one warp once its row errors are all written: MSE and relative error of
// each candidate, the choice (ties to the earlier candidate; dense fallback) and the permute flag.
// The errors come from other blocks' writes: read through L2.
template <int kOut>
__device__ void decide_slot(const ProfileParams& p, int slot) {
  const int lane = threadIdx.x % 32;
  double sums[kOut];
#pragma unroll
  for (int o = 0; o < kOut; ++o) {
    double x = 0.0;
#pragma unroll 1
    for (int r = lane; r < p.sample_rows; r += 32)
      x += __ldcg(p.row_errors + (int64_t{slot} * p.sample_rows + r) * kOut + o);
    sums[o] = warp_sum(x);
  }
  if (lane != 0) return;
  const double elements = static_cast<double>(p.sample_rows) * p.head_dim;
  const double dense_square = sums[0];
  int best = 0;
  double best_error = sums[1];
#pragma unroll
  for (int c = 0; c < kOut - 1; ++c) {
    const double e = sums[c + 1];
    p.mse[int64_t{slot} * p.candidates + c] = static_cast<float>(e / elements);
    p.relative_error[int64_t{slot} * p.candidates + c] =
        static_cast<float>(dense_square > 0.0 ? e / dense_square : (e > 0.0 ? INFINITY : 0.0));
    if (e < best_error) {
      best = c;
      best_error = e;
    }
  }
  const double best_relative = dense_square > 0.0 ? best_error / dense_square : (best_error > 0.0 ? INFINITY : 0.0);
  const int choice = p.dense_fallback > 0.0 && best_relative > p.dense_fallback ? -1 : best;
  p.choice[slot] = choice;
  p.permute[slot] = choice >= 0 && p.patterns[choice].permuted ? 1 : 0;
}

// Grid (slot, group of kCombineRows rows): a warp per row (combine_row); the slot's last block to
// finish (its ticket, handed back to 0 for the next call) then decides the slot (decide_slot).
template <int kOut, int kColumns>
__global__ void __launch_bounds__(32 * kCombineRows, combine_blocks(kColumns)) combine_rows(ProfileParams p) {
  __shared__ float q_rows[kCombineRows][128], weights[kCombineRows][32];
  __shared__ bool last;
  const int warp = threadIdx.x / 32, slot = blockIdx.x, row = blockIdx.y * kCombineRows + warp;
  dependency_wait();  // the partial kernel's records
  if (row < p.sample_rows) combine_row<kOut, kColumns>(p, slot, row, q_rows[warp], weights[warp]);
  __threadfence();  // this block's row errors, before its ticket
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicInc(p.tickets + slot, gridDim.y - 1) == gridDim.y - 1;
    if (last) __threadfence();  // acquire, by the thread that took the ticket: the other blocks' errors
  }
  __syncthreads();
  if (last && warp == 0) decide_slot<kOut>(p, slot);
}

template <int D, bool BF16, int NC>
cudaError_t launch_partials(const ProfileParams& p, cudaStream_t stream) {
  using Sh = Shape<D, NC>;
  auto kernel = profile_partials<D, BF16, NC>;
  cudaError_t error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(Sh::kSmem));
  if (error == cudaSuccess) {
    error = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                 cudaSharedmemCarveoutMaxShared);
  }
  if (error != cudaSuccess) return error;
  return launch_dependent(kernel, p.split.blocks, kThreads, Sh::kSmem, stream, p);
}

template <int D, bool BF16>
cudaError_t launch_partials_for(const ProfileParams& p, cudaStream_t stream) {
  switch (p.candidates) {
    case 1: return launch_partials<D, BF16, 1>(p, stream);
    case 2: return launch_partials<D, BF16, 2>(p, stream);
    case 3: return launch_partials<D, BF16, 3>(p, stream);
  }
  return cudaErrorInvalidValue;
}

template <bool BF16>
cudaError_t launch_partials_for(const ProfileParams& p, cudaStream_t stream) {
  switch (p.head_dim) {
    case 64: return launch_partials_for<64, BF16>(p, stream);
    case 96: return launch_partials_for<96, BF16>(p, stream);
    case 128: return launch_partials_for<128, BF16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

ProfileKernel profile_kernel(int head_dim, bool bf16, int candidates) {
  const bool wgmma = bf16 && head_dim == 64 && candidates >= 1 && candidates <= kProfileWgmmaCandidates;
  return wgmma && current_device_is_sm90() ? ProfileKernel::wgmma : ProfileKernel::mma_sync;
}

int profile_blocks(int64_t total, ProfileKernel kernel) {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0) {
    sms = 132;
  }
  const int64_t per_sm = kernel == ProfileKernel::wgmma ? 2 : 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(per_sm * sms, total)));
}

int profile_pieces(const ProfileSplit& split, int64_t key_steps) {
  int most = 1;
  for (int64_t s = 0; s * key_steps < split.total; ++s) most = std::max(most, split.pieces(s, key_steps));
  return most;
}

cudaError_t launch_profile_kept(const ProfileParams& p, uint32_t* kept, cudaStream_t stream) {
  if (p.candidates < 1 || p.candidates > kProfileMaxCandidates || p.sample_rows < 1 || p.batch < 1 ||
      p.key_steps != profile_key_steps(p.geometry.tokens) || p.key_steps < 1) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<unsigned>(p.key_steps), profile_row_tiles(p.sample_rows), p.batch);
  if (p.kernel == ProfileKernel::wgmma) {
    constexpr int kKeptThreads = profile_kept_threads(ProfileKernel::wgmma);
    switch (p.candidates) {
      case 1: profile_kept<1, ProfileKernel::wgmma><<<grid, kKeptThreads, 0, stream>>>(p, kept); break;
      case 2: profile_kept<2, ProfileKernel::wgmma><<<grid, kKeptThreads, 0, stream>>>(p, kept); break;
      default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
  }
  switch (p.candidates) {
    case 1: profile_kept<1, ProfileKernel::mma_sync><<<grid, kThreads, 0, stream>>>(p, kept); break;
    case 2: profile_kept<2, ProfileKernel::mma_sync><<<grid, kThreads, 0, stream>>>(p, kept); break;
    case 3: profile_kept<3, ProfileKernel::mma_sync><<<grid, kThreads, 0, stream>>>(p, kept); break;
  }
  return cudaGetLastError();
}

cudaError_t launch_profile_heads(const ProfileParams& p, cudaStream_t stream) {
  const int64_t row_tiles = profile_row_tiles(p.sample_rows);
  if (p.candidates < 1 || p.candidates > kProfileMaxCandidates || p.sample_rows < 1 || p.kept == nullptr ||
      p.key_steps != profile_key_steps(p.geometry.tokens) ||
      p.split.total != int64_t{p.batch} * p.heads * row_tiles * p.key_steps || p.split.blocks < 1 ||
      p.split.blocks > p.split.total || p.pieces < profile_pieces(p.split, p.key_steps) ||
      p.sample_rows > kProfileMaxSampleRows || p.tickets == nullptr) {
    return cudaErrorInvalidValue;
  }
  cudaError_t error = p.kernel == ProfileKernel::wgmma ? launch_profile_partials_sm90(p, stream)
                      : p.bf16                         ? launch_partials_for<true>(p, stream)
                                                       : launch_partials_for<false>(p, stream);
  if (error != cudaSuccess) return error;
  const dim3 grid(static_cast<unsigned>(p.batch * p.heads),
                  static_cast<unsigned>((p.sample_rows + kCombineRows - 1) / kCombineRows));
  VDIT_HEADDIM_SWITCH(p.head_dim, kHeadDim, [&] {  // the partial launch refused any other head dim
    constexpr int kColumns = kHeadDim / 32;
    switch (p.candidates) {
      case 1: error = launch_dependent(combine_rows<2, kColumns>, grid, 32 * kCombineRows, 0, stream, p); break;
      case 2: error = launch_dependent(combine_rows<3, kColumns>, grid, 32 * kCombineRows, 0, stream, p); break;
      case 3: error = launch_dependent(combine_rows<4, kColumns>, grid, 32 * kCombineRows, 0, stream, p); break;
    }
  });
  return error != cudaSuccess ? error : cudaGetLastError();
}

}  // namespace vdit::cuda
