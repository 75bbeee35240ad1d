// Each CUDA op against the CPU op (the oracle) on the same inputs, in f32 and bf16, ragged sizes.
// Bounds: f32 within 1e-5 (relative to 1 + |value|); bf16 within a few roundings of the output,
// 2e-2, since the CUDA op rounds its output (and, for the GEMM, reads bf16 products) where the CPU
// op keeps f32. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "ops/ops.h"
#include "test_util.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

const ExecContext kCpu{};
const ExecContext kGpu{Device::cuda(0)};
constexpr DType kDtypes[] = {DType::f32, DType::bf16};

double bound(DType dtype) { return dtype == DType::f32 ? 1e-5 : 2e-2; }

// Random values already rounded to `dtype`, on the CPU, so that both implementations read the same.
Tensor random_tensor(const Shape& shape, DType dtype, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t.to(dtype);
}

Tensor gpu(const Tensor& cpu) { return cpu.contiguous().to(Device::cuda(0)); }

// Largest |gpu - cpu| / (1 + |cpu|).
double max_error(const Tensor& on_gpu, const Tensor& on_cpu) {
  EXPECT_TRUE(on_gpu.device().is_cuda());
  const Tensor a = on_gpu.to(Device::cpu()).to(DType::f32).contiguous(), b = on_cpu.to(DType::f32).contiguous();
  EXPECT_EQ(a.shape(), b.shape());
  double worst = 0.0;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i) {
    const double x = a.data<float>()[i], y = b.data<float>()[i];
    worst = std::max(worst, std::abs(x - y) / (1.0 + std::abs(y)));
  }
  return worst;
}

// Two CPU tensors of one shape hold the same values.
bool same_values(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && test::to_doubles(a) == test::to_doubles(b);
}

class OpsCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
  }
};

TEST_F(OpsCuda, Linear) {
  for (DType dt : kDtypes) {
    const Tensor x = random_tensor({3, 37, 70}, dt, 1), w = random_tensor({45, 70}, dt, 2, -0.2f, 0.2f);
    const Tensor b = random_tensor({45}, dt, 3);
    for (Activation act : {Activation::none, Activation::gelu_tanh, Activation::silu}) {
      EXPECT_LT(max_error(linear(kGpu, gpu(x), gpu(w), gpu(b), act), linear(kCpu, x, w, b, act)), bound(dt))
          << dtype_name(dt) << " activation " << static_cast<int>(act);
      EXPECT_LT(max_error(linear(kGpu, gpu(x), gpu(w), {}, act), linear(kCpu, x, w, {}, act)), bound(dt));
    }
  }
}

TEST_F(OpsCuda, NormsAndModulation) {
  for (DType dt : kDtypes) {
    const Tensor x = random_tensor({2, 19, 77}, dt, 4), w = random_tensor({77}, dt, 5), b = random_tensor({77}, dt, 6);
    EXPECT_LT(max_error(layer_norm(kGpu, gpu(x), gpu(w), gpu(b), 1e-5f), layer_norm(kCpu, x, w, b, 1e-5f)), bound(dt));
    EXPECT_LT(max_error(layer_norm(kGpu, gpu(x), {}, {}, 1e-6f), layer_norm(kCpu, x, {}, {}, 1e-6f)), bound(dt));
    EXPECT_LT(max_error(rms_norm(kGpu, gpu(x), gpu(w), 1e-6f), rms_norm(kCpu, x, w, 1e-6f)), bound(dt));
    // shift, scale and gate as strided rows of a [B, 6, D] table, as the models slice them.
    const Tensor table = random_tensor({2, 6, 77}, dt, 7), table_gpu = gpu(table);
    auto row = [](const Tensor& t, int i) { return t.select(1, i); };
    EXPECT_LT(max_error(layer_norm_modulate(kGpu, gpu(x), gpu(w), gpu(b), 1e-6f, row(table_gpu, 0), row(table_gpu, 1)),
                        layer_norm_modulate(kCpu, x, w, b, 1e-6f, row(table, 0), row(table, 1))),
              bound(dt));
    EXPECT_LT(max_error(modulate(kGpu, gpu(x), row(table_gpu, 3), row(table_gpu, 4)),
                        modulate(kCpu, x, row(table, 3), row(table, 4))),
              bound(dt));
    // The residual y as a token slice of a longer joint sequence (CogVideoX's video part).
    const Tensor joint = random_tensor({2, 25, 77}, dt, 8);
    Tensor on_gpu = gpu(x), on_cpu = x.to(DType::f32);
    gated_residual_add(kGpu, on_gpu, gpu(joint).slice(1, 6, 25), row(table_gpu, 2));
    gated_residual_add(kCpu, on_cpu, joint.slice(1, 6, 25), row(table, 2));
    EXPECT_LT(max_error(on_gpu, on_cpu), bound(dt));
    gated_residual_add(kGpu, on_gpu, gpu(joint).slice(1, 0, 19), {});
    gated_residual_add(kCpu, on_cpu, joint.slice(1, 0, 19), {});
    EXPECT_LT(max_error(on_gpu, on_cpu), 2 * bound(dt));
  }
}

// The model widths (Wan 1.3B 1536, CogVideoX 3072, Wan 14B 5120), a ragged one that still takes
// 16-byte vectors (1000), one that does not (1001), short rows several to a warp (24, 64: head
// norms), a row for 512 threads (16000 in f32), and one of more than 8 vectors for each of 512
// threads, which takes the fallback kernel (40000).
TEST_F(OpsCuda, NormsAtModelWidths) {
  for (DType dt : kDtypes) {
    for (int64_t d : {1536, 3072, 5120, 1000, 1001, 24, 64, 16000, 40000}) {
      const int64_t tokens = d > 8192 ? 1 : (d < 128 ? 37 : 9);
      const Tensor x = random_tensor({2, tokens, d}, dt, 20), w = random_tensor({d}, dt, 21);
      const Tensor b = random_tensor({d}, dt, 22), table = random_tensor({2, 6, d}, dt, 23), table_gpu = gpu(table);
      EXPECT_LT(max_error(layer_norm(kGpu, gpu(x), gpu(w), gpu(b), 1e-5f), layer_norm(kCpu, x, w, b, 1e-5f)), bound(dt))
          << dtype_name(dt) << " layer_norm D=" << d;
      EXPECT_LT(max_error(layer_norm(kGpu, gpu(x), {}, {}, 1e-6f), layer_norm(kCpu, x, {}, {}, 1e-6f)), bound(dt))
          << dtype_name(dt) << " layer_norm without affine D=" << d;
      EXPECT_LT(max_error(rms_norm(kGpu, gpu(x), gpu(w), 1e-6f), rms_norm(kCpu, x, w, 1e-6f)), bound(dt))
          << dtype_name(dt) << " rms_norm D=" << d;
      EXPECT_LT(max_error(rms_norm(kGpu, gpu(x), {}, 1e-6f), rms_norm(kCpu, x, {}, 1e-6f)), bound(dt))
          << dtype_name(dt) << " rms_norm without weight D=" << d;
      EXPECT_LT(max_error(layer_norm_modulate(kGpu, gpu(x), {}, {}, 1e-6f, table_gpu.select(1, 3), table_gpu.select(1, 4)),
                          layer_norm_modulate(kCpu, x, {}, {}, 1e-6f, table.select(1, 3), table.select(1, 4))),
                bound(dt))
          << dtype_name(dt) << " layer_norm_modulate D=" << d;
    }
  }
}

// More rows than the row kernel's resident grid holds, so that its blocks loop over rows and load
// the next one ahead: head rows of 64 and Wan's width of 1536, row counts that fill no last block.
TEST_F(OpsCuda, NormsLoopOverRows) {
  for (DType dt : kDtypes) {
    for (const auto& [tokens, d] : {std::pair<int64_t, int64_t>{150001, 64}, std::pair<int64_t, int64_t>{6001, 1536}}) {
      const Tensor x = random_tensor({1, tokens, d}, dt, 40), w = random_tensor({d}, dt, 41);
      const Tensor b = random_tensor({d}, dt, 42);
      EXPECT_LT(max_error(layer_norm(kGpu, gpu(x), gpu(w), gpu(b), 1e-5f), layer_norm(kCpu, x, w, b, 1e-5f)), bound(dt))
          << dtype_name(dt) << " layer_norm " << tokens << " x " << d;
      EXPECT_LT(max_error(rms_norm(kGpu, gpu(x), gpu(w), 1e-6f), rms_norm(kCpu, x, w, 1e-6f)), bound(dt))
          << dtype_name(dt) << " rms_norm " << tokens << " x " << d;
    }
  }
}

// The residual add fused into the norm after it, at model widths (1536, 3072), a ragged width that
// takes 16-byte vectors (1000), one that does not (1001) and one too long for the row kernel (40000):
// the last two take the two-kernel fallback. y is a token slice of a longer joint sequence; gate,
// shift and scale are strided rows of a [B, 6, D] table; the variants are Wan's two uses and
// CogVideoX's. The updated x against gated_residual_add on the CPU; the norm output against the CPU
// norm of the x the GPU stored (the GPU normalises x as stored, rounded to bf16 in bf16, as its
// separate ops do; the CPU keeps x in f32).
TEST_F(OpsCuda, GatedResidualAddLayerNorm) {
  struct Variant {
    bool gate, affine, modulate;
    const char* name;
  };
  auto row = [](const Tensor& t, int i) { return t.select(1, i); };
  auto given = [](bool on, const Tensor& t) { return on ? t : Tensor(); };
  for (DType dt : kDtypes) {
    for (int64_t d : {1536, 3072, 1000, 1001, 40000}) {
      const int64_t tokens = d > 8192 ? 2 : 9;
      const Tensor x = random_tensor({2, tokens, d}, dt, 30), joint = random_tensor({2, tokens + 3, d}, dt, 31);
      const Tensor w = random_tensor({d}, dt, 32), b = random_tensor({d}, dt, 33), table = random_tensor({2, 6, d}, dt, 34);
      const Tensor table_gpu = gpu(table), y = joint.slice(1, 3, tokens + 3), y_gpu = gpu(joint).slice(1, 3, tokens + 3);
      for (const Variant& v : {Variant{true, true, false, "gate + affine"}, Variant{false, false, true, "modulate"},
                               Variant{true, true, true, "gate + affine + modulate"}}) {
        Tensor x_gpu = gpu(x), x_cpu = x.to(DType::f32).clone();
        const Tensor out = gated_residual_add_layer_norm(
            kGpu, x_gpu, y_gpu, given(v.gate, row(table_gpu, 2)), given(v.affine, gpu(w)), given(v.affine, gpu(b)),
            1e-6f, given(v.modulate, row(table_gpu, 0)), given(v.modulate, row(table_gpu, 1)));
        gated_residual_add(kCpu, x_cpu, y, given(v.gate, row(table, 2)));
        EXPECT_LT(max_error(x_gpu, x_cpu), bound(dt)) << dtype_name(dt) << " " << v.name << " x, D=" << d;
        const Tensor stored = x_gpu.to(Device::cpu());
        const Tensor expected =
            v.modulate ? layer_norm_modulate(kCpu, stored, given(v.affine, w), given(v.affine, b), 1e-6f, row(table, 0),
                                             row(table, 1))
                       : layer_norm(kCpu, stored, given(v.affine, w), given(v.affine, b), 1e-6f);
        // f32: the GPU and CPU sum a row's D terms in different orders, which differ by about
        // sqrt(D) ulp (seen on H100: 1.3e-5 at D = 40000 with modulation), so the bound grows with it.
        const double norm_bound = bound(dt) * std::max(1.0, std::sqrt(static_cast<double>(d) / 4096.0));
        EXPECT_LT(max_error(out, expected), norm_bound) << dtype_name(dt) << " " << v.name << " norm, D=" << d;
        // The same into tokens 2 .. tokens + 2 of a longer sequence (CogVideoX's joint input): equal
        // values and residual, and the tokens before and after the range untouched.
        Tensor x_into = gpu(x);
        const Tensor before = random_tensor({2, tokens + 3, d}, dt, 35);
        const Tensor sequence = gpu(before);
        gated_residual_add_layer_norm_into(
            kGpu, sequence.slice(1, 2, tokens + 2), x_into, y_gpu, given(v.gate, row(table_gpu, 2)),
            given(v.affine, gpu(w)), given(v.affine, gpu(b)), 1e-6f, given(v.modulate, row(table_gpu, 0)),
            given(v.modulate, row(table_gpu, 1)));
        const Tensor host = sequence.to(Device::cpu());
        EXPECT_TRUE(same_values(host.slice(1, 2, tokens + 2), out.to(Device::cpu())))
            << dtype_name(dt) << " " << v.name << " into a token range, D=" << d;
        EXPECT_TRUE(same_values(x_into.to(Device::cpu()), x_gpu.to(Device::cpu())))
            << dtype_name(dt) << " " << v.name << " residual of the _into call, D=" << d;
        EXPECT_TRUE(same_values(host.slice(1, 0, 2), before.slice(1, 0, 2)))
            << dtype_name(dt) << " " << v.name << " tokens before the range, D=" << d;
        EXPECT_TRUE(same_values(host.slice(1, tokens + 2, tokens + 3), before.slice(1, tokens + 2, tokens + 3)))
            << dtype_name(dt) << " " << v.name << " tokens after the range, D=" << d;
      }
    }
  }
}

// Rotary cases: per-axis head-dim channels, heads, text tokens before the video, tokens after it;
// the video is a 2 x 3 x 4 grid at integer positions.
struct RopeCase {
  std::array<int, 3> axes;
  int64_t heads, offset, extra;
};

std::vector<double> positions(int n) {
  std::vector<double> p(n);
  for (int i = 0; i < n; ++i) p[i] = i;
  return p;
}

// Wan's Q/K: RMSNorm across 12 heads of 128 with RoPE in one pass; heads of 16 after 5 text tokens
// (rows several to a warp); heads of 6 (vectors would straddle heads: the two-pass fallback).
TEST_F(OpsCuda, RmsNormRope) {
  for (const RopeCase& c : {RopeCase{{44, 42, 42}, 12, 0, 0}, RopeCase{{4, 6, 6}, 3, 5, 2}, RopeCase{{2, 2, 2}, 5, 1, 0}}) {
    const RopeTable table = rope_table_3d(c.axes, {positions(2), positions(3), positions(4)});
    const RopeTable table_gpu = rope_table_3d(kGpu, c.axes, {positions(2), positions(3), positions(4)});
    // Laid out on the GPU from the same per-axis values: equal to the host table, bit for bit.
    EXPECT_EQ(max_error(table_gpu.cos, table.cos), 0.0);
    EXPECT_EQ(max_error(table_gpu.sin, table.sin), 0.0);
    const int64_t head_dim = c.axes[0] + c.axes[1] + c.axes[2], tokens = c.offset + table.tokens() + c.extra;
    for (DType dt : kDtypes) {
      const Tensor x = random_tensor({2, tokens, c.heads * head_dim}, dt, 28), w = random_tensor({c.heads * head_dim}, dt, 29);
      EXPECT_LT(max_error(rms_norm_rope(kGpu, gpu(x), gpu(w), 1e-6f, c.heads, table_gpu, c.offset),
                          rms_norm_rope(kCpu, x, w, 1e-6f, c.heads, table, c.offset)),
                bound(dt))
          << dtype_name(dt) << " heads " << c.heads << " x " << head_dim;
    }
  }
}

// CogVideoX's Q/K: LayerNorm per head with RoPE after the text tokens in one pass; heads of 64
// (CogVideoX-5B's, 48 of them, 226 text tokens before the video in the real model; 3 heads after 5
// text tokens here), heads of 16 (several rows to a warp) and of 6 (the two-pass fallback).
TEST_F(OpsCuda, LayerNormRope) {
  for (const RopeCase& c : {RopeCase{{16, 24, 24}, 3, 5, 0}, RopeCase{{4, 6, 6}, 4, 0, 3}, RopeCase{{2, 2, 2}, 5, 1, 0}}) {
    const RopeTable table = rope_table_3d(c.axes, {positions(2), positions(3), positions(4)});
    const RopeTable table_gpu = rope_table_3d(kGpu, c.axes, {positions(2), positions(3), positions(4)});
    const int64_t head_dim = c.axes[0] + c.axes[1] + c.axes[2], tokens = c.offset + table.tokens() + c.extra;
    for (DType dt : kDtypes) {
      const Tensor x = random_tensor({2, tokens, c.heads, head_dim}, dt, 30);
      const Tensor w = random_tensor({head_dim}, dt, 31), b = random_tensor({head_dim}, dt, 32);
      EXPECT_LT(max_error(layer_norm_rope(kGpu, gpu(x), gpu(w), gpu(b), 1e-6f, table_gpu, c.offset),
                          layer_norm_rope(kCpu, x, w, b, 1e-6f, table, c.offset)),
                bound(dt))
          << dtype_name(dt) << " heads " << c.heads << " x " << head_dim;
    }
  }
}

TEST_F(OpsCuda, ElementWise) {
  for (DType dt : kDtypes) {
    const Tensor x = random_tensor({5, 1031}, dt, 9, -6.0f, 6.0f), z = random_tensor({5, 1031}, dt, 10);
    EXPECT_LT(max_error(gelu_tanh(kGpu, gpu(x)), gelu_tanh(kCpu, x)), bound(dt));
    EXPECT_LT(max_error(silu(kGpu, gpu(x)), silu(kCpu, x)), bound(dt));
    EXPECT_LT(max_error(add(kGpu, gpu(x), gpu(z)), add(kCpu, x, z)), bound(dt));
    const Tensor row = random_tensor({1031}, dt, 11);
    EXPECT_LT(max_error(add(kGpu, gpu(x), gpu(row)), add(kCpu, x, row)), bound(dt));
    // Rows of whole 16-byte vectors: the vectorised pass.
    const Tensor wide = random_tensor({3, 1536}, dt, 27, -6.0f, 6.0f);
    EXPECT_LT(max_error(gelu_tanh(kGpu, gpu(wide)), gelu_tanh(kCpu, wide)), bound(dt));
    EXPECT_LT(max_error(silu(kGpu, gpu(wide)), silu(kCpu, wide)), bound(dt));
    const Tensor a = random_tensor({3, 7, 33}, dt, 12), b = random_tensor({3, 11, 33}, dt, 13);
    EXPECT_EQ(max_error(concat_tokens(kGpu, gpu(a), gpu(b)), concat_tokens(kCpu, a, b)), 0.0);
  }
}

TEST_F(OpsCuda, Patches) {
  for (DType dt : kDtypes) {
    for (VideoAxes axes : {VideoAxes::bcfhw, VideoAxes::bfchw}) {
      const PatchSize p{2, 2, 3};
      const Tensor video = random_tensor({2, 4, 6, 6, 9}, dt, 14);
      const Tensor tokens = patchify(kGpu, gpu(video), axes, p);
      EXPECT_EQ(max_error(tokens, patchify(kCpu, video, axes, p)), 0.0);
      const PatchGrid grid = patch_grid(video, axes, p);
      for (PatchFeatures f : {PatchFeatures::channel_major, PatchFeatures::channel_minor}) {
        const Tensor t = random_tensor({2, grid.tokens(), 4 * p.volume()}, dt, 15);
        EXPECT_EQ(max_error(unpatchify(kGpu, gpu(t), grid, p, f, axes), unpatchify(kCpu, t, grid, p, f, axes)), 0.0);
      }
    }
    const Tensor video = random_tensor({1, 4, 3, 6, 8}, dt, 16), w = random_tensor({32, 4, 1, 2, 2}, dt, 17);
    const Tensor b = random_tensor({32}, dt, 18);
    EXPECT_LT(max_error(patch_embed(kGpu, gpu(video), VideoAxes::bcfhw, {1, 2, 2}, gpu(w), gpu(b)),
                        patch_embed(kCpu, video, VideoAxes::bcfhw, {1, 2, 2}, w, b)),
              bound(dt));
  }
}

TEST_F(OpsCuda, TimestepEmbeddingAndRope) {
  Tensor t = Tensor::empty({3}, DType::f32);
  t.data<float>()[0] = 999.0f;
  t.data<float>()[1] = 333.25f;
  t.data<float>()[2] = 0.5f;
  for (int dim : {256, 33}) {
    for (bool flip : {true, false}) {
      const TimestepEmbedding options{flip, flip ? 0.0 : 1.0};
      // The angles agree to f32; sin/cos of angles near 1000 then agree to ~1e-4.
      EXPECT_LT(max_error(timestep_embedding(kGpu, gpu(t), dim, options), timestep_embedding(kCpu, t, dim, options)),
                2e-4);
    }
  }
  const RopeTable table = rope_table_3d({4, 6, 6}, {{{0, 1, 2}, {0, 1.5, 3}, {0, 0.25, 0.5, 0.75}}});
  const RopeTable table_gpu = table.to(Device::cuda(0));
  for (DType dt : kDtypes) {
    const Tensor x = random_tensor({2, 5 + 36, 3, 16}, dt, 19);
    Tensor on_gpu = gpu(x), on_cpu = x.to(DType::f32);
    apply_rope(kGpu, on_gpu, table_gpu, 5);
    apply_rope(kCpu, on_cpu, table, 5);
    EXPECT_LT(max_error(on_gpu, on_cpu), bound(dt));
  }
}

TEST_F(OpsCuda, CrossAttention) {
  for (DType dt : kDtypes) {
    const Tensor q = random_tensor({2, 300, 4, 64}, dt, 23), k = random_tensor({2, 77, 4, 64}, dt, 24);
    const Tensor v = random_tensor({2, 77, 4, 64}, dt, 25);
    EXPECT_LT(max_error(cross_attention(kGpu, gpu(q), gpu(k), gpu(v)), cross_attention(kCpu, q, k, v)), bound(dt))
        << dtype_name(dt);
  }
}

// bf16/f16 at head dims 64, 96 and 128 run the flash kernel (vdit::attention, K/V shorter or longer
// than Q): its output is that of vdit::attention bit for bit, and within the bound of the CPU op.
TEST_F(OpsCuda, CrossAttentionFlashPath) {
  const struct {
    int64_t queries, keys, dim;
    DType dtype;
  } shapes[] = {{1000, 512, 128, DType::bf16}, {333, 77, 96, DType::f16}, {50, 300, 64, DType::bf16},
                {259, 512, 128, DType::f16}};
  uint32_t seed = 30;
  for (const auto& s : shapes) {
    const Tensor q = random_tensor({2, s.queries, 3, s.dim}, s.dtype, seed++);
    const Tensor k = random_tensor({2, s.keys, 3, s.dim}, s.dtype, seed++);
    const Tensor v = random_tensor({2, s.keys, 3, s.dim}, s.dtype, seed++);
    const Tensor out = cross_attention(kGpu, gpu(q), gpu(k), gpu(v));
    EXPECT_LT(max_error(out, cross_attention(kCpu, q, k, v)), bound(s.dtype))
        << dtype_name(s.dtype) << " Sq " << s.queries << " Sk " << s.keys << " D " << s.dim;
    const Tensor flash = attention(gpu(q), gpu(k), gpu(v)).to(Device::cpu());
    const Tensor got = out.to(Device::cpu());
    ASSERT_EQ(got.nbytes(), flash.nbytes());
    EXPECT_EQ(std::memcmp(got.raw_data(), flash.raw_data(), got.nbytes()), 0)
        << "cross_attention did not take the flash path: " << dtype_name(s.dtype) << " D " << s.dim;
  }
}

TEST_F(OpsCuda, Cast) {
  const Tensor x = random_tensor({7, 129}, DType::f32, 22);
  for (DType to : {DType::bf16, DType::f16, DType::f32}) {
    const Tensor y = cast(kGpu, gpu(x), to);
    EXPECT_EQ(y.dtype(), to);
    EXPECT_EQ(max_error(y, x.to(to)), 0.0) << dtype_name(to);
    EXPECT_EQ(max_error(cast(kGpu, y, DType::f32), x.to(to)), 0.0);
  }
}

TEST_F(OpsCuda, MixedDtypesAreRefusedByName) {
  const Tensor x = random_tensor({4, 8}, DType::bf16, 20), w = random_tensor({3, 8}, DType::f32, 21);
  try {
    linear(kGpu, gpu(x), gpu(w));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vdit
