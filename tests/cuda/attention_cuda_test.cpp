// The flash-attention kernels against the CPU reference (attention_reference) on random inputs:
// dense and block-sparse, ragged S, text first/last, head dims 64/96/128, bf16 and f16, per-head
// and per-(batch, head) masks, random CSR masks with empty rows, strided inputs, and dense
// cross-attention (K/V of another length than Q) on every kernel. The f32
// kernel on the same kinds of cases, plus mask blocks of any size and unaligned strided operands.
//
// Error rule (FlashAttention's): the kernel's max error against the f32 reference must stay within
// 2x the max error of a plain same-precision implementation (inputs in bf16/f16, f32 scores and
// softmax, P rounded to bf16/f16 before P V, f32 accumulation, output rounded), plus a tiny floor.
// For f32 the oracle is the exact attention in float64 and the plain same-precision implementation
// the CPU reference (f32 accumulation): the f32 kernel must stay within 2x its error plus 1e-6.
// Outputs are poisoned (NaN) before each run, so an element the kernel skips fails the test.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attention/attention_cuda.h"
#include "core/half.h"
#include "core/parallel.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double uniform01(uint64_t& state) { return static_cast<double>(splitmix(state) >> 11) * 0x1p-53; }

// Uniform in [-sqrt(3), sqrt(3)) * scale (unit variance), rounded to `dtype`; never all zero.
Tensor random_input(const Shape& shape, DType dtype, uint64_t seed, float scale) {
  Tensor t = Tensor::empty(shape, DType::f32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    p[i] = scale * static_cast<float>((2.0 * uniform01(seed) - 1.0) * std::sqrt(3.0));
  return t.to(dtype);
}

float round_to(DType dtype, float x) {
  return dtype == DType::bf16 ? bf16_to_f32(f32_to_bf16(x)) : f16_to_f32(f32_to_f16(x));
}

// A random CSR mask: each row empty with probability `empty`, else each key block kept with
// probability `density` (at least one).
BlockMask random_mask(int64_t tokens, int slots, int block, double density, double empty, uint64_t seed) {
  BlockMask mask;
  mask.tokens = tokens;
  mask.block_q = mask.block_k = block;
  mask.heads = slots;
  mask.row_offsets.push_back(0);
  for (int64_t row = 0; row < slots * mask.q_blocks(); ++row) {
    if (uniform01(seed) >= empty) {
      const size_t before = mask.key_blocks.size();
      for (int32_t kb = 0; kb < mask.k_blocks(); ++kb)
        if (uniform01(seed) < density) mask.key_blocks.push_back(kb);
      if (mask.key_blocks.size() == before)
        mask.key_blocks.push_back(static_cast<int32_t>(splitmix(seed) % mask.k_blocks()));
    }
    mask.row_offsets.push_back(static_cast<int64_t>(mask.key_blocks.size()));
  }
  mask.validate();
  return mask;
}

// The keys query row i of (batch item b, head h) attends: those of its mask row's key blocks below
// S_k, or all S_k without a mask.
void row_keys(const BlockMask* mask, int64_t H, int64_t S_k, int64_t b, int64_t h, int64_t i,
              std::vector<int64_t>* keys) {
  keys->clear();
  if (!mask) {
    for (int64_t j = 0; j < S_k; ++j) keys->push_back(j);
    return;
  }
  const int slot = static_cast<int>(mask->heads == H ? h : b * H + h);
  for (int32_t kb : mask->row(slot, i / mask->block_q)) {
    const int64_t first = int64_t{kb} * mask->block_k;
    for (int64_t j = first; j < std::min<int64_t>(S_k, first + mask->block_k); ++j) keys->push_back(j);
  }
}

// The plain same-precision attention (see the file comment), output rounded to `dtype`, f32.
// K and V may have another S (S_k) than Q when there is no mask.
Tensor plain_attention(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask* mask, float scale) {
  const int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3), S_k = k.size(1);
  const DType dtype = q.dtype();
  const Tensor qf = q.to(DType::f32).contiguous(), kf = k.to(DType::f32).contiguous(),
               vf = v.to(DType::f32).contiguous();
  Tensor out = Tensor::empty({B, S, H, D}, DType::f32);
  const float *qp = qf.data<float>(), *kp = kf.data<float>(), *vp = vf.data<float>();
  float* op = out.data<float>();
  parallel_for(B * H * S, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> keys;
    std::vector<float> scores, acc(D);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / (H * S), h = item / S % H, i = item % S;
      row_keys(mask, H, S_k, b, h, i, &keys);
      float* o = op + ((b * S + i) * H + h) * D;
      if (keys.empty()) {
        std::fill(o, o + D, 0.0f);
        continue;
      }
      const float* qi = qp + ((b * S + i) * H + h) * D;
      scores.resize(keys.size());
      float mx = -INFINITY;
      for (size_t n = 0; n < keys.size(); ++n) {
        const float* kj = kp + ((b * S_k + keys[n]) * H + h) * D;
        float s = 0.0f;
        for (int64_t d = 0; d < D; ++d) s += qi[d] * kj[d];
        scores[n] = s * scale;
        mx = std::max(mx, scores[n]);
      }
      float sum = 0.0f;
      for (float& s : scores) sum += (s = std::exp(s - mx));
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (size_t n = 0; n < keys.size(); ++n) {
        const float p = round_to(dtype, scores[n] / sum);
        const float* vj = vp + ((b * S_k + keys[n]) * H + h) * D;
        for (int64_t d = 0; d < D; ++d) acc[d] += p * vj[d];
      }
      for (int64_t d = 0; d < D; ++d) o[d] = round_to(dtype, acc[d]);
    }
  });
  return out;
}

double max_abs_diff(const float* a, const float* b, int64_t n) {
  double m = 0.0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

struct Case {
  std::string name;
  int64_t batch = 1, heads = 2, dim = 64;
  DType dtype = DType::bf16;
  VideoLayout layout;
  std::vector<Pattern> patterns;  // empty: dense or random; one: shared by the heads; else one per slot
  double random_density = 0.0;    // > 0: a random per-slot CSR mask
  int block = 128;                // mask blocks (block x block tokens)
  float q_scale = 1.0f;
  bool packed_qkv = false;        // Q, K, V as strided views of one [B, S, 3, H, D] tensor
  bool unaligned = false;         // Q, K, V, O as views of [.., D + 1] rows, from element 1 (f32 only)
  int64_t keys = 0;               // > 0: K and V have this many tokens (dense cross-attention)
};

// GoogleTest prints a parameter in test listings; the name says everything, the bytes nothing.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

VideoLayout grid(int64_t frames, int64_t height, int64_t width, int64_t text = 0,
                 TextPosition position = TextPosition::none) {
  VideoLayout l;
  l.frames = frames;
  l.height = height;
  l.width = width;
  l.text = text;
  l.text_position = position;
  return l;
}

// The case's mask, false when it has none: random per slot, or from the builders, in blocks of
// c.block tokens.
bool case_mask(const Case& c, uint64_t seed, BlockMask* mask) {
  const int heads = static_cast<int>(c.heads);
  if (c.random_density > 0.0) {
    *mask = random_mask(c.layout.tokens(), static_cast<int>(c.batch) * heads, c.block, c.random_density, 0.15, seed);
  } else if (c.patterns.size() == 1) {
    *mask = build_block_mask(c.layout, c.patterns[0], heads, c.block, c.block);
  } else if (!c.patterns.empty()) {
    EXPECT_EQ(static_cast<int64_t>(c.patterns.size()), c.batch * c.heads);
    *mask = build_block_mask(c.layout, c.patterns, c.block, c.block);
  } else {
    return false;
  }
  return true;
}

// The layouts of the cases: S = 50, 128 (one tile), 1000, 1000 + 40 text tokens last, 4133 with 10
// text tokens first, 777.
struct Layouts {
  VideoLayout s50 = grid(2, 5, 5), s128 = grid(2, 8, 8), s1000 = grid(10, 10, 10),
              s1000_text_last = grid(5, 12, 16, 40, TextPosition::last),
              s4133_text_first = grid(7, 19, 31, 10, TextPosition::first), s777 = grid(7, 3, 37);
};

using CaseSetter = std::function<void(Case&)>;

// Appends to `c` a case named `name` that starts from Case{} of `dtype` and sets what differs.
std::function<void(const char*, const CaseSetter&)> case_adder(std::vector<Case>& c, DType dtype) {
  return [&c, dtype](const char* name, const CaseSetter& set) {
    Case x;
    x.name = name;
    x.dtype = dtype;
    set(x);
    c.push_back(std::move(x));
  };
}

std::vector<Case> cases() {
  const auto [s50, s128, s1000, s1000_text_last, s4133_text_first, s777] = Layouts{};
  std::vector<Case> c;
  const auto add = case_adder(c, DType::bf16);
  // Dense, ragged and sub-tile S.
  add("small_dense_s50_d64_bf16", [&](Case& x) { x.heads = 2; x.dim = 64; x.layout = s50; });
  add("small_dense_s128_d96_f16", [&](Case& x) {
    x.batch = 2; x.heads = 1; x.dim = 96; x.dtype = DType::f16; x.layout = s128;
  });
  add("small_dense_s50_d128_f16", [&](Case& x) { x.heads = 3; x.dim = 128; x.dtype = DType::f16; x.layout = s50; });
  add("dense_s1000_d96_f16", [&](Case& x) {
    x.batch = 2; x.heads = 3; x.dim = 96; x.dtype = DType::f16; x.layout = s1000;
  });
  add("dense_s4133_d128_bf16", [&](Case& x) { x.heads = 2; x.dim = 128; x.layout = s4133_text_first; });
  add("dense_s4133_d64_f16", [&](Case& x) {
    x.heads = 2; x.dim = 64; x.dtype = DType::f16; x.layout = s4133_text_first;
  });
  add("dense_s777_d128_f16_peaky", [&](Case& x) {
    x.batch = 2; x.heads = 1; x.dim = 128; x.dtype = DType::f16; x.layout = s777; x.q_scale = 4.0f;
  });
  add("dense_s1000_d64_bf16_packed", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 64; x.layout = s1000; x.packed_qkv = true;
  });
  // Masks from the builders (shared by the batch), text first and last.
  add("tile1_s1000_d128_bf16", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 128; x.layout = s1000; x.patterns = {Pattern::tile(1)};
  });
  add("spatial25_s4133_textfirst_d64_bf16", [&](Case& x) {
    x.heads = 2; x.dim = 64; x.layout = s4133_text_first; x.patterns = {Pattern::spatial(0.25)};
  });
  add("temporal15_s1000_textlast_d96_f16", [&](Case& x) {
    x.heads = 2; x.dim = 96; x.dtype = DType::f16; x.layout = s1000_text_last; x.patterns = {Pattern::temporal(0.15)};
  });
  add("spatial10sink_s1000_textlast_d128_f16", [&](Case& x) {
    x.heads = 1; x.dim = 128; x.dtype = DType::f16; x.layout = s1000_text_last;
    x.patterns = {Pattern::spatial(0.10, true)};
  });
  // A mixed pattern per (batch item, head): B*H slots.
  add("mixed_slots_s4133_d128_f16", [&](Case& x) {
    x.batch = 2; x.heads = 3; x.dim = 128; x.dtype = DType::f16; x.layout = s4133_text_first;
    x.patterns = {Pattern::dense(),      Pattern::tile(0), Pattern::spatial(0.3),
                  Pattern::temporal(0.2), Pattern::tile(2), Pattern::spatial(0.1, true)};
  });
  add("mixed_slots_s1000_d96_bf16", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 96; x.layout = s1000_text_last;
    x.patterns = {Pattern::spatial(0.25), Pattern::temporal(0.25), Pattern::temporal(0.15), Pattern::tile(1)};
  });
  // Random CSR masks with empty rows, per slot, blocks of 128 and 256.
  add("small_random_s1000_d64_bf16", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 64; x.layout = s1000; x.random_density = 0.3;
  });
  add("random_s1000_d96_bf16_sparse", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 96; x.layout = s1000; x.random_density = 0.05;
  });
  add("random_s4133_d128_f16", [&](Case& x) {
    x.batch = 2; x.heads = 1; x.dim = 128; x.dtype = DType::f16; x.layout = s4133_text_first; x.random_density = 0.2;
  });
  // more mask rows than one round of the row-order kernel
  add("random_1056rows_s4133_d64_bf16", [&](Case& x) {
    x.batch = 2; x.heads = 16; x.dim = 64; x.layout = s4133_text_first; x.random_density = 0.08;
  });
  add("random_block256_s1000_d128_bf16", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 128; x.layout = s1000; x.random_density = 0.4; x.block = 256;
  });
  add("small_random_block256_s777_d64_f16", [&](Case& x) {
    x.batch = 1; x.heads = 2; x.dim = 64; x.dtype = DType::f16; x.layout = s777; x.random_density = 0.5;
    x.block = 256;
  });
  // Dense cross-attention: fewer keys than queries (Wan's 512 text tokens; 77, a ragged last key
  // tile) and more (300 keys for 50 queries, one ragged query tile).
  add("cross_s4133_k512_d128_bf16", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 128; x.layout = s4133_text_first; x.keys = 512;
  });
  add("cross_s4133_k512_d64_f16", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 64; x.dtype = DType::f16; x.layout = s4133_text_first; x.keys = 512;
  });
  add("cross_s1000_k77_d64_bf16", [&](Case& x) {
    x.batch = 2; x.heads = 3; x.dim = 64; x.layout = s1000; x.keys = 77;
  });
  add("cross_s1000_k77_d96_f16", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 96; x.dtype = DType::f16; x.layout = s1000; x.keys = 77;
  });
  add("cross_s1000_k77_d128_bf16_peaky", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 128; x.layout = s1000; x.keys = 77; x.q_scale = 4.0f;
  });
  add("small_cross_s50_k300_d96_bf16", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 96; x.layout = s50; x.keys = 300;
  });
  add("small_cross_s50_k300_d128_f16", [&](Case& x) {
    x.batch = 2; x.heads = 1; x.dim = 128; x.dtype = DType::f16; x.layout = s50; x.keys = 300;
  });
  add("small_cross_s50_k300_d64_bf16", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 64; x.layout = s50; x.keys = 300;
  });
  return c;
}

// Every kernel that can run here; VDIT_TEST_FLASH_KERNELS=sm80 (or sm90) narrows the list, so that
// one kernel's crash cannot hide the other's results.
std::vector<FlashKernel> kernels_to_test() {
  const char* only = std::getenv("VDIT_TEST_FLASH_KERNELS");
  std::vector<FlashKernel> kernels;
  for (FlashKernel kernel : {FlashKernel::sm80, FlashKernel::sm90})
    if (flash_kernel_available(kernel, Device::cuda()) &&
        (only == nullptr || std::string(only).find(flash_kernel_name(kernel)) != std::string::npos))
      kernels.push_back(kernel);
  return kernels;
}

class AttentionCuda : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionCuda, MatchesReference) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Case& c = GetParam();
  const int64_t B = c.batch, S = c.layout.tokens(), H = c.heads, D = c.dim;
  const int64_t S_k = c.keys > 0 ? c.keys : S;
  const uint64_t seed = std::hash<std::string>{}(c.name);

  Tensor q, k, v;
  Tensor packed;
  if (c.packed_qkv) {
    packed = random_input({B, S, 3, H, D}, c.dtype, seed, 1.0f);
    q = packed.select(2, 0);
    k = packed.select(2, 1);
    v = packed.select(2, 2);
  } else {
    q = random_input({B, S, H, D}, c.dtype, seed + 1, c.q_scale);
    k = random_input({B, S_k, H, D}, c.dtype, seed + 2, 1.0f);
    v = random_input({B, S_k, H, D}, c.dtype, seed + 3, 1.0f);
  }

  BlockMask mask;
  const bool masked = case_mask(c, seed + 4, &mask);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  AttentionOptions options;
  options.scale = scale;
  options.mask = masked ? &mask : nullptr;

  Tensor ref_lse;
  const Tensor ref = attention_reference(q, k, v, options, &ref_lse);
  const Tensor plain = plain_attention(q, k, v, options.mask, scale);
  const int64_t n = B * S * H * D;
  const double plain_err = max_abs_diff(plain.data<float>(), ref.data<float>(), n);

  const Device gpu = Device::cuda();
  Tensor qd, kd, vd;
  if (c.packed_qkv) {
    const Tensor packed_d = packed.to(gpu);
    qd = packed_d.select(2, 0);
    kd = packed_d.select(2, 1);
    vd = packed_d.select(2, 2);
  } else {
    qd = q.to(gpu);
    kd = k.to(gpu);
    vd = v.to(gpu);
  }
  GpuBlockMask gpu_mask;
  if (masked) gpu_mask = upload_block_mask(mask, gpu);

  for (FlashKernel kernel : kernels_to_test()) {
    SCOPED_TRACE(flash_kernel_name(kernel));
    Tensor out = Tensor::empty({B, S, H, D}, c.dtype, gpu);
    Tensor lse = Tensor::empty({B, H, S}, DType::f32, gpu);
    ASSERT_EQ(cudaMemset(out.raw_data(), 0xff, out.nbytes()), cudaSuccess);  // NaN in bf16, f16, f32
    ASSERT_EQ(cudaMemset(lse.raw_data(), 0xff, lse.nbytes()), cudaSuccess);
    const FlashKernel ran =
        attention_cuda(qd, kd, vd, masked ? &gpu_mask : nullptr, 0.0f, out, &lse, nullptr, kernel);
    EXPECT_EQ(ran, kernel);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

    const Tensor got = out.to(Device::cpu()).to(DType::f32);
    const Tensor got_lse = lse.to(Device::cpu());
    const float* g = got.data<float>();
    int64_t unwritten = 0;
    for (int64_t i = 0; i < n; ++i) unwritten += !std::isfinite(g[i]);
    ASSERT_EQ(unwritten, 0) << "output elements not written (or not finite), of " << n;
    const double err = max_abs_diff(g, ref.data<float>(), n);
    EXPECT_LE(err, 2.0 * plain_err + 1e-5) << "plain same-precision error " << plain_err;

    const float* gl = got_lse.data<float>();
    const float* rl = ref_lse.data<float>();
    int64_t lse_bad = 0, empty_rows = 0;
    double lse_err = 0.0;
    for (int64_t i = 0; i < B * H * S; ++i) {
      if (std::isinf(rl[i])) {
        ++empty_rows;
        lse_bad += !(std::isinf(gl[i]) && gl[i] < 0);
        continue;
      }
      const double e = std::fabs(static_cast<double>(gl[i]) - rl[i]);
      lse_err = std::max(lse_err, std::isfinite(e) ? e : INFINITY);
      lse_bad += !(e <= 1e-3 + 1e-4 * std::fabs(rl[i]));
    }
    EXPECT_EQ(lse_bad, 0) << "LSE mismatches; max error " << lse_err << ", empty rows " << empty_rows;
    std::printf("[ %-40s %s ] S=%lld S_k=%lld err %.3g (plain %.3g, ratio %.2f) lse err %.2g, empty rows %lld, "
                "density %.3f\n",
                c.name.c_str(), flash_kernel_name(ran), static_cast<long long>(S), static_cast<long long>(S_k), err,
                plain_err,
                plain_err > 0 ? err / plain_err : 0.0, lse_err, static_cast<long long>(empty_rows),
                masked ? mask.density() : 1.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionCuda, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// ---- The f32 kernel ----------------------------------------------------------------------------

struct Exact {
  std::vector<double> out;  // [B, S, H, D]
  std::vector<double> lse;  // [B, H, S], -inf for a row with no key
};

// Attention in float64 of f32 inputs, over the keys row_keys lists.
Exact exact_attention(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask* mask, double scale) {
  const int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3), S_k = k.size(1);
  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const float *qp = qc.data<float>(), *kp = kc.data<float>(), *vp = vc.data<float>();
  Exact e;
  e.out.assign(B * S * H * D, 0.0);
  e.lse.assign(B * H * S, -INFINITY);
  parallel_for(B * H * S, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> keys;
    std::vector<double> scores, acc(D);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / (H * S), h = item / S % H, i = item % S;
      row_keys(mask, H, S_k, b, h, i, &keys);
      if (keys.empty()) continue;
      const float* qi = qp + ((b * S + i) * H + h) * D;
      scores.resize(keys.size());
      double mx = -INFINITY;
      for (size_t n = 0; n < keys.size(); ++n) {
        const float* kj = kp + ((b * S_k + keys[n]) * H + h) * D;
        double s = 0.0;
        for (int64_t d = 0; d < D; ++d) s += static_cast<double>(qi[d]) * kj[d];
        scores[n] = s * scale;
        mx = std::max(mx, scores[n]);
      }
      double sum = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (size_t n = 0; n < keys.size(); ++n) {
        const double p = std::exp(scores[n] - mx);
        sum += p;
        const float* vj = vp + ((b * S_k + keys[n]) * H + h) * D;
        for (int64_t d = 0; d < D; ++d) acc[d] += p * vj[d];
      }
      double* o = e.out.data() + ((b * S + i) * H + h) * D;
      for (int64_t d = 0; d < D; ++d) o[d] = acc[d] / sum;
      e.lse[(b * H + h) * S + i] = mx + std::log(sum);
    }
  });
  return e;
}

std::vector<Case> f32_cases() {
  const auto [s50, s128, s1000, s1000_text_last, s4133_text_first, s777] = Layouts{};
  std::vector<Case> c;
  const auto add = case_adder(c, DType::f32);
  // Dense: sub-tile, ragged and text-first S, every head dim, strided and unaligned operands.
  add("small_dense_s50_d64", [&](Case& x) { x.heads = 2; x.dim = 64; x.layout = s50; });
  add("small_dense_s128_d96", [&](Case& x) { x.batch = 2; x.heads = 1; x.dim = 96; x.layout = s128; });
  add("dense_s1000_d128", [&](Case& x) { x.batch = 2; x.heads = 3; x.dim = 128; x.layout = s1000; });
  add("dense_s4133_textfirst_d64", [&](Case& x) { x.heads = 2; x.dim = 64; x.layout = s4133_text_first; });
  add("dense_s777_d96_peaky", [&](Case& x) {
    x.batch = 2; x.heads = 1; x.dim = 96; x.layout = s777; x.q_scale = 4.0f;
  });
  add("dense_s1000_d128_packed", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 128; x.layout = s1000; x.packed_qkv = true;
  });
  add("dense_s777_d96_unaligned", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 96; x.layout = s777; x.unaligned = true;
  });
  // Masks from the builders: shared by the batch, per (batch item, head), text first and last.
  add("tile1_s1000_d128", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 128; x.layout = s1000; x.patterns = {Pattern::tile(1)};
  });
  add("spatial25_s4133_textfirst_d64", [&](Case& x) {
    x.heads = 2; x.dim = 64; x.layout = s4133_text_first; x.patterns = {Pattern::spatial(0.25)};
  });
  add("temporal15_s1000_textlast_d96", [&](Case& x) {
    x.heads = 2; x.dim = 96; x.layout = s1000_text_last; x.patterns = {Pattern::temporal(0.15)};
  });
  add("spatial30_block16_s1000_textlast_d64", [&](Case& x) {
    x.batch = 2; x.heads = 1; x.dim = 64; x.layout = s1000_text_last; x.patterns = {Pattern::spatial(0.3)};
    x.block = 16;
  });
  add("mixed_slots_s4133_d128", [&](Case& x) {
    x.batch = 2; x.heads = 3; x.dim = 128; x.layout = s4133_text_first;
    x.patterns = {Pattern::dense(),      Pattern::tile(0), Pattern::spatial(0.3),
                  Pattern::temporal(0.2), Pattern::tile(2), Pattern::spatial(0.1, true)};
  });
  // Random CSR masks with empty rows, per slot; blocks of 128, 256 and sizes no tile divides.
  add("random_s1000_d96_sparse", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 96; x.layout = s1000; x.random_density = 0.05;
  });
  add("random_s4133_d128", [&](Case& x) {
    x.batch = 2; x.heads = 1; x.dim = 128; x.layout = s4133_text_first; x.random_density = 0.2;
  });
  add("random_block64_s1000_d64", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 64; x.layout = s1000; x.random_density = 0.3; x.block = 64;
  });
  add("random_block48_s777_d128", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 128; x.layout = s777; x.random_density = 0.4; x.block = 48;
  });
  add("random_block200_s1000_d96", [&](Case& x) {
    x.batch = 1; x.heads = 3; x.dim = 96; x.layout = s1000; x.random_density = 0.3; x.block = 200;
  });
  add("random_block256_s1000_d64_unaligned", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 64; x.layout = s1000; x.random_density = 0.4; x.block = 256;
    x.unaligned = true;
  });
  // Dense cross-attention: fewer keys than queries (ragged key tiles) and more.
  add("cross_s4133_k512_d128", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 128; x.layout = s4133_text_first; x.keys = 512;
  });
  add("cross_s1000_k77_d64", [&](Case& x) { x.batch = 2; x.heads = 3; x.dim = 64; x.layout = s1000; x.keys = 77; });
  add("cross_s1000_k77_d128_peaky", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 128; x.layout = s1000; x.keys = 77; x.q_scale = 4.0f;
  });
  add("small_cross_s50_k300_d96_unaligned", [&](Case& x) {
    x.batch = 2; x.heads = 2; x.dim = 96; x.layout = s50; x.keys = 300; x.unaligned = true;
  });
  return c;
}

class AttentionCudaF32 : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionCudaF32, MatchesFloat64) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Case& c = GetParam();
  const int64_t B = c.batch, S = c.layout.tokens(), H = c.heads, D = c.dim;
  const int64_t S_k = c.keys > 0 ? c.keys : S;
  const uint64_t seed = std::hash<std::string>{}(c.name);
  const Device gpu = Device::cuda();

  // Host inputs and their GPU copies as the case lays them out; the output in rows of `row`
  // floats, from element `first` on (unaligned: rows of D + 1 from element 1).
  const int64_t row = c.unaligned ? D + 1 : D, first = c.unaligned ? 1 : 0;
  auto view = [&](const Tensor& t) { return t.slice(3, first, first + D); };
  Tensor q, k, v, qd, kd, vd;
  if (c.packed_qkv) {
    const Tensor packed = random_input({B, S, 3, H, D}, DType::f32, seed, 1.0f);
    const Tensor packed_d = packed.to(gpu);
    q = packed.select(2, 0);
    k = packed.select(2, 1);
    v = packed.select(2, 2);
    qd = packed_d.select(2, 0);
    kd = packed_d.select(2, 1);
    vd = packed_d.select(2, 2);
  } else {
    const Tensor qb = random_input({B, S, H, row}, DType::f32, seed + 1, c.q_scale);
    const Tensor kb = random_input({B, S_k, H, row}, DType::f32, seed + 2, 1.0f);
    const Tensor vb = random_input({B, S_k, H, row}, DType::f32, seed + 3, 1.0f);
    q = view(qb);
    k = view(kb);
    v = view(vb);
    qd = view(qb.to(gpu));
    kd = view(kb.to(gpu));
    vd = view(vb.to(gpu));
  }
  const Tensor out_rows = Tensor::empty({B, S, H, row}, DType::f32, gpu);
  const Tensor out = view(out_rows);

  BlockMask mask;
  const bool masked = case_mask(c, seed + 4, &mask);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  AttentionOptions options;
  options.scale = scale;
  options.mask = masked ? &mask : nullptr;
  const Exact exact = exact_attention(q, k, v, options.mask, scale);
  const Tensor ref = attention_reference(q, k, v, options);
  const int64_t n = B * S * H * D;
  double ref_err = 0.0;
  for (int64_t i = 0; i < n; ++i) ref_err = std::max(ref_err, std::fabs(ref.data<float>()[i] - exact.out[i]));

  GpuBlockMask gpu_mask;
  if (masked) gpu_mask = upload_block_mask(mask, gpu);
  Tensor lse = Tensor::empty({B, H, S}, DType::f32, gpu);
  ASSERT_EQ(cudaMemset(lse.raw_data(), 0xff, lse.nbytes()), cudaSuccess);
  ASSERT_EQ(cudaMemset(out_rows.raw_data(), 0xff, out_rows.nbytes()), cudaSuccess);  // NaN
  auto run = [&] { return attention_cuda(qd, kd, vd, masked ? &gpu_mask : nullptr, 0.0f, out, &lse, nullptr); };
  EXPECT_EQ(run(), FlashKernel::f32);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  const Tensor got_rows = out_rows.to(Device::cpu());
  int64_t unwritten = 0, gaps_written = 0;
  double err = 0.0, diff2 = 0.0, norm2 = 0.0;
  for (int64_t r = 0; r < n / D; ++r) {
    const float* g = got_rows.data<float>() + r * row;
    gaps_written += first > 0 && !std::isnan(g[0]);
    for (int64_t d = 0; d < D; ++d) {
      const double want = exact.out[r * D + d];
      unwritten += !std::isfinite(g[first + d]);
      err = std::max(err, std::fabs(g[first + d] - want));
      diff2 += (g[first + d] - want) * (g[first + d] - want);
      norm2 += want * want;
    }
  }
  ASSERT_EQ(unwritten, 0) << "output elements not written (or not finite), of " << n;
  EXPECT_EQ(gaps_written, 0) << "elements outside the output view written";
  EXPECT_LE(err, 2.0 * ref_err + 1e-6) << "CPU f32 reference error " << ref_err;

  const Tensor got_lse = lse.to(Device::cpu());
  const float* gl = got_lse.data<float>();
  int64_t lse_bad = 0, empty_rows = 0;
  double lse_err = 0.0;
  for (int64_t i = 0; i < B * H * S; ++i) {
    const double want = exact.lse[i];
    if (std::isinf(want)) {
      ++empty_rows;
      lse_bad += !(std::isinf(gl[i]) && gl[i] < 0);
      continue;
    }
    const double e = std::fabs(gl[i] - want);
    lse_err = std::max(lse_err, std::isfinite(e) ? e : INFINITY);
    lse_bad += !(e <= 1e-5);
  }
  EXPECT_EQ(lse_bad, 0) << "LSE mismatches; max error " << lse_err << ", empty rows " << empty_rows;

  // Time of a warm call, for the record (not a benchmark: small shapes, one run).
  cudaEvent_t start, stop;
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);
  cudaEventRecord(start);
  run();
  cudaEventRecord(stop);
  ASSERT_EQ(cudaEventSynchronize(stop), cudaSuccess);
  float ms = 0.0f;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  const double density = masked ? mask.density() : 1.0;
  const double tflops = 4.0 * B * H * S * S_k * D * density / (ms * 1e-3) / 1e12;
  std::printf("[ %-40s f32 ] S=%lld S_k=%lld max err %.3g (CPU f32 %.3g), rel L2 %.3g, lse err %.2g, "
              "empty rows %lld, density %.3f, %.3f ms (%.2f TFLOP/s)\n",
              c.name.c_str(), static_cast<long long>(S), static_cast<long long>(S_k), err, ref_err,
              std::sqrt(diff2 / norm2), lse_err, static_cast<long long>(empty_rows), density, ms, tflops);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionCudaF32, ::testing::ValuesIn(f32_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// The public entry point: CPU tensors run the reference, CUDA tensors a kernel, with a host mask
// uploaded per call or a GpuBlockMask.
TEST(AttentionCudaApi, PublicEntryPoints) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout = grid(3, 9, 11);
  const int64_t S = layout.tokens(), H = 2, D = 64;
  const Tensor q = random_input({1, S, H, D}, DType::bf16, 11, 1.0f);
  const Tensor k = random_input({1, S, H, D}, DType::bf16, 12, 1.0f);
  const Tensor v = random_input({1, S, H, D}, DType::bf16, 13, 1.0f);
  const BlockMask mask = build_block_mask(layout, Pattern::tile(0), static_cast<int>(H));
  AttentionOptions options;
  options.mask = &mask;

  const Tensor cpu = attention(q, k, v, options);
  EXPECT_EQ(cpu.dtype(), DType::f32);
  EXPECT_TRUE(cpu.device().is_cpu());

  const Tensor qd = q.to(Device::cuda()), kd = k.to(Device::cuda()), vd = v.to(Device::cuda());
  Tensor lse;
  const Tensor a = attention(qd, kd, vd, options, &lse).to(Device::cpu()).to(DType::f32);
  const Tensor b = attention(qd, kd, vd, upload_block_mask(mask)).to(Device::cpu()).to(DType::f32);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(lse.shape(), Shape({1, H, S}));
  EXPECT_EQ(std::memcmp(a.data<float>(), b.data<float>(), a.nbytes()), 0);
  EXPECT_LT(max_abs_diff(a.data<float>(), cpu.data<float>(), a.numel()), 0.02);

  EXPECT_THROW(attention(qd, kd, vd.to(Device::cpu()), options), Error);  // mixed devices
  const Tensor q32 = random_input({1, S, H, 32}, DType::bf16, 14, 1.0f).to(Device::cuda());
  EXPECT_THROW(attention(q32, q32, q32), Error);  // head dim 32
}

// Error text names both shapes; `call` must throw.
void expect_error_naming(const std::function<void()>& call, const std::string& a, const std::string& b) {
  try {
    call();
    ADD_FAILURE() << "expected an error naming " << a << " and " << b;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(a), std::string::npos) << what;
    EXPECT_NE(what.find(b), std::string::npos) << what;
  }
}

// K/V of another length than Q: dense through the public entry point (sm90 on a 9.0 GPU, else
// sm80); a mask, K/V of another batch, head count or head dim, or V of another shape than K are
// refused.
TEST(AttentionCudaApi, CrossAttentionShapes) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout = grid(3, 10, 10);
  const int64_t S = layout.tokens(), S_k = 77, H = 2, D = 64;
  const Tensor q = random_input({2, S, H, D}, DType::bf16, 21, 1.0f);
  const Tensor k = random_input({2, S_k, H, D}, DType::bf16, 22, 1.0f);
  const Tensor v = random_input({2, S_k, H, D}, DType::bf16, 23, 1.0f);
  const Tensor cpu = attention(q, k, v);
  const Tensor qd = q.to(Device::cuda()), kd = k.to(Device::cuda()), vd = v.to(Device::cuda());
  Tensor lse;
  const Tensor out = attention(qd, kd, vd, {}, &lse);
  EXPECT_EQ(out.shape(), q.shape());
  EXPECT_EQ(lse.shape(), Shape({2, H, S}));
  const Tensor got = out.to(Device::cpu()).to(DType::f32);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_LT(max_abs_diff(got.data<float>(), cpu.data<float>(), got.numel()), 0.02);

  const BlockMask mask = build_block_mask(layout, Pattern::tile(0), static_cast<int>(H));
  AttentionOptions masked;
  masked.mask = &mask;
  const std::string q_shape = q.shape().to_string(), k_shape = k.shape().to_string();
  expect_error_naming([&] { attention(qd, kd, vd, masked); }, q_shape, k_shape);
  expect_error_naming([&] { attention(qd, kd, vd, upload_block_mask(mask)); }, q_shape, k_shape);
  const Tensor k_heads = random_input({2, S_k, H + 1, D}, DType::bf16, 24, 1.0f).to(Device::cuda());
  expect_error_naming([&] { attention(qd, k_heads, k_heads); }, q_shape, k_heads.shape().to_string());
  const Tensor k_batch = random_input({1, S_k, H, D}, DType::bf16, 25, 1.0f).to(Device::cuda());
  expect_error_naming([&] { attention(qd, k_batch, k_batch); }, q_shape, k_batch.shape().to_string());
  const Tensor v_longer = random_input({2, S_k + 1, H, D}, DType::bf16, 26, 1.0f).to(Device::cuda());
  expect_error_naming([&] { attention(qd, kd, v_longer); }, k_shape, v_longer.shape().to_string());
  if (flash_kernel_available(FlashKernel::sm90, Device::cuda())) {
    const Tensor o = Tensor::empty(q.shape(), DType::bf16, Device::cuda());
    EXPECT_EQ(attention_cuda(qd, kd, vd, nullptr, 0.0f, o, nullptr, nullptr), FlashKernel::sm90);
  }
}

// f32 CUDA tensors run the f32 kernel through every entry point, with mask blocks the flash
// kernels do not take; the flash kernels refuse f32 and the f32 kernel refuses bf16, by name.
TEST(AttentionCudaApi, F32TensorsRunTheF32Kernel) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout = grid(3, 9, 11);
  const int64_t S = layout.tokens(), H = 2, D = 96;
  const Tensor q = random_input({1, S, H, D}, DType::f32, 31, 1.0f);
  const Tensor k = random_input({1, S, H, D}, DType::f32, 32, 1.0f);
  const Tensor v = random_input({1, S, H, D}, DType::f32, 33, 1.0f);
  const BlockMask mask = build_block_mask(layout, Pattern::tile(0), static_cast<int>(H), 32, 32);
  AttentionOptions options;
  options.mask = &mask;
  const Tensor cpu = attention(q, k, v, options);

  const Tensor qd = q.to(Device::cuda()), kd = k.to(Device::cuda()), vd = v.to(Device::cuda());
  Tensor lse;
  const Tensor a = attention(qd, kd, vd, options, &lse);
  EXPECT_EQ(a.dtype(), DType::f32);
  EXPECT_EQ(lse.shape(), Shape({1, H, S}));
  const Tensor a_host = a.to(Device::cpu());
  const Tensor b_host = attention(qd, kd, vd, upload_block_mask(mask)).to(Device::cpu());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(std::memcmp(a_host.data<float>(), b_host.data<float>(), a_host.nbytes()), 0);
  EXPECT_LT(max_abs_diff(a_host.data<float>(), cpu.data<float>(), a_host.numel()), 1e-5);

  const Tensor out = Tensor::empty(q.shape(), DType::f32, Device::cuda());
  EXPECT_EQ(attention_cuda(qd, kd, vd, nullptr, 0.0f, out, nullptr, nullptr), FlashKernel::f32);
  expect_error_naming([&] { attention_cuda(qd, kd, vd, nullptr, 0.0f, out, nullptr, nullptr, FlashKernel::sm80); },
                      "f32", "sm80");
  const Tensor qb = q.to(DType::bf16).to(Device::cuda());
  const Tensor out_b = Tensor::empty(q.shape(), DType::bf16, Device::cuda());
  expect_error_naming([&] { attention_cuda(qb, qb, qb, nullptr, 0.0f, out_b, nullptr, nullptr, FlashKernel::f32); },
                      "bf16", "f32 kernel");
}

}  // namespace
}  // namespace vdit

namespace vdit {
namespace {

// Token-major slots (temporal heads): attention_cuda with `token_major` must give, bit for bit, the
// kernel's token-major O scattered back by scatter_from_token_major_gpu, on every kernel (sm90 stores
// those rows itself; the others run the scatter pass), for per-slot and per-head flags and text first,
// last or none; on sm90 also with only the flagged slots gathered.
TEST(AttentionCudaApi, TokenMajorSlotsComeBackFrameMajor) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Device gpu = Device::cuda();
  struct TokenCase {
    VideoLayout layout;
    int64_t batch, heads, dim;
    bool per_slot;  // flags [B*H], else [H]
  };
  const TokenCase cases[] = {{grid(7, 19, 31, 10, TextPosition::first), 2, 3, 64, true},
                             {grid(5, 12, 16, 40, TextPosition::last), 1, 4, 128, false},
                             {grid(6, 10, 25), 2, 2, 96, true}};
  for (const TokenCase& c : cases) {
    SCOPED_TRACE(c.layout.to_string());
    const int64_t S = c.layout.tokens(), slots = c.per_slot ? c.batch * c.heads : c.heads;
    const Shape shape{c.batch, S, c.heads, c.dim};
    const Tensor q = random_input(shape, DType::bf16, 31, 1.0f).to(gpu);
    const Tensor k = random_input(shape, DType::bf16, 32, 1.0f).to(gpu);
    const Tensor v = random_input(shape, DType::bf16, 33, 1.0f).to(gpu);
    Tensor flags = Tensor::empty({slots}, DType::u8);
    for (int64_t s = 0; s < slots; ++s) flags.data<uint8_t>()[s] = s % 2 == 0;  // temporal, spatial, ...
    flags = flags.to(gpu);
    std::vector<Pattern> patterns;
    for (int64_t s = 0; s < c.batch * c.heads; ++s)
      patterns.push_back(s % 2 == 0 ? Pattern::temporal(0.3) : Pattern::spatial(0.3));
    const GpuBlockMask mask =
        upload_block_mask(c.per_slot ? build_block_mask(c.layout, patterns)
                                     : build_block_mask(c.layout, std::vector<Pattern>(patterns.begin(),
                                                                                       patterns.begin() + c.heads)),
                          gpu);
    const std::vector<Tensor> in = {q, k, v};
    std::vector<Tensor> gathered;
    for (int i = 0; i < 3; ++i) gathered.push_back(Tensor::empty(shape, DType::bf16, gpu));
    gather_to_token_major_gpu(in, gathered, c.layout, flags);
    const TokenMajorSlots token_major{flags, c.layout};
    for (FlashKernel kernel : kernels_to_test()) {
      SCOPED_TRACE(flash_kernel_name(kernel));
      const Tensor token_order = Tensor::empty(shape, DType::bf16, gpu), expected = Tensor::empty(shape, DType::bf16, gpu);
      attention_cuda(gathered[0], gathered[1], gathered[2], &mask, 0.0f, token_order, nullptr, nullptr, kernel);
      scatter_from_token_major_gpu(std::span<const Tensor>(&token_order, 1), std::span<const Tensor>(&expected, 1),
                                   c.layout, flags);
      const Tensor got = Tensor::empty(shape, DType::bf16, gpu);
      ASSERT_EQ(cudaMemset(got.raw_data(), 0xff, got.nbytes()), cudaSuccess);
      attention_cuda(gathered[0], gathered[1], gathered[2], &mask, 0.0f, got, nullptr, nullptr, kernel, &token_major);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const Tensor a = got.to(Device::cpu()), b = expected.to(Device::cpu());
      EXPECT_EQ(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()), 0);
      if (kernel != FlashKernel::sm90) continue;
      // sm90 also reads the unflagged slots from the frame-major tensors, with only the flagged slots
      // gathered (the rest of the gathered tensors is NaN here, so a read of it would show).
      std::vector<Tensor> partial;
      for (int i = 0; i < 3; ++i) {
        partial.push_back(Tensor::empty(shape, DType::bf16, gpu));
        ASSERT_EQ(cudaMemset(partial.back().raw_data(), 0xff, partial.back().nbytes()), cudaSuccess);
      }
      gather_to_token_major_gpu(in, partial, c.layout, flags, nullptr, true);
      const TokenMajorSlots flagged_only{flags, c.layout, partial.data()};
      const Tensor got2 = Tensor::empty(shape, DType::bf16, gpu);
      attention_cuda(q, k, v, &mask, 0.0f, got2, nullptr, nullptr, kernel, &flagged_only);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const Tensor a2 = got2.to(Device::cpu());
      EXPECT_EQ(std::memcmp(a2.raw_data(), b.raw_data(), a2.nbytes()), 0);
    }
  }
  // Flags of the wrong size are named.
  const Tensor q = random_input({1, 300, 2, 64}, DType::bf16, 41, 1.0f).to(gpu);
  const Tensor out = Tensor::empty(q.shape(), DType::bf16, gpu);
  const Tensor bad = Tensor::zeros({3}, DType::u8, gpu);
  const VideoLayout layout = grid(3, 10, 10);
  const TokenMajorSlots token_major{bad, layout};
  expect_error_naming([&] { attention_cuda(q, q, q, nullptr, 0.0f, out, nullptr, nullptr, FlashKernel::automatic,
                                           &token_major); },
                      "permute flags", "u8 [2]");
}

}  // namespace
}  // namespace vdit
