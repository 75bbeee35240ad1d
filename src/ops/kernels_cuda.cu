// The CUDA op kernels: element-wise and row-wise passes in f32 math over f32/f16/bf16 storage.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

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

// One block per row.
template <typename T>
__global__ void norm_kernel(const T* x, T* y, const T* weight, const T* bias, const T* shift, const T* scale,
                            NormArgs a) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * a.dim;
  T* yr = y + row * a.dim;
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

template <typename T>
__global__ void activation_kernel(const T* x, T* y, int64_t n, Activation act) {
  VDIT_GRID_STRIDE(i, n) y[i] = store<T>(activate(act, load(x[i])));
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

}  // namespace

cudaError_t norm(Float type, const void* x, void* y, const void* weight, const void* bias, const void* shift,
                 const void* scale, const NormArgs& args, cudaStream_t stream) {
  if (args.rows == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
    norm_kernel<T><<<static_cast<unsigned>(args.rows), kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), static_cast<const T*>(weight), static_cast<const T*>(bias),
        static_cast<const T*>(shift), static_cast<const T*>(scale), args);
  });
  return cudaGetLastError();
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
    gated_add_kernel<T><<<row_grid(args.batch * args.tokens), kThreads, 0, stream>>>(
        static_cast<T*>(x), static_cast<const T*>(y), static_cast<const T*>(gate), args);
  });
  return cudaGetLastError();
}

cudaError_t activation(Float type, const void* x, void* y, int64_t n, Activation act, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  dispatch(type, [&](auto zero) {
    using T = decltype(zero);
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

}  // namespace vdit::ops::kernels
