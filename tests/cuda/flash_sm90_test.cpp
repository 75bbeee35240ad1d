// The sm_90a flash-attention kernel (flash_fwd_sm90) against the CPU reference attention_reference,
// dense and block-sparse, bf16 and fp16, head dims 64/96/128, ragged S, LSE. The error bound is
// FlashAttention-3's rule: the kernel's error against the f32 reference must stay within 2x the
// error of a plain same-precision implementation (inputs rounded to bf16/fp16, f32 scores and
// softmax, P rounded before PV, f32 accumulation, output rounded) plus a tiny absolute floor.
// Outputs are poisoned (NaN) before each run, so an unwritten element fails.
//
// FlashSm90.Timing runs only with VDIT_FLASH_SM90_BENCH=1 (scripts/device/flash_sm90.sh): CUDA
// events, median of VDIT_FLASH_SM90_BENCH_RUNS (default 10) after a warm-up of
// VDIT_FLASH_SM90_BENCH_WARMUP_MS (default 300: short bursts, above the clock the GPU holds at its
// power cap; 1000 for that clock, as bench_attention), TFLOP/s =
// 4 S^2 D H / t (dense-equivalent) and the same
// times the mask density (effective). VDIT_FLASH_SM90_BENCH_ONLY="Wan 1.3B dense" times one row;
// VDIT_FLASH_SM90_BENCH_INPUTS=independent draws Q, K and V apart (see Timing).
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/parallel.h"
#include "kernels/cuda/flash_fwd.h"
#include "vdit/attention.h"
#include "vdit/tensor.h"

namespace vdit {
namespace {

bool have_sm90() {
  int count = 0, major = 0, minor = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  return major == 9 && minor == 0;
}

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call << ": " << cudaGetErrorString(cudaGetLastError())

// A device allocation freed on scope exit.
struct DeviceBuffer {
  void* data = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (cudaMalloc(&data, std::max<size_t>(bytes, 16)) != cudaSuccess) data = nullptr;
  }
  ~DeviceBuffer() { cudaFree(data); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// splitmix64, so the inputs do not depend on the standard library.
struct Random {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(next() >> 40) * 0x1p-23f - 1.0f; }  // [-1, 1)
};

uint16_t to_half_bits(float x, bool bf16) { return bf16 ? f32_to_bf16(x) : f32_to_f16(x); }
float from_half_bits(uint16_t x, bool bf16) { return bf16 ? bf16_to_f32(x) : f16_to_f32(x); }
float round_to(float x, bool bf16) { return from_half_bits(to_half_bits(x, bf16), bf16); }

// Random [B, S, H, D] values in [-amplitude, amplitude), rounded to the element type: the bits for
// the GPU and the rounded values as f32 for the references.
struct Input {
  std::vector<uint16_t> bits;
  Tensor values;
};

Input random_input(int64_t batch, int64_t seqlen, int64_t heads, int64_t dim, bool bf16, float amplitude,
                   uint64_t seed) {
  Input in;
  in.values = Tensor::empty(Shape{batch, seqlen, heads, dim}, DType::f32);
  float* v = in.values.data<float>();
  in.bits.resize(in.values.numel());
  Random rng{seed};
  for (int64_t i = 0; i < in.values.numel(); ++i) {
    in.bits[i] = to_half_bits(amplitude * rng.uniform(), bf16);
    v[i] = from_half_bits(in.bits[i], bf16);
  }
  return in;
}

// A random CSR mask: each (slot, query block, key block) kept with probability `density`; every
// 5th row of the first slot is left empty.
BlockMask random_mask(int64_t tokens, int slots, int block_q, int block_k, double density, uint64_t seed) {
  BlockMask m;
  m.tokens = tokens;
  m.block_q = block_q;
  m.block_k = block_k;
  m.heads = slots;
  Random rng{seed};
  m.row_offsets.push_back(0);
  for (int s = 0; s < slots; ++s)
    for (int64_t qb = 0; qb < m.q_blocks(); ++qb) {
      for (int64_t kb = 0; kb < m.k_blocks(); ++kb)
        if (!(s == 0 && qb % 5 == 0) && (rng.uniform() + 1.0) * 0.5 < density)
          m.key_blocks.push_back(static_cast<int32_t>(kb));
      m.row_offsets.push_back(static_cast<int64_t>(m.key_blocks.size()));
    }
  m.validate();
  return m;
}

// The plain same-precision implementation, O as f32 (already rounded to the element type).
Tensor plain_attention(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask* mask, float scale,
                       bool bf16) {
  const int64_t batch = q.size(0), seqlen = q.size(1), heads = q.size(2), dim = q.size(3), keys = k.size(1);
  Tensor out = Tensor::empty(q.shape(), DType::f32);
  const float* qp = q.data<float>();
  const float* kp = k.data<float>();
  const float* vp = v.data<float>();
  float* op = out.data<float>();
  parallel_for(batch * heads * seqlen, [&](int64_t begin, int64_t end) {
    std::vector<float> s(keys), p(keys), acc(dim);
    std::vector<char> keep(keys);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / (heads * seqlen), h = item / seqlen % heads, i = item % seqlen;
      if (mask) {
        std::fill(keep.begin(), keep.end(), 0);
        int slot = static_cast<int>(mask->heads == heads ? h : b * heads + h);
        for (int32_t kb : mask->row(slot, i / mask->block_q)) {
          const int64_t block_end = std::min<int64_t>(seqlen, (kb + 1) * int64_t{mask->block_k});
          for (int64_t j = int64_t{kb} * mask->block_k; j < block_end; ++j) keep[j] = 1;
        }
      } else {
        std::fill(keep.begin(), keep.end(), 1);
      }
      const float* qi = qp + ((b * seqlen + i) * heads + h) * dim;
      float mx = -INFINITY;
      for (int64_t j = 0; j < keys; ++j) {
        if (!keep[j]) continue;
        const float* kj = kp + ((b * keys + j) * heads + h) * dim;
        float dot = 0.f;
        for (int64_t d = 0; d < dim; ++d) dot += qi[d] * kj[d];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      float sum = 0.f;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t j = 0; j < keys; ++j) {
        if (!keep[j]) continue;
        float e = std::exp(s[j] - mx);
        sum += e;
        float pr = round_to(e, bf16);
        const float* vj = vp + ((b * keys + j) * heads + h) * dim;
        for (int64_t d = 0; d < dim; ++d) acc[d] += pr * vj[d];
      }
      float* oi = op + ((b * seqlen + i) * heads + h) * dim;
      for (int64_t d = 0; d < dim; ++d) oi[d] = sum > 0.f ? round_to(acc[d] / sum, bf16) : 0.f;
    }
  });
  return out;
}

enum class MaskKind { dense, pattern, random };

struct Case {
  const char* name;
  int batch, heads, seqlen, dim;
  bool bf16;
  MaskKind mask;
  const char* pattern = "";  // mask == pattern: text for parse_pattern, on `layout`
  VideoLayout layout = {};
  int block = 128;       // mask == random: mask block
  int block_q = 0;       // query blocks of either mask kind, 0: `block` (random), 128 (pattern)
  double density = 0.3;  // mask == random
  bool per_batch = false;
  int keys = 0;  // S_k of a dense cross-attention; 0: S
};

// Flash parameters for contiguous [B, S, H, D] device tensors.
cuda::FlashParams make_params(const Case& c, const void* q, const void* k, const void* v, void* o, float* lse) {
  cuda::FlashParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.o = o;
  p.lse = lse;
  const int64_t row = int64_t{c.heads} * c.dim, batch = row * c.seqlen, kv_batch = row * (c.keys ? c.keys : c.seqlen);
  p.q_batch_stride = p.o_batch_stride = batch;
  p.k_batch_stride = p.v_batch_stride = kv_batch;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = row;
  p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = c.dim;
  p.batch = c.batch;
  p.heads = c.heads;
  p.seqlen = c.seqlen;
  p.seqlen_k = c.keys;
  p.head_dim = c.dim;
  p.bf16 = c.bf16;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.dim));
  return p;
}

BlockMask mask_of(const Case& c) {
  if (c.mask == MaskKind::pattern) {
    EXPECT_EQ(c.layout.tokens(), c.seqlen) << c.name;
    return build_block_mask(c.layout, parse_pattern(c.pattern), c.per_batch ? c.batch * c.heads : c.heads,
                            c.block_q ? c.block_q : 128);
  }
  return random_mask(c.seqlen, c.per_batch ? c.batch * c.heads : c.heads, c.block_q ? c.block_q : c.block, c.block,
                     c.density, 77);
}

struct DeviceMask {
  std::vector<int32_t> offsets;
  DeviceBuffer row_offsets, key_blocks;
  explicit DeviceMask(const BlockMask& m)
      : row_offsets(m.row_offsets.size() * 4), key_blocks(m.key_blocks.size() * 4) {
    offsets.assign(m.row_offsets.begin(), m.row_offsets.end());
    cudaMemcpy(row_offsets.data, offsets.data(), offsets.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(key_blocks.data, m.key_blocks.data(), m.key_blocks.size() * 4, cudaMemcpyHostToDevice);
  }
  void attach(cuda::FlashParams& p, const BlockMask& m) const {
    p.row_offsets = static_cast<const int32_t*>(row_offsets.data);
    p.key_blocks = static_cast<const int32_t*>(key_blocks.data);
    p.mask_heads = m.heads;
    p.mask_block_q = m.block_q;
    p.mask_block_k = m.block_k;
  }
};

void run_case(const Case& c) {
  SCOPED_TRACE(c.name);
  const int64_t n = int64_t{c.batch} * c.seqlen * c.heads * c.dim;
  const int keys = c.keys ? c.keys : c.seqlen;
  const int64_t n_kv = int64_t{c.batch} * keys * c.heads * c.dim;
  Input q = random_input(c.batch, c.seqlen, c.heads, c.dim, c.bf16, 2.0f, 1);
  Input k = random_input(c.batch, keys, c.heads, c.dim, c.bf16, 2.0f, 2);
  Input v = random_input(c.batch, keys, c.heads, c.dim, c.bf16, 1.0f, 3);

  DeviceBuffer dq(n * 2), dk(n_kv * 2), dv(n_kv * 2), dout(n * 2), dlse(int64_t{c.batch} * c.heads * c.seqlen * 4);
  CUDA_OK(cudaMemcpy(dq.data, q.bits.data(), n * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dk.data, k.bits.data(), n_kv * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dv.data, v.bits.data(), n_kv * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(dout.data, 0xff, n * 2));  // NaN in bf16 and fp16
  CUDA_OK(cudaMemset(dlse.data, 0xff, int64_t{c.batch} * c.heads * c.seqlen * 4));

  cuda::FlashParams p = make_params(c, dq.data, dk.data, dv.data, dout.data, static_cast<float*>(dlse.data));
  BlockMask mask;
  const BlockMask* mask_ptr = nullptr;
  std::unique_ptr<DeviceMask> device_mask;
  if (c.mask != MaskKind::dense) {
    mask = mask_of(c);
    mask_ptr = &mask;
    device_mask = std::make_unique<DeviceMask>(mask);
    device_mask->attach(p, mask);
  }
  ASSERT_TRUE(cuda::flash_fwd_sm90_supports(p));
  cuda::flash_fwd_sm90(p, nullptr);
  CUDA_OK(cudaGetLastError());
  CUDA_OK(cudaDeviceSynchronize());

  std::vector<uint16_t> out_bits(n);
  std::vector<float> lse(int64_t{c.batch} * c.heads * c.seqlen);
  CUDA_OK(cudaMemcpy(out_bits.data(), dout.data, n * 2, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(lse.data(), dlse.data, lse.size() * 4, cudaMemcpyDeviceToHost));

  AttentionOptions options;
  options.scale = p.scale;
  options.mask = mask_ptr;
  Tensor ref_lse;
  Tensor ref = attention_reference(q.values, k.values, v.values, options, &ref_lse);
  Tensor plain = plain_attention(q.values, k.values, v.values, mask_ptr, p.scale, c.bf16);
  const float* r = ref.data<float>();
  const float* pl = plain.data<float>();

  double kernel_max = 0, plain_max = 0, kernel_sq = 0, plain_sq = 0;
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float got = from_half_bits(out_bits[i], c.bf16);
    if (!std::isfinite(got)) {
      if (bad++ < 5) ADD_FAILURE() << "element " << i << " is " << got << " (unwritten or NaN)";
      continue;
    }
    const double e = std::abs(double{got} - r[i]), ep = std::abs(double{pl[i]} - r[i]);
    kernel_max = std::max(kernel_max, e);
    plain_max = std::max(plain_max, ep);
    kernel_sq += e * e;
    plain_sq += ep * ep;
  }
  EXPECT_EQ(bad, 0);
  const double kernel_rms = std::sqrt(kernel_sq / n), plain_rms = std::sqrt(plain_sq / n);
  EXPECT_LE(kernel_max, 2.0 * plain_max + 1e-5) << "plain max error " << plain_max;
  EXPECT_LE(kernel_rms, 2.0 * plain_rms + 1e-6) << "plain rms error " << plain_rms;

  const float* rl = ref_lse.data<float>();
  int64_t lse_bad = 0;
  for (size_t i = 0; i < lse.size(); ++i) {
    const bool ok = std::isinf(rl[i]) ? (std::isinf(lse[i]) && lse[i] < 0)
                                      : std::abs(lse[i] - rl[i]) <= 1e-3f * (1.0f + std::abs(rl[i]));
    if (!ok && lse_bad++ < 5) ADD_FAILURE() << "lse[" << i << "] = " << lse[i] << ", reference " << rl[i];
  }
  EXPECT_EQ(lse_bad, 0);
  std::printf("%-34s max err %.3g (plain %.3g)  rms %.3g (plain %.3g)\n", c.name, kernel_max, plain_max,
              kernel_rms, plain_rms);
}

const VideoLayout kLayout4133{4, 25, 40, 133, TextPosition::first};  // 133 text tokens + 4 x 1000
const VideoLayout kLayout1000{4, 10, 25, 0, TextPosition::none};

TEST(FlashSm90, Dense) {
  if (!have_sm90()) GTEST_SKIP() << "no sm_90 GPU";
  const Case cases[] = {
      {"dense bf16 d128 S1000", 1, 2, 1000, 128, true, MaskKind::dense},
      {"dense fp16 d64 S4133 B2", 2, 2, 4133, 64, false, MaskKind::dense},
      {"dense bf16 d96 S1000 H3", 1, 3, 1000, 96, true, MaskKind::dense},
      {"dense fp16 d128 S100 (< one tile)", 2, 1, 100, 128, false, MaskKind::dense},
      {"dense bf16 d64 S256", 1, 1, 256, 64, true, MaskKind::dense},
      {"dense fp16 d64 S1000 B4 H16 (items > CTAs)", 4, 16, 1000, 64, false, MaskKind::dense},
  };
  for (const Case& c : cases) run_case(c);
}

// Dense cross-attention: more or fewer keys than queries, ragged key tails.
TEST(FlashSm90, CrossAttention) {
  if (!have_sm90()) GTEST_SKIP() << "no sm_90 GPU";
  Case text512{"cross bf16 d128 S1000 S_k 512", 2, 3, 1000, 128, true, MaskKind::dense};
  text512.keys = 512;
  Case text226{"cross fp16 d64 S4133 S_k 226", 1, 4, 4133, 64, false, MaskKind::dense};
  text226.keys = 226;
  Case short_keys{"cross bf16 d96 S300 S_k 77", 2, 2, 300, 96, true, MaskKind::dense};
  short_keys.keys = 77;
  Case more_keys{"cross bf16 d64 S200 S_k 1500", 1, 2, 200, 64, true, MaskKind::dense};
  more_keys.keys = 1500;
  for (const Case& c : {text512, text226, short_keys, more_keys}) run_case(c);
}

TEST(FlashSm90, Sparse) {
  if (!have_sm90()) GTEST_SKIP() << "no sm_90 GPU";
  Case spatial{"spatial:0.3+sink bf16 d64 S4133", 1, 2, 4133, 64, true, MaskKind::pattern, "spatial:0.3+sink",
               kLayout4133};
  Case tile{"tile:1 fp16 d128 S1000", 1, 2, 1000, 128, false, MaskKind::pattern, "tile:1", kLayout1000};
  Case random_bf16{"random 0.3 bf16 d128 S4133 B2 per-batch", 2, 2, 4133, 128, true, MaskKind::random};
  random_bf16.per_batch = true;
  Case random_256{"random 0.4 blocks 256 fp16 d96 S4133", 1, 2, 4133, 96, false, MaskKind::random};
  random_256.block = 256;
  random_256.density = 0.4;
  Case random_sparse{"random 0.05 bf16 d64 S4133 B2", 2, 2, 4133, 64, true, MaskKind::random};
  random_sparse.density = 0.05;
  Case random_many{"random 0.3 bf16 d128 S1000 B4 H16 per-batch", 4, 16, 1000, 128, true, MaskKind::random};
  random_many.per_batch = true;
  // d = 64 runs 192-row work items (three consumer warpgroups), so an item spans two CSR rows of
  // 128-row mask blocks (or part of a 256-row one) and visits the union of their key tiles.
  Case random64_256{"random 0.4 blocks 256 fp16 d64 S4133 B2 per-batch", 2, 3, 4133, 64, false, MaskKind::random};
  random64_256.block = 256;
  random64_256.density = 0.4;
  random64_256.per_batch = true;
  // Query blocks of 192 rows at d = 64: every item one block, one CSR row. Of 320: items span two.
  Case spatial192{"spatial:0.3+sink bf16 d64 S4133 blocks 192x128", 1, 2, 4133, 64, true, MaskKind::pattern,
                  "spatial:0.3+sink", kLayout4133};
  spatial192.block_q = 192;
  Case random64_320{"random 0.3 fp16 d64 S4133 blocks 320x128", 1, 3, 4133, 64, false, MaskKind::random};
  random64_320.block_q = 320;
  for (const Case& c :
       {spatial, tile, random_bf16, random_256, random_sparse, random_many, random64_256, spatial192, random64_320})
    run_case(c);
}

// Which mask blocks the kernel takes: 128-row items (d = 96, 128) need query blocks of whole items,
// multiples of 128; d = 64's 192-row items need each warpgroup's 64 rows in one block and at most two
// blocks an item: multiples of 64 from 128. Key blocks: multiples of the 128-key tile.
TEST(FlashSm90, MaskBlocks) {
  if (!have_sm90()) GTEST_SKIP() << "no sm_90 GPU";
  alignas(16) static uint16_t tensor[8];
  alignas(16) static int32_t csr[2];
  struct Blocks {
    int dim, block_q, block_k;
    bool supported;
  };
  for (const Blocks& b : {Blocks{64, 128, 128, true}, Blocks{64, 192, 128, true}, Blocks{64, 320, 256, true},
                          Blocks{64, 64, 128, false}, Blocks{64, 96, 128, false}, Blocks{64, 192, 192, false},
                          Blocks{128, 256, 128, true}, Blocks{128, 192, 128, false}, Blocks{96, 192, 128, false}}) {
    Case c{"blocks", 1, 1, 1000, b.dim, true, MaskKind::pattern};
    cuda::FlashParams p = make_params(c, tensor, tensor, tensor, tensor, nullptr);
    p.row_offsets = csr;
    p.key_blocks = csr;
    p.mask_heads = 1;
    p.mask_block_q = b.block_q;
    p.mask_block_k = b.block_k;
    EXPECT_EQ(cuda::flash_fwd_sm90_supports(p), b.supported)
        << "d " << b.dim << ", blocks " << b.block_q << "x" << b.block_k;
  }
}

// Small sparse cases, also run under compute-sanitizer (scripts/device/flash_sm90.sh): the d = 64
// items that span two mask rows (rows of different frames, bands a block apart, random rows), a
// ragged last item, empty rows.
TEST(FlashSm90, SparseSmall) {
  if (!have_sm90()) GTEST_SKIP() << "no sm_90 GPU";
  Case tile64{"tile:1 bf16 d64 S1000", 1, 2, 1000, 64, true, MaskKind::pattern, "tile:1", kLayout1000};
  Case spatial64{"spatial:0.4 fp16 d64 S1000", 1, 2, 1000, 64, false, MaskKind::pattern, "spatial:0.4", kLayout1000};
  Case random64{"random 0.3 fp16 d64 S1000 B2 per-batch", 2, 3, 1000, 64, false, MaskKind::random};
  random64.per_batch = true;
  Case random64_tiny{"random 0.5 bf16 d64 S100", 1, 3, 100, 64, true, MaskKind::random};
  random64_tiny.density = 0.5;
  Case spatial64_192{"spatial:0.4 bf16 d64 S1000 blocks 192x128", 1, 2, 1000, 64, true, MaskKind::pattern,
                     "spatial:0.4", kLayout1000};
  spatial64_192.block_q = 192;
  for (const Case& c : {tile64, spatial64, random64, random64_tiny, spatial64_192}) run_case(c);
}

// ---- Timing ---------------------------------------------------------------------------------

float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A number from the environment variable `name` (`fallback` when unset) in [least, 1e6]: any other value
// fails the test, naming the variable.
double env_number(const char* name, double fallback, double least) {
  const char* text = std::getenv(name);
  if (!text) return fallback;
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(value >= least && value <= 1e6)) {
    ADD_FAILURE() << name << "=\"" << text << "\": expected a number from " << least << " to 1e6";
    return fallback;
  }
  return value;
}

TEST(FlashSm90, Timing) {
  const char* flag = std::getenv("VDIT_FLASH_SM90_BENCH");
  if (!flag || std::string(flag) != "1") GTEST_SKIP() << "set VDIT_FLASH_SM90_BENCH=1";
  if (!have_sm90()) GTEST_SKIP() << "no sm_90 GPU";
  struct Shape {
    const char* name;
    VideoLayout layout;
    int heads, dim;
  };
  const Shape shapes[] = {
      {"Wan 1.3B", {21, 30, 52, 0, TextPosition::none}, 12, 128},
      {"CogVideoX 5B", {13, 30, 45, 0, TextPosition::none}, 48, 64},
      {"HunyuanVideo", {33, 45, 80, 0, TextPosition::none}, 24, 128},  // (long: ~0.3 s a dense call)
  };
  // "cross:N": dense cross-attention to the first N keys (a text of N tokens).
  // VDIT_FLASH_SM90_BENCH_PATTERNS="dense,tile:4" replaces the list; "spatial:0.15@192" builds the mask in
  // query blocks of 192 rows (keys 128).
  std::vector<std::string> patterns = {"dense",  "spatial:0.25", "spatial:0.15", "spatial:0.10", "temporal:0.10",
                                       "tile:1", "tile:2",       "random:0.10",  "cross:512"};
  if (const char* list = std::getenv("VDIT_FLASH_SM90_BENCH_PATTERNS")) {
    patterns.clear();
    std::istringstream names(list);
    for (std::string name; std::getline(names, name, ',');)
      if (!name.empty()) patterns.push_back(name);
  }
  // VDIT_FLASH_SM90_BENCH_INPUTS=independent: Q, K and V drawn apart with unit variance, as bench_attention
  // draws them; otherwise one draw in [-2, 2) is Q, K and V (each row's own key then dominates its scores).
  const char* inputs = std::getenv("VDIT_FLASH_SM90_BENCH_INPUTS");
  const bool independent = inputs && std::string(inputs) == "independent";
  if (inputs && !independent)
    ADD_FAILURE() << "VDIT_FLASH_SM90_BENCH_INPUTS=\"" << inputs << "\": expected \"independent\"";
  const float amplitude = independent ? std::sqrt(3.0f) : 2.0f;
  const float warmup_ms = static_cast<float>(env_number("VDIT_FLASH_SM90_BENCH_WARMUP_MS", 300, 0));
  const int runs = static_cast<int>(env_number("VDIT_FLASH_SM90_BENCH_RUNS", 10, 1));
  if (HasFailure()) return;  // (a mistyped setting: nothing timed)
  std::string table = "| shape | S | H | D | mask | density | ms | TFLOP/s dense-eq | effective TFLOP/s |\n"
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const Shape& s : shapes) {
    const int seqlen = static_cast<int>(s.layout.tokens());
    Case c{s.name, 1, s.heads, seqlen, s.dim, true, MaskKind::dense};
    const int64_t n = int64_t{seqlen} * s.heads * s.dim;
    std::vector<uint16_t> host(n);
    Random rng{5};
    DeviceBuffer dq(n * 2), dk(n * 2), dv(n * 2), dout(n * 2);
    for (void* d : {dq.data, dk.data, dv.data}) {
      if (independent || d == dq.data)
        for (auto& x : host) x = f32_to_bf16(rng.uniform() * amplitude);
      CUDA_OK(cudaMemcpy(d, host.data(), n * 2, cudaMemcpyHostToDevice));
    }
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    for (const std::string& name : patterns) {
      const size_t at = name.find('@');
      const std::string pattern_name = name.substr(0, at);
      const int block_q = at == std::string::npos ? 128 : std::stoi(name.substr(at + 1));
      const char* pattern = pattern_name.c_str();
      const char* only = std::getenv("VDIT_FLASH_SM90_BENCH_ONLY");  // "shape mask" substring
      if (only && (std::string(s.name) + " " + name).find(only) == std::string::npos) continue;
      cuda::FlashParams p = make_params(c, dq.data, dk.data, dv.data, dout.data, nullptr);
      BlockMask mask;
      std::unique_ptr<DeviceMask> device_mask;
      double density = 1.0;
      const bool cross = std::string(pattern).rfind("cross:", 0) == 0;
      if (cross) {
        p.seqlen_k = std::stoi(std::string(pattern).substr(6));
      } else if (std::string(pattern) != "dense") {
        mask = std::string(pattern) == "random:0.10"
                   ? random_mask(seqlen, s.heads, block_q, 128, 0.10, 9)
                   : build_block_mask(s.layout, parse_pattern(pattern), s.heads, block_q);
        density = mask.density();
        device_mask = std::make_unique<DeviceMask>(mask);
        device_mask->attach(p, mask);
      }
      std::printf("timing %s %s\n", s.name, name.c_str());  // (instrumented builds print between these)
      std::fflush(stdout);
      // Warm-up, so that the clocks have risen after the host-side mask work (or settled, see the top).
      cudaEventRecord(start);
      for (int i = 0;; ++i) {
        cuda::flash_fwd_sm90(p, nullptr);
        cudaEventRecord(stop);
        cudaEventSynchronize(stop);
        float ms = 0;
        cudaEventElapsedTime(&ms, start, stop);
        if (i >= 3 && ms > warmup_ms) break;
      }
      std::vector<float> times;
      for (int i = 0; i < runs; ++i) {
        cudaEventRecord(start);
        cuda::flash_fwd_sm90(p, nullptr);
        cudaEventRecord(stop);
        cudaEventSynchronize(stop);
        float ms = 0;
        cudaEventElapsedTime(&ms, start, stop);
        times.push_back(ms);
      }
      CUDA_OK(cudaGetLastError());
      const float ms = median(times);
      const double flops = 4.0 * seqlen * double(cross ? p.seqlen_k : seqlen) * s.dim * s.heads;
      char line[256];
      std::snprintf(line, sizeof line, "| %s | %d | %d | %d | %s | %.3f | %.3f | %.0f | %.0f |\n", s.name, seqlen,
                    s.heads, s.dim, name.c_str(), density, ms, flops / ms / 1e9, flops * density / ms / 1e9);
      table += line;
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  std::printf("\n%s", table.c_str());
}

}  // namespace
}  // namespace vdit
