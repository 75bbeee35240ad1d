// The GPU profiler's kernels (see profiler.h). The partial-output kernel is a small flash-attention
// forward on mma.sync (sm_80 and later): 64 sampled rows per block (32 with three candidates), one
// key chunk, K/V tiles of 64 keys through a cp.async pipeline. Each warp owns 16 rows and one
// output (dense or a candidate) over all of D, with that output's own online softmax, so no
// elementwise work is repeated across warps; a candidate keeps a key when the key's block, in the
// candidate's order, lies in the row's CSR row (three runs of blocks, BandRow). A warp skips a tile
// in which its rows keep no key (sampled rows are sorted, so a spatial warp skips most tiles).
#include "kernels/cuda/profiler.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>

#include "kernels/cuda/fragment_math.h"

namespace vdit::cuda {
namespace {

constexpr int kStages = 3;
constexpr int kCombineThreads = 128;

template <int D, int NC>
struct Shape {
  static constexpr int kOut = NC + 1;                       // outputs: dense and each candidate
  static constexpr int kGroups = profile_row_tile(NC) / 16;  // 16-row groups per block
  static constexpr int kRows = 16 * kGroups;
  static constexpr int kWarps = kGroups * kOut;             // one per (group, output)
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kStride = D + 8;                     // smem row, elements: 16 bytes of padding
  static constexpr int kTile = 64 * kStride;                // elements of one 64-key tile
  static constexpr int kVectors = D / 8;                    // 16-byte vectors per row
  static constexpr size_t kSmem = (kRows * kStride + 2 * kStages * kTile) * 2 +
                                  kStages * 2 * 64 * sizeof(int32_t) + kRows * NC * sizeof(int4);
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;  // 0: fill with zeros
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
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

// Whether a row keeps a key block: runs (prefix_last, first, last, suffix_first) as in BandRow;
// blocks of keys past the chunk are INT_MAX and kept by none.
__device__ __forceinline__ bool keeps(const int4& runs, int32_t block, int32_t k_blocks) {
  return block <= runs.x || static_cast<uint32_t>(block - runs.y) <= static_cast<uint32_t>(runs.z - runs.y) ||
         (block >= runs.w && block < k_blocks);
}

// Partial outputs of the sampled rows of one row tile and slot over one key chunk, for dense and
// NC candidates.
template <int D, bool BF16, int NC>
__global__ void __launch_bounds__(Shape<D, NC>::kThreads, 1) profile_partials(ProfileParams p) {
  using Sh = Shape<D, NC>;
  constexpr int kSteps = D / 16;  // k-steps of Q K^T
  constexpr int kTiles = D / 8;   // 8-column output tiles
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* s_q = reinterpret_cast<uint16_t*>(smem);
  uint16_t* s_k = s_q + Sh::kRows * Sh::kStride;
  uint16_t* s_v = s_k + kStages * Sh::kTile;
  int32_t* s_blocks = reinterpret_cast<int32_t*>(s_v + kStages * Sh::kTile);  // [stage][order][64]
  int4* s_runs = reinterpret_cast<int4*>(s_blocks + kStages * 2 * 64);          // [row][candidate]

  const MaskGeometry& geo = p.geometry;
  const int chunk = blockIdx.x, slot = blockIdx.y, row_tile = blockIdx.z;
  const int b = slot / p.heads, h = slot % p.heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int output = warp % Sh::kOut, group = warp / Sh::kOut, g = lane / 4, t = lane % 4;
  const int mat = lane / 8, mat_row = lane % 8;  // ldmatrix: which 8x8 matrix this lane addresses
  const int64_t token_stride = int64_t{p.heads} * D;
  const int64_t head_base = int64_t{b} * geo.tokens * token_stride + int64_t{h} * D;
  const uint16_t* q = static_cast<const uint16_t*>(p.q) + head_base;
  const uint16_t* k = static_cast<const uint16_t*>(p.k) + head_base;
  const uint16_t* v = static_cast<const uint16_t*>(p.v) + head_base;
  const int32_t* rows = p.rows + int64_t{b} * p.sample_rows;
  const int32_t k_blocks = static_cast<int32_t>(geo.k_blocks);
  auto row_token = [&](int r) {
    const int i = row_tile * Sh::kRows + r;
    return int64_t{rows[i < p.sample_rows ? i : p.sample_rows - 1]};  // past the sample: a repeat, not stored
  };

  // The sampled Q rows.
  for (int i = tid; i < Sh::kRows * Sh::kVectors; i += Sh::kThreads) {
    const int r = i / Sh::kVectors, c = i % Sh::kVectors;
    cp_async16(s_q + r * Sh::kStride + c * 8, q + row_token(r) * token_stride + c * 8, true);
  }
  cp_async_commit();

  // Every row's runs under every candidate.
  for (int i = tid; i < Sh::kRows * NC; i += Sh::kThreads) {
    const int r = i / NC, c = i % NC;
    const MaskPattern pattern = p.patterns[c];
    const int64_t token = row_token(r);
    const int64_t position = pattern.permuted ? token_major_position(geo, token) : token;
    const BandRow row = band_mask_row(geo, pattern, position / geo.block_q);
    s_runs[i] = make_int4(static_cast<int32_t>(row.prefix_last), static_cast<int32_t>(row.first),
                          static_cast<int32_t>(row.last), static_cast<int32_t>(row.suffix_first));
  }

  const int64_t key_begin = int64_t{chunk} * p.chunk_keys;
  const int64_t key_end = min(geo.tokens, key_begin + p.chunk_keys);
  const int tiles = key_begin < key_end ? static_cast<int>((key_end - key_begin + 63) / 64) : 0;

  // Token arithmetic in 32 bits (layouts have fewer than 2^31 tokens): 64-bit division is slow.
  const uint32_t video_begin = static_cast<uint32_t>(geo.video_begin);
  const uint32_t video_tokens = static_cast<uint32_t>(geo.video_tokens);
  const uint32_t frames = static_cast<uint32_t>(geo.frames), frame_tokens = static_cast<uint32_t>(geo.frame_tokens);
  const uint32_t block_k = static_cast<uint32_t>(geo.block_k);
  const uint32_t chunk_first = static_cast<uint32_t>(key_begin), chunk_end = static_cast<uint32_t>(key_end);
  auto load_tile = [&](int tile) {
    if (tile < tiles) {
      const int stage = tile % kStages;
      const uint32_t k0 = chunk_first + 64u * tile;
#pragma unroll
      for (int i = tid; i < 64 * Sh::kVectors; i += Sh::kThreads) {
        const int r = i / Sh::kVectors, c = i % Sh::kVectors;
        const bool valid = k0 + r < chunk_end;
        const int64_t offset = int64_t{valid ? k0 + r : 0u} * token_stride + c * 8;
        cp_async16(s_k + stage * Sh::kTile + r * Sh::kStride + c * 8, k + offset, valid);
        cp_async16(s_v + stage * Sh::kTile + r * Sh::kStride + c * 8, v + offset, valid);
      }
      if (tid < 128) {  // each key's block in frame-major (order 0) and token-major (order 1) order
        const uint32_t j = tid % 64, order = tid / 64, key = k0 + j;
        int32_t block = INT_MAX;
        if (key < chunk_end) {
          uint32_t position = key;
          const uint32_t vi = key - video_begin;
          if (order == 1 && key >= video_begin && vi < video_tokens) {
            const uint32_t frame = vi / frame_tokens;
            position = video_begin + (vi - frame * frame_tokens) * frames + frame;
          }
          block = static_cast<int32_t>(position / block_k);
        }
        s_blocks[(stage * 2 + order) * 64 + j] = block;
      }
    }
    cp_async_commit();  // possibly empty, so the group count stays fixed
  };

  cp_async_wait<0>();
  __syncthreads();

  // This warp's output: 0 dense, c + 1 candidate c, in the candidate's key order.
  const int candidate = output - 1;
  const int order = candidate >= 0 && p.patterns[candidate].permuted ? 1 : 0;
  int4 runs[2] = {make_int4(0, 0, 0, 0), make_int4(0, 0, 0, 0)};
  if (candidate >= 0) {
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) runs[rr] = s_runs[(group * 16 + g + rr * 8) * NC + candidate];
  }

  float acc[kTiles][4];
#pragma unroll
  for (int n = 0; n < kTiles; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};

#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) load_tile(st);

  for (int tile = 0; tile < tiles; ++tile) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    load_tile(tile + kStages - 1);  // into the stage every thread finished with last iteration
    const int stage = tile % kStages;
    const uint16_t* k_tile = s_k + stage * Sh::kTile;
    const uint16_t* v_tile = s_v + stage * Sh::kTile;

    // Which elements this output keeps: bit 4j + 2*rr + e for key 8j + 2t + e of row g + 8*rr.
    uint32_t kept = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int2 blocks = *reinterpret_cast<const int2*>(s_blocks + (stage * 2 + order) * 64 + 8 * j + 2 * t);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int32_t block = e ? blocks.y : blocks.x;
        if (candidate < 0) {
          if (static_cast<uint32_t>(block) < static_cast<uint32_t>(k_blocks)) kept |= 5u << (4 * j + e);
        } else {
#pragma unroll
          for (int rr = 0; rr < 2; ++rr)
            if (keeps(runs[rr], block, k_blocks)) kept |= 1u << (4 * j + 2 * rr + e);
        }
      }
    }
    if (!__any_sync(0xffffffffu, kept != 0)) continue;  // none of this warp's rows keeps a key here

    // Scores of this warp's 16 rows: s[j] holds keys 8j + 2t, +1 of rows g, g + 8.
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk) {
      uint32_t q_frag[4];
      ldmatrix_x4(q_frag, s_q + (group * 16 + (mat % 2) * 8 + mat_row) * Sh::kStride + kk * 16 + (mat / 2) * 8);
#pragma unroll
      for (int jp = 0; jp < 4; ++jp) {
        uint32_t kb[4];
        ldmatrix_x4(kb, k_tile + (16 * jp + (mat / 2) * 8 + mat_row) * Sh::kStride + kk * 16 + (mat % 2) * 8);
        mma16816<BF16>(s[2 * jp], q_frag, kb[0], kb[1]);
        mma16816<BF16>(s[2 * jp + 1], q_frag, kb[2], kb[3]);
      }
    }

    // Online softmax over the kept elements: new row maxima, rescale what was accumulated.
    float m[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[j][i] *= p.scale_log2;
        if ((kept >> (4 * j + i)) & 1u) m[i / 2] = fmaxf(m[i / 2], s[j][i]);
      }
    float base[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      m[rr] = fmaxf(m[rr], __shfl_xor_sync(0xffffffffu, m[rr], 1));
      m[rr] = fmaxf(m[rr], __shfl_xor_sync(0xffffffffu, m[rr], 2));
      const float next = fmaxf(row_max[rr], m[rr]);
      base[rr] = next == -INFINITY ? 0.f : next;
      const float alpha = exp2f(row_max[rr] - base[rr]);
      row_max[rr] = next;
      row_sum[rr] *= alpha;
#pragma unroll
      for (int n = 0; n < kTiles; ++n) {
        acc[n][2 * rr] *= alpha;
        acc[n][2 * rr + 1] *= alpha;
      }
    }

    // O += P V, 16 keys at a time.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      float e[2][4];
#pragma unroll
      for (int jj = 0; jj < 2; ++jj)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int j = 2 * kk + jj;
          const bool keep = (kept >> (4 * j + i)) & 1u;
          e[jj][i] = exp2f(keep ? s[j][i] - base[i / 2] : -INFINITY);
          row_sum[i / 2] += e[jj][i];
        }
      const uint32_t pa[4] = {pack2<BF16>(e[0][0], e[0][1]), pack2<BF16>(e[0][2], e[0][3]),
                              pack2<BF16>(e[1][0], e[1][1]), pack2<BF16>(e[1][2], e[1][3])};
#pragma unroll
      for (int pr = 0; pr < kTiles / 2; ++pr) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, v_tile + (16 * kk + (mat % 2) * 8 + mat_row) * Sh::kStride + pr * 16 + (mat / 2) * 8);
        mma16816<BF16>(acc[2 * pr], pa, vb[0], vb[1]);
        mma16816<BF16>(acc[2 * pr + 1], pa, vb[2], vb[3]);
      }
    }
  }
  cp_async_wait<0>();

  // Partial results of rows g and g + 8 for this warp's output.
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int row = row_tile * Sh::kRows + group * 16 + g + rr * 8;
    float sum = row_sum[rr];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    if (row >= p.sample_rows) continue;
    const int64_t record = ((int64_t{slot} * p.sample_rows + row) * p.chunks + chunk) * Sh::kOut + output;
    if (t == 0) p.partial_stats[record] = make_float2(row_max[rr], sum);
    float* out = p.partial_out + record * D + 2 * t;
#pragma unroll
    for (int n = 0; n < kTiles; ++n)
      *reinterpret_cast<float2*>(out + 8 * n) = make_float2(acc[n][2 * rr], acc[n][2 * rr + 1]);
  }
}

// Sum over a block of kCombineThreads threads; every thread gets the total.
__device__ double block_sum(double x, double* scratch) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  __syncthreads();
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = x;
  __syncthreads();
  double total = 0.0;
#pragma unroll
  for (int w = 0; w < kCombineThreads / 32; ++w) total += scratch[w];
  return total;
}

// Per (row, slot): merge the chunks of every output, then the squared errors against dense.
template <int kOut>
__global__ void __launch_bounds__(kCombineThreads) combine_rows(ProfileParams p) {
  __shared__ double scratch[kCombineThreads / 32];
  const int row = blockIdx.x, slot = blockIdx.y, d = threadIdx.x;
  const int64_t first = (int64_t{slot} * p.sample_rows + row) * p.chunks * kOut;
  float out[kOut];
#pragma unroll
  for (int o = 0; o < kOut; ++o) {
    float m = -INFINITY;
    for (int c = 0; c < p.chunks; ++c) m = fmaxf(m, p.partial_stats[first + c * kOut + o].x);
    float sum = 0.f, value = 0.f;
    for (int c = 0; c < p.chunks; ++c) {
      const float2 stats = p.partial_stats[first + c * kOut + o];
      const float w = stats.x == -INFINITY ? 0.f : exp2f(stats.x - m);
      sum += w * stats.y;
      if (d < p.head_dim) value += w * p.partial_out[(first + c * kOut + o) * p.head_dim + d];
    }
    out[o] = sum > 0.f ? value / sum : 0.f;
  }
  const bool live = d < p.head_dim;
  double* errors = p.row_errors + (int64_t{slot} * p.sample_rows + row) * kOut;
  const double dense_square = block_sum(live ? double{out[0]} * out[0] : 0.0, scratch);
  if (d == 0) errors[0] = dense_square;
#pragma unroll
  for (int o = 1; o < kOut; ++o) {
    const double e = double{out[o]} - out[0];
    const double total = block_sum(live ? e * e : 0.0, scratch);
    if (d == 0) errors[o] = total;
  }
}

// Per slot (one warp): MSE and relative error of each candidate, the choice and the permute flag.
__global__ void decide_slots(ProfileParams p) {
  const int slot = blockIdx.x, lane = threadIdx.x, outputs = p.candidates + 1;
  double sums[kProfileMaxCandidates + 1];
  for (int o = 0; o < outputs; ++o) {
    double x = 0.0;
    for (int r = lane; r < p.sample_rows; r += 32) x += p.row_errors[(int64_t{slot} * p.sample_rows + r) * outputs + o];
    for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
    sums[o] = x;
  }
  if (lane != 0) return;
  const double elements = static_cast<double>(p.sample_rows) * p.head_dim;
  const double dense_square = sums[0];
  int best = 0;
  for (int c = 0; c < p.candidates; ++c) {
    const double e = sums[c + 1];
    p.mse[int64_t{slot} * p.candidates + c] = static_cast<float>(e / elements);
    p.relative_error[int64_t{slot} * p.candidates + c] =
        static_cast<float>(dense_square > 0.0 ? e / dense_square : (e > 0.0 ? INFINITY : 0.0));
    if (e < sums[best + 1]) best = c;
  }
  const double best_relative = dense_square > 0.0 ? sums[best + 1] / dense_square : (sums[best + 1] > 0.0 ? INFINITY : 0.0);
  const int choice = p.dense_fallback > 0.0 && best_relative > p.dense_fallback ? -1 : best;
  p.choice[slot] = choice;
  p.permute[slot] = choice >= 0 && p.patterns[choice].permuted ? 1 : 0;
}

template <int D, bool BF16, int NC>
cudaError_t launch_partials(const ProfileParams& p, cudaStream_t stream) {
  using Sh = Shape<D, NC>;
  auto kernel = profile_partials<D, BF16, NC>;
  cudaError_t error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(Sh::kSmem));
  if (error != cudaSuccess) return error;
  const dim3 grid(p.chunks, p.batch * p.heads, (p.sample_rows + Sh::kRows - 1) / Sh::kRows);
  kernel<<<grid, Sh::kThreads, Sh::kSmem, stream>>>(p);
  return cudaGetLastError();
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

int profile_chunks(int slots, int row_tiles, int64_t tokens, int head_dim, int candidates) {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0) {
    sms = 132;
  }
  const int64_t key_tiles = (tokens + kProfileKeyTile - 1) / kProfileKeyTile;
  // Writing and merging a block's partial outputs costs about as much as streaming a few key tiles.
  const int64_t partial_cost = (candidates + 1) * head_dim / 64 + 2;
  int best = 1;
  int64_t best_cost = INT64_MAX;
  for (int chunks = 1; chunks <= 1024 && chunks <= key_tiles; ++chunks) {
    const int64_t blocks = int64_t{slots} * row_tiles * chunks;
    const int64_t waves = (blocks + sms - 1) / sms;  // one block per multiprocessor (registers)
    const int64_t cost = waves * ((key_tiles + chunks - 1) / chunks + partial_cost);
    if (cost < best_cost) {
      best_cost = cost;
      best = chunks;
    }
  }
  return best;
}

cudaError_t launch_profile_heads(const ProfileParams& p, cudaStream_t stream) {
  if (p.candidates < 1 || p.candidates > kProfileMaxCandidates || p.sample_rows < 1 || p.chunks < 1 ||
      p.chunk_keys % kProfileKeyTile != 0) {
    return cudaErrorInvalidValue;
  }
  cudaError_t error = p.bf16 ? launch_partials_for<true>(p, stream) : launch_partials_for<false>(p, stream);
  if (error != cudaSuccess) return error;
  const dim3 rows(p.sample_rows, p.batch * p.heads);
  switch (p.candidates) {
    case 1: combine_rows<2><<<rows, kCombineThreads, 0, stream>>>(p); break;
    case 2: combine_rows<3><<<rows, kCombineThreads, 0, stream>>>(p); break;
    case 3: combine_rows<4><<<rows, kCombineThreads, 0, stream>>>(p); break;
  }
  if ((error = cudaGetLastError()) != cudaSuccess) return error;
  decide_slots<<<p.batch * p.heads, 32, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace vdit::cuda
