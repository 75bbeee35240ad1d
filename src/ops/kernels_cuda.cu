// The CUDA op kernels: element-wise and row-wise passes in f32 math over f32/f16/bf16 storage.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "ops/activation.h"
#include "ops/kernels_cuda.h"

namespace vdit::ops::kernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float load(float v) { return v; }
__device__ __forceinline__ float load(__half v) { return __half2float(v); }
__device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T store(float v);
template <> __device__ __forceinline__ float store<float>(float v) { return v; }
template <> __device__ __forceinline__ __half store<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Calls f(T{}) with T the element type of `type`.
template <typename F>
void dispatch(Float type, F&& f) {
  switch (type) {
    case Float::f32: f(float{}); return;
    case Float::f16: f(__half{}); return;
    case Float::bf16: f(__nv_bfloat16{}); return;
  }
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < (int64_t{1} << 20) ? (blocks > 0 ? blocks : 1) : (int64_t{1} << 20));
}

// Blocks for a loop over `rows` rows, one block per row up to 2^20 rows.
unsigned row_grid(int64_t rows) {
  return static_cast<unsigned>(rows < (int64_t{1} << 20) ? (rows > 0 ? rows : 1) : (int64_t{1} << 20));
}

#define VDIT_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); i += int64_t{gridDim.x} * blockDim.x)

// Sum of v over the block (blockDim.x a multiple of 32); every thread gets it.
__device__ float block_sum(float v) {
  __shared__ float partial[33];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? partial[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) partial[32] = v;
  }
  __syncthreads();
  const float total = partial[32];
  __syncthreads();
  return total;
}

// One warp per row (rows are short: the text tokens of a cross-attention); the second and third
// reads of a row hit L1.
template <typename T>
__global__ void softmax_kernel(const float* scores, T* probs, int64_t rows, int64_t cols) {
  const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
  for (int64_t row = blockIdx.x * int64_t{warps} + threadIdx.x / 32; row < rows; row += int64_t{gridDim.x} * warps) {
    const float* s = scores + row * cols;
    T* p = probs + row * cols;
    float m = -INFINITY;
    for (int64_t i = lane; i < cols; i += 32) m = fmaxf(m, s[i]);
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float sum = 0.0f;
    for (int64_t i = lane; i < cols; i += 32) sum += expf(s[i] - m);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv = 1.0f / sum;
    for (int64_t i = lane; i < cols; i += 32) p[i] = store<T>(expf(s[i] - m) * inv);
  }
}

// Where a norm's output row starts (NormArgs::y_item_stride). The division in 32 bits: rows fit
// (norm_args_supported).
__device__ __forceinline__ int64_t norm_y_offset(const NormArgs& a, int64_t row) {
  if (a.y_item_stride == 0) return row * a.dim;
  const uint32_t item = static_cast<uint32_t>(row) / static_cast<uint32_t>(a.y_tokens);
  return int64_t{item} * a.y_item_stride + (row - int64_t{item} * a.y_tokens) * a.dim;
}

// One block per row.
template <typename T>
__global__ void norm_kernel(const T* x, T* y, const T* weight, const T* bias, const T* shift, const T* scale,
                            NormArgs a) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * a.dim;
  T* yr = y + norm_y_offset(a, row);
  float mean = 0.0f;
  if (a.center) {
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < a.dim; i += blockDim.x) s += load(xr[i]);
    mean = block_sum(s) / static_cast<float>(a.dim);
  }
  float squares = 0.0f;
  for (int64_t i = threadIdx.x; i < a.dim; i += blockDim.x) {
    const float v = load(xr[i]) - mean;
    squares += v * v;
  }
  const float inv = rsqrtf(block_sum(squares) / static_cast<float>(a.dim) + a.eps);
  const int64_t mod = row / a.rows_per_item * a.mod_stride;
  for (int64_t i = threadIdx.x; i < a.dim; i += blockDim.x) {
    float v = (load(xr[i]) - mean) * inv;
    if (weight) v *= load(weight[i]);
    if (bias) v += load(bias[i]);
    if (scale) v = v * (1.0f + load(scale[mod + i])) + load(shift[mod + i]);
    yr[i] = store<T>(v);
  }
}

// 16-byte vectors of T: kVec<T> elements.
template <typename T> constexpr int kVec = 16 / static_cast<int>(sizeof(T));

template <typename T>
__device__ __forceinline__ void load_vec(const T* p, float (&v)[kVec<T>]) {
  alignas(16) T e[kVec<T>];
  *reinterpret_cast<uint4*>(e) = *reinterpret_cast<const uint4*>(p);
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) v[i] = load(e[i]);
}

template <typename T>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[kVec<T>]) {
  alignas(16) T e[kVec<T>];
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) e[i] = store<T>(v[i]);
  *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(e);
}

// Sum of v over a group of `group` consecutive threads (a power of two; above 32, whole warps, using
// partial[blockDim.x / 32]); every thread of the group gets it. Every thread of the block calls it.
__device__ __forceinline__ float group_sum(float v, int group, float* partial) {
  for (int o = (group < 32 ? group : 32) / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (group <= 32) return v;
  const int warp = threadIdx.x / 32, per_group = group / 32, first = warp - warp % per_group;
  __syncthreads();  // the previous sum's reads of partial are done
  if (threadIdx.x % 32 == 0) partial[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < per_group; ++w) total += partial[first + w];
  return total;
}

// The residual update of gated_add_norm: x += gate * y (gate null: 1) per token row; x null: none.
template <typename T>
struct Residual {
  T* x = nullptr;
  const T* y = nullptr;
  const T* gate = nullptr;
  int64_t tokens = 1, y_item = 0, y_token = 0, gate_stride = 0;
};

// At most 512 threads a row: with 1024 the kernel's registers exceeded the multiprocessor's file
// ("too many resources requested for launch" on H100); the launch bound keeps 512 always launchable.
constexpr int kNormRowsMaxThreads = 512;

// One group of threads per row, each thread holding up to VPT 16-byte vectors of the row in
// registers between the reductions and the write: x is read once and y written once. Vector j of a
// thread is vector lane + j * group of the row (coalesced). The row's vectors, the weight, bias,
// shift and scale must be 16-byte aligned (checked by the launcher). The grid is what stays resident
// and loops over rows; without a residual update a group loads its next row while it normalises this
// one, so that the loads of every warp stay in flight through its arithmetic (a row read only once
// the previous one was written left the HBM at ~70% of a copy's rate).
//
// kResidual: the residual update of gated_add_norm (r.x set); otherwise the next row is prefetched.
// At most 64 registers a thread (the bound of two 512-thread blocks a multiprocessor) wherever ptxas
// fits that without spilling: left free it took 72-79 on the residual kernels at 4-6 vectors a thread
// and 78 on the prefetching one at 4, which ran 2-8% slower for the lost occupancy (H100, bench_norms).
template <typename T, int VPT, bool kResidual>
__global__ void __launch_bounds__(kNormRowsMaxThreads, (kResidual ? VPT <= 7 : VPT <= 4) ? 2 : 1)
    norm_rows_kernel(const T* x, T* y, const T* weight, const T* bias, const T* shift, const T* scale, NormArgs a,
                     int group, Residual<T> r) {
  constexpr int V = kVec<T>;
  __shared__ float partial[32];
  const int lane = threadIdx.x % group, rows_per_block = blockDim.x / group;
  const int vectors = static_cast<int>(a.dim / V);
  const int64_t stride = int64_t{gridDim.x} * rows_per_block;
  constexpr bool kPrefetch = !kResidual;
  // The next row's x (kPrefetch: no residual update), loaded one iteration ahead.
  alignas(16) T next[kPrefetch ? VPT : 1][V];
  auto load_next = [&](int64_t at_row) {
    if (at_row >= a.rows) return;
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      const int c = lane + j * group;
      if (c < vectors)
        *reinterpret_cast<uint4*>(next[j]) = *reinterpret_cast<const uint4*>(x + at_row * a.dim + int64_t{c} * V);
    }
  };
  if constexpr (kPrefetch) load_next(blockIdx.x * int64_t{rows_per_block} + threadIdx.x / group);
  for (int64_t base = blockIdx.x * int64_t{rows_per_block}; base < a.rows; base += stride) {
    const int64_t row = base + threadIdx.x / group;
    const bool valid = row < a.rows;
    // The row as stored (x after the residual update), in T: exact, and for 16-bit T half the
    // registers of floats, so that more rows are in flight.
    alignas(16) T raw[VPT][V];
    if constexpr (kPrefetch) {
#pragma unroll
      for (int j = 0; j < VPT; ++j) *reinterpret_cast<uint4*>(raw[j]) = *reinterpret_cast<const uint4*>(next[j]);
      load_next(row + stride);
    }
    float sum = 0.0f;
    // With a residual update, the row's x, y and gate (x written back, rounded as gated_add_kernel rounds it).
    T* rx = nullptr;
    const T *ry = nullptr, *rg = nullptr;
    // Index arithmetic in 32 bits (rows fit: norm_args_supported): 64-bit divisions cost ~70
    // instructions each.
    const uint32_t row32 = static_cast<uint32_t>(row);
    if (kResidual && valid) {
      const int64_t item = row32 / static_cast<uint32_t>(r.tokens), token = row - item * r.tokens;
      rx = r.x + row * a.dim;
      ry = r.y + item * r.y_item + token * r.y_token;
      rg = r.gate ? r.gate + item * r.gate_stride : nullptr;
    }
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      const int c = lane + j * group;
      if (valid && c < vectors) {
        const int64_t at = int64_t{c} * V;
        if constexpr (kResidual) {
          float x_in[V], y_in[V], g[V];
          load_vec(rx + at, x_in);
          load_vec(ry + at, y_in);
          if (rg) {
            load_vec(rg + at, g);
          } else {
#pragma unroll
            for (int i = 0; i < V; ++i) g[i] = 1.0f;
          }
#pragma unroll
          for (int i = 0; i < V; ++i) raw[j][i] = store<T>(x_in[i] + g[i] * y_in[i]);
          *reinterpret_cast<uint4*>(rx + at) = *reinterpret_cast<const uint4*>(raw[j]);
        }
        if (a.center) {
#pragma unroll
          for (int i = 0; i < V; ++i) sum += load(raw[j][i]);
        }
      }
    }
    float mean = 0.0f;
    if (a.center) mean = group_sum(sum, group, partial) / static_cast<float>(a.dim);
    float squares = 0.0f;
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      if (valid && lane + j * group < vectors) {
#pragma unroll
        for (int i = 0; i < V; ++i) {
          const float d = load(raw[j][i]) - mean;
          squares += d * d;
        }
      }
    }
    const float inv = rsqrtf(group_sum(squares, group, partial) / static_cast<float>(a.dim) + a.eps);
    if (!valid) continue;
    const int64_t mod = scale ? int64_t{row32 / static_cast<uint32_t>(a.rows_per_item)} * a.mod_stride : 0;
    const int64_t rope_token =
        a.rope_cos ? int64_t{row32 / static_cast<uint32_t>(a.rows_per_token) % static_cast<uint32_t>(a.seq)} -
                         a.rope_offset
                   : -1;
    const bool rotate = rope_token >= 0 && rope_token < a.rope_tokens;
    T* const yr = y + norm_y_offset(a, row);
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      const int c = lane + j * group;
      if (c >= vectors) continue;
      const int64_t at = int64_t{c} * V;
      float v[V], w[V], b[V], sh[V], sc[V];
#pragma unroll
      for (int i = 0; i < V; ++i) v[i] = (load(raw[j][i]) - mean) * inv;
      if (weight) {
        load_vec(weight + at, w);
#pragma unroll
        for (int i = 0; i < V; ++i) v[i] *= w[i];
      }
      if (bias) {
        load_vec(bias + at, b);
#pragma unroll
        for (int i = 0; i < V; ++i) v[i] += b[i];
      }
      if (scale) {
        load_vec(scale + mod + at, sc);
        load_vec(shift + mod + at, sh);
#pragma unroll
        for (int i = 0; i < V; ++i) v[i] = v[i] * (1.0f + sc[i]) + sh[i];
      }
      if (rotate) {  // the vector lies within one head (head_dim % V == 0)
        const int64_t pairs = a.head_dim / 2;
        const int64_t first = rope_token * pairs + static_cast<uint32_t>(at) % static_cast<uint32_t>(a.head_dim) / 2;
#pragma unroll
        for (int i = 0; i < V / 2; ++i) {
          const float c = a.rope_cos[first + i], s = a.rope_sin[first + i];
          const float x0 = v[2 * i], x1 = v[2 * i + 1];
          v[2 * i] = x0 * c - x1 * s;
          v[2 * i + 1] = x0 * s + x1 * c;
        }
      }
      store_vec(yr + at, v);
    }
  }
}

template <typename T>
__global__ void modulate_kernel(const T* x, T* y, const T* shift, const T* scale, TokenArgs a) {
  VDIT_GRID_STRIDE(i, a.batch * a.tokens * a.dim) {
    const int64_t at = i / (a.dim * a.tokens) * a.row_stride + i % a.dim;
    y[i] = store<T>(load(x[i]) * (1.0f + load(scale[at])) + load(shift[at]));
  }
}

// Blocks over token rows, threads along the row: no 64-bit division per element.
template <typename T>
__global__ void gated_add_kernel(T* x, const T* y, const T* gate, TokenArgs a) {
  for (int64_t r = blockIdx.x; r < a.batch * a.tokens; r += gridDim.x) {
    const int64_t item = r / a.tokens, token = r - item * a.tokens;
    T* xr = x + r * a.dim;
    const T* yr = y + item * a.y_item + token * a.y_token;
    const T* gr = gate ? gate + item * a.row_stride : nullptr;
    for (int64_t c = threadIdx.x; c < a.dim; c += blockDim.x) {
      const float g = gr ? load(gr[c]) : 1.0f;
      xr[c] = store<T>(load(xr[c]) + g * load(yr[c]));
    }
  }
}

// 16-byte vectors of x, y and gate, one a thread (dim a multiple of kVec<T>, every row aligned): the
// same sum as gated_add_kernel, which loads element by element. Wan 1.3B's FFN residual on H100 (30
// layers of 32,760 x 1536 bf16): 5.2-5.3 ms with gated_add_kernel, 2.4-3.0 with this one.
template <typename T>
__global__ void gated_add_vec_kernel(T* x, const T* y, const T* gate, TokenArgs a) {
  constexpr int V = kVec<T>;
  const int64_t per_row = a.dim / V;
  VDIT_GRID_STRIDE(i, a.batch * a.tokens * per_row) {
    const int64_t r = i / per_row, at = (i - r * per_row) * V, item = r / a.tokens, token = r - item * a.tokens;
    float xv[V], yv[V], g[V];
    load_vec(x + r * a.dim + at, xv);
    load_vec(y + item * a.y_item + token * a.y_token + at, yv);
    if (gate) {
      load_vec(gate + item * a.row_stride + at, g);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j) g[j] = 1.0f;
    }
#pragma unroll
    for (int j = 0; j < V; ++j) xv[j] = xv[j] + g[j] * yv[j];
    store_vec(x + r * a.dim + at, xv);
  }
}

template <typename T>
__global__ void activation_kernel(const T* x, T* y, int64_t n, Activation act) {
  VDIT_GRID_STRIDE(i, n) y[i] = store<T>(activate(act, load(x[i])));
}

// 16-byte vectors of x and y (n a multiple of kVec<T>, both aligned).
template <typename T>
__global__ void activation_vec_kernel(const T* x, T* y, int64_t vectors, Activation act) {
  VDIT_GRID_STRIDE(i, vectors) {
    float v[kVec<T>];
    load_vec(x + i * kVec<T>, v);
#pragma unroll
    for (int j = 0; j < kVec<T>; ++j) v[j] = activate(act, v[j]);
    store_vec(y + i * kVec<T>, v);
  }
}

template <typename From, typename To>
__global__ void convert_kernel(const From* x, To* y, int64_t n) {
  VDIT_GRID_STRIDE(i, n) y[i] = store<To>(load(x[i]));
}

template <typename T>
__global__ void add_kernel(const T* a, const T* b, T* y, int64_t n, int64_t period) {
  VDIT_GRID_STRIDE(i, n) y[i] = store<T>(load(a[i]) + load(b[i % period]));
}

template <typename T>
__global__ void patch_kernel(const T* from, T* to, PatchIndexer index, int64_t tokens, int64_t features,
                             bool to_tokens) {
  VDIT_GRID_STRIDE(i, index.d.batch * tokens * features) {
    const int64_t k = i % features, r = i / features;
    const int64_t at = index.offset(r / tokens, r % tokens, k);
    if (to_tokens) {
      to[i] = from[at];
    } else {
      to[at] = from[i];
    }
  }
}

// The angle rounds to f32 step by step, as in the CPU op.
template <typename T>
__global__ void timestep_kernel(const T* timesteps, float* out, TimestepArgs a) {
  VDIT_GRID_STRIDE(i, a.batch * a.half) {
    const int64_t b = i / a.half;
    const int j = static_cast<int>(i % a.half);
    const float freq = expf(a.log_period * static_cast<float>(j) / a.denominator);
    const float angle = a.scale * (load(timesteps[b]) * freq);
    out[b * a.dim + a.sin_at + j] = static_cast<float>(sin(static_cast<double>(angle)));
    out[b * a.dim + a.cos_at + j] = static_cast<float>(cos(static_cast<double>(angle)));
  }
}

// Blocks over (batch item, token) rows, threads over the row's heads * pairs pairs (pair i of the
// row is head i / pairs, pair i % pairs): no 64-bit division per element.
template <typename T>
__global__ void rope_kernel(T* x, const float* cos_table, const float* sin_table, RopeArgs a) {
  const int pairs = static_cast<int>(a.pairs), row_pairs = static_cast<int>(a.heads * a.pairs);
  for (int64_t r = blockIdx.x; r < a.batch * a.tokens; r += gridDim.x) {
    const int64_t b = r / a.tokens, t = r - b * a.tokens;
    T* row = x + (b * a.seq + a.offset + t) * 2 * row_pairs;
    const float* cos_row = cos_table + t * pairs;
    const float* sin_row = sin_table + t * pairs;
    for (int i = threadIdx.x; i < row_pairs; i += blockDim.x) {
      const int p = i % pairs;
      T* v = row + 2 * i;
      const float c = cos_row[p], s = sin_row[p];
      const float x0 = load(v[0]), x1 = load(v[1]);
      v[0] = store<T>(x0 * c - x1 * s);
      v[1] = store<T>(x0 * s + x1 * c);
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// What both norm entry points take: rows for 32-bit row arithmetic and the fallback's one block a
// row (grid.x < 2^31); RoPE only with contiguous output rows (its fallback pass rotates those).
bool norm_args_supported(const NormArgs& a) { return a.rows <= INT32_MAX && !(a.rope_cos && a.y_item_stride != 0); }

// The register-resident row kernel when the row fits (at most 8 vectors for each of 512 threads) and
// every operand is 16-byte aligned; false otherwise (the caller falls back to norm_kernel). Threads
// per row: a power of two (see the launcher); 256-thread blocks hold several rows. With r.x set, x is
// null and each row is first updated through r (whose strides must also be whole vectors).
template <typename T>
bool launch_norm_rows(const T* x, T* y, const T* weight, const T* bias, const T* shift, const T* scale,
                      const NormArgs& a, cudaStream_t stream, const Residual<T>& r = {}) {
  constexpr int V = kVec<T>, kMaxVpt = 8;
  if (a.dim % V != 0 || a.dim / V > kNormRowsMaxThreads * kMaxVpt || a.mod_stride % V != 0 ||
      a.y_item_stride % V != 0)
    return false;
  if (a.rope_cos && (a.head_dim % V != 0 || a.seq <= 0)) return false;
  if (r.x && (r.tokens <= 0 || r.y_item % V != 0 || r.y_token % V != 0 || r.gate_stride % V != 0)) return false;
  for (const void* p : {static_cast<const void*>(x), static_cast<const void*>(y), static_cast<const void*>(weight),
                        static_cast<const void*>(bias), static_cast<const void*>(shift),
                        static_cast<const void*>(scale), static_cast<const void*>(r.x),
                        static_cast<const void*>(r.y), static_cast<const void*>(r.gate)})
    if (!aligned16(p)) return false;
  const int vectors = static_cast<int>(a.dim / V);
  // Up to 4 vectors a thread before the group grows past one lane (short rows, e.g. a head of 64:
  // more bytes in flight a thread, fewer shuffles), then up to a warp, then up to kMaxVpt a thread;
  // up to 4 when the next row is prefetched, whose registers double the row's (H100, Wan's 1536-wide
  // rms_norm_rope: 91 us at 3 vectors a thread in two warps, 95 at 6 in one warp), unless the row
  // needs more to fit the block.
  const int max_vpt = r.x || vectors > 4 * kNormRowsMaxThreads ? kMaxVpt : 4;
  int group = 1;
  while (group < 32 && group * 4 < vectors) group *= 2;
  while (group * max_vpt < vectors) group *= 2;
  const int vpt = (vectors + group - 1) / group;
  const int threads = group > 256 ? group : 256, rows_per_block = threads / group;
  const int64_t blocks = (a.rows + rows_per_block - 1) / rows_per_block;
  auto launch = [&](auto kernel) {
    // As many blocks as stay resident (each loops over rows), fewer for short inputs.
    int device = 0, sms = 0, per_sm = 0;
    int64_t grid = blocks;
    if (cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) == cudaSuccess &&
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0) == cudaSuccess && per_sm > 0)
      grid = std::min<int64_t>(grid, int64_t{sms} * per_sm);
    grid = std::min<int64_t>(grid, int64_t{1} << 30);
    kernel<<<static_cast<unsigned>(grid), threads, 0, stream>>>(x, y, weight, bias, shift, scale, a, group, r);
  };
  auto pick = [&](auto residual) {
    constexpr bool kResidual = decltype(residual)::value;
    switch (vpt) {
      case 1: launch(norm_rows_kernel<T, 1, kResidual>); break;
      case 2: launch(norm_rows_kernel<T, 2, kResidual>); break;
      case 3: launch(norm_rows_kernel<T, 3, kResidual>); break;
      case 4: launch(norm_rows_kernel<T, 4, kResidual>); break;
      case 5: launch(norm_rows_kernel<T, 5, kResidual>); break;
      case 6: launch(norm_rows_kernel<T, 6, kResidual>); break;
      case 7: launch(norm_rows_kernel<T, 7, kResidual>); break;
      default: launch(norm_rows_kernel<T, 8, kResidual>); break;
    }
  };
  if (r.x) {
    pick(std::true_type{});
  } else {
    pick(std::false_type{});
  }
  return true;
}

}  // namespace

cudaError_t norm(Float type, const void* x, void* y, const void* weight, const void* bias, const void* shift,
                 const void* scale, const NormArgs& args, cudaStream_t stream) {
  if (args.rows == 0) return cudaSuccess;
  if (!norm_args_supported(args)) return cudaErrorInvalidValue;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    if (launch_norm_rows<T>(static_cast<const T*>(x), static_cast<T*>(y), static_cast<const T*>(weight),
                            static_cast<const T*>(bias), static_cast<const T*>(shift), static_cast<const T*>(scale),
                            args, stream))
      return;
    norm_kernel<T><<<static_cast<unsigned>(args.rows), kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), static_cast<const T*>(weight), static_cast<const T*>(bias),
        static_cast<const T*>(shift), static_cast<const T*>(scale), args);
    if (args.rope_cos && args.rope_tokens > 0) {  // a second pass where the fused kernel does not apply
      const RopeArgs r{args.rows / (args.seq * args.rows_per_token), args.seq,
                       args.dim * args.rows_per_token / args.head_dim, args.head_dim / 2, args.rope_tokens,
                       args.rope_offset};
      rope_kernel<T><<<row_grid(r.batch * r.tokens), kThreads, 0, stream>>>(static_cast<T*>(y), args.rope_cos,
                                                                            args.rope_sin, r);
    }
  });
  return cudaGetLastError();
}

cudaError_t gated_add_norm(Float type, void* x, const void* residual, const void* gate, const TokenArgs& add, void* y,
                           const void* weight, const void* bias, const void* shift, const void* scale,
                           const NormArgs& args, cudaStream_t stream) {
  if (args.rows == 0) return cudaSuccess;
  if (!norm_args_supported(args)) return cudaErrorInvalidValue;
  bool fused = false;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    const Residual<T> r{static_cast<T*>(x), static_cast<const T*>(residual), static_cast<const T*>(gate), add.tokens,
                        add.y_item, add.y_token, add.row_stride};
    fused = launch_norm_rows<T>(nullptr, static_cast<T*>(y), static_cast<const T*>(weight),
                                static_cast<const T*>(bias), static_cast<const T*>(shift),
                                static_cast<const T*>(scale), args, stream, r);
  });
  if (fused) return cudaGetLastError();
  const cudaError_t err = gated_add(type, x, residual, gate, add, stream);
  if (err != cudaSuccess) return err;
  return norm(type, x, y, weight, bias, shift, scale, args, stream);
}

cudaError_t softmax_rows(Float type, const float* scores, void* probs, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    softmax_kernel<T><<<grid_for(rows * 32), kThreads, 0, stream>>>(scores, static_cast<T*>(probs), rows, cols);
  });
  return cudaGetLastError();
}

cudaError_t modulate(Float type, const void* x, void* y, const void* shift, const void* scale, const TokenArgs& args,
                     cudaStream_t stream) {
  const int64_t n = args.batch * args.tokens * args.dim;
  if (n == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    modulate_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y),
                                                              static_cast<const T*>(shift),
                                                              static_cast<const T*>(scale), args);
  });
  return cudaGetLastError();
}

cudaError_t gated_add(Float type, void* x, const void* y, const void* gate, const TokenArgs& args, cudaStream_t stream) {
  const int64_t n = args.batch * args.tokens * args.dim;
  if (n == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    constexpr int V = kVec<T>;
    if (args.dim % V == 0 && args.y_item % V == 0 && args.y_token % V == 0 && args.row_stride % V == 0 &&
        aligned16(x) && aligned16(y) && (!gate || aligned16(gate))) {
      gated_add_vec_kernel<T><<<grid_for(n / V), kThreads, 0, stream>>>(
          static_cast<T*>(x), static_cast<const T*>(y), static_cast<const T*>(gate), args);
      return;
    }
    gated_add_kernel<T><<<row_grid(args.batch * args.tokens), kThreads, 0, stream>>>(
        static_cast<T*>(x), static_cast<const T*>(y), static_cast<const T*>(gate), args);
  });
  return cudaGetLastError();
}

cudaError_t activation(Float type, const void* x, void* y, int64_t n, Activation act, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    if (n % kVec<T> == 0 && aligned16(x) && aligned16(y)) {
      activation_vec_kernel<T><<<grid_for(n / kVec<T>), kThreads, 0, stream>>>(static_cast<const T*>(x),
                                                                                static_cast<T*>(y), n / kVec<T>, act);
      return;
    }
    activation_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y), n, act);
  });
  return cudaGetLastError();
}

cudaError_t convert(Float from, Float to, const void* x, void* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  dispatch(from, [&](auto from_zero) {
    dispatch(to, [&](auto to_zero) {
      using In = decltype(from_zero);
      using Out = decltype(to_zero);
      convert_kernel<In, Out><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const In*>(x), static_cast<Out*>(y), n);
    });
  });
  return cudaGetLastError();
}

cudaError_t add(Float type, const void* a, const void* b, void* y, int64_t n, int64_t period, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    add_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const T*>(a), static_cast<const T*>(b),
                                                         static_cast<T*>(y), n, period);
  });
  return cudaGetLastError();
}

cudaError_t patches(Float type, const void* from, void* to, const PatchIndexer& index, int64_t tokens, int64_t features,
                    bool to_tokens, cudaStream_t stream) {
  const int64_t n = index.d.batch * tokens * features;
  if (n == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    patch_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const T*>(from), static_cast<T*>(to), index,
                                                           tokens, features, to_tokens);
  });
  return cudaGetLastError();
}

cudaError_t timestep_embedding(Float type, const void* timesteps, float* out, const TimestepArgs& args,
                               cudaStream_t stream) {
  const int64_t n = args.batch * args.half;
  if (n == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    timestep_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const T*>(timesteps), out, args);
  });
  return cudaGetLastError();
}

cudaError_t rope(Float type, void* x, const float* cos_table, const float* sin_table, const RopeArgs& args,
                 cudaStream_t stream) {
  const int64_t n = args.batch * args.tokens * args.heads * args.pairs;
  if (n == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    rope_kernel<T><<<row_grid(args.batch * args.tokens), kThreads, 0, stream>>>(static_cast<T*>(x), cos_table,
                                                                                 sin_table, args);
  });
  return cudaGetLastError();
}

namespace {

__global__ void expand_rope_table_kernel(const float* __restrict__ axis_cos, const float* __restrict__ axis_sin,
                                         RopeGrid g, int64_t total, float* __restrict__ cos,
                                         float* __restrict__ sin) {
  const int pairs = g.axis_pairs[0] + g.axis_pairs[1] + g.axis_pairs[2];
  VDIT_GRID_STRIDE(i, total) {
    const int64_t t = i / pairs;
    int j = static_cast<int>(i % pairs);
    const int64_t at[3] = {t / (g.extent[1] * g.extent[2]), t / g.extent[2] % g.extent[1], t % g.extent[2]};
    int64_t base = 0;
    int a = 0;
    while (j >= g.axis_pairs[a]) {  // the axis of pair j, and where that axis' runs start
      j -= g.axis_pairs[a];
      base += g.extent[a] * g.axis_pairs[a];
      ++a;
    }
    const int64_t source = base + at[a] * g.axis_pairs[a] + j;
    cos[i] = axis_cos[source];
    sin[i] = axis_sin[source];
  }
}

}  // namespace

cudaError_t expand_rope_table(const float* axis_cos, const float* axis_sin, const RopeGrid& grid, float* cos,
                              float* sin, cudaStream_t stream) {
  const int64_t total = grid.extent[0] * grid.extent[1] * grid.extent[2] *
                        (grid.axis_pairs[0] + grid.axis_pairs[1] + grid.axis_pairs[2]);
  if (total == 0) return cudaSuccess;
  const int64_t blocks = (total + kThreads - 1) / kThreads < 65535 ? (total + kThreads - 1) / kThreads : 65535;
  expand_rope_table_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(axis_cos, axis_sin, grid, total,
                                                                                   cos, sin);
  return cudaGetLastError();
}

}  // namespace vdit::ops::kernels
