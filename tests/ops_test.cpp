// Each CPU op against a plain float64 reference written here, on random non-zero inputs of ragged sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "test_util.h"

namespace vdit {
namespace {

using test::to_doubles;

const ExecContext kCpu{};

Tensor random_tensor(const Shape& shape, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    float v = dist(rng);
    p[i] = std::abs(v) < 1e-3f ? 0.5f : v;
  }
  return t;
}

// Largest |a - b| / (1 + |b|).
double max_error(const Tensor& actual, const std::vector<double>& expected) {
  std::vector<double> a = to_doubles(actual);
  EXPECT_EQ(a.size(), expected.size());
  double worst = 0.0;
  for (size_t i = 0; i < std::min(a.size(), expected.size()); ++i)
    worst = std::max(worst, std::abs(a[i] - expected[i]) / (1.0 + std::abs(expected[i])));
  return worst;
}

double gelu_tanh_ref(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
double silu_ref(double x) { return x / (1.0 + std::exp(-x)); }

std::vector<double> linear_ref(const Tensor& x, const Tensor& w, const Tensor& b, Activation act) {
  auto xv = to_doubles(x), wv = to_doubles(w), bv = b.defined() ? to_doubles(b) : std::vector<double>();
  const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
  std::vector<double> y(rows * out);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = bv.empty() ? 0.0 : bv[o];
      for (int64_t i = 0; i < in; ++i) s += xv[r * in + i] * wv[o * in + i];
      y[r * out + o] = act == Activation::gelu_tanh ? gelu_tanh_ref(s) : act == Activation::silu ? silu_ref(s) : s;
    }
  return y;
}

TEST(Ops, LinearMatchesReference) {
  Tensor x = random_tensor({3, 5, 7}, 1), w = random_tensor({11, 7}, 2), b = random_tensor({11}, 3);
  for (Activation act : {Activation::none, Activation::gelu_tanh, Activation::silu}) {
    Tensor y = linear(kCpu, x, w, b, act);
    EXPECT_EQ(y.shape(), (Shape{3, 5, 11}));
    EXPECT_LT(max_error(y, linear_ref(x, w, b, act)), 1e-5);
  }
  EXPECT_LT(max_error(linear(kCpu, x, w), linear_ref(x, w, {}, Activation::none)), 1e-5);
}

TEST(Ops, LinearReadsHalfInputsAsF32) {
  Tensor x = random_tensor({4, 9}, 4).to(DType::bf16), w = random_tensor({6, 9}, 5).to(DType::f16);
  Tensor b = random_tensor({6}, 6).to(DType::bf16);
  Tensor y = linear(kCpu, x, w, b);
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_LT(max_error(y, linear_ref(x, w, b, Activation::none)), 1e-5);
}

TEST(Ops, LinearNamesMismatchedShapes) {
  try {
    linear(kCpu, random_tensor({2, 5}, 1), random_tensor({3, 4}, 2));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 5]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3, 4]"), std::string::npos) << e.what();
  }
  try {
    linear(kCpu, random_tensor({2, 4}, 1), random_tensor({3, 4}, 2), random_tensor({4}, 3));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bias"), std::string::npos) << e.what();
  }
}

// layer norm of each row of x [rows, d], with optional affine and per-item modulation.
std::vector<double> layer_norm_ref(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                                   const Tensor& shift = {}, const Tensor& scale = {}) {
  auto optional = [](const Tensor& t) { return t.defined() ? to_doubles(t) : std::vector<double>(); };
  auto xv = to_doubles(x), wv = optional(w), bv = optional(b), sh = optional(shift), sc = optional(scale);
  const int64_t d = x.size(-1), rows = x.numel() / d, per_item = x.rank() == 3 ? x.size(1) : rows;
  std::vector<double> y(xv.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < d; ++i) mean += xv[r * d + i];
    mean /= d;
    for (int64_t i = 0; i < d; ++i) var += (xv[r * d + i] - mean) * (xv[r * d + i] - mean);
    var /= d;
    for (int64_t i = 0; i < d; ++i) {
      double v = (xv[r * d + i] - mean) / std::sqrt(var + eps);
      if (!wv.empty()) v *= wv[i];
      if (!bv.empty()) v += bv[i];
      if (!sc.empty()) v = v * (1 + sc[(r / per_item) * d + i]) + sh[(r / per_item) * d + i];
      y[r * d + i] = v;
    }
  }
  return y;
}

TEST(Ops, LayerNormWithAndWithoutAffine) {
  Tensor x = random_tensor({2, 5, 13}, 7), w = random_tensor({13}, 8), b = random_tensor({13}, 9);
  EXPECT_LT(max_error(layer_norm(kCpu, x, w, b, 1e-5f), layer_norm_ref(x, w, b, 1e-5)), 1e-5);
  EXPECT_LT(max_error(layer_norm(kCpu, x, {}, {}, 1e-6f), layer_norm_ref(x, {}, {}, 1e-6)), 1e-5);
  // Per-head norm: the last dimension of a 4-D tensor.
  Tensor q = random_tensor({2, 3, 4, 6}, 10), qw = random_tensor({6}, 11), qb = random_tensor({6}, 12);
  EXPECT_LT(max_error(layer_norm(kCpu, q, qw, qb, 1e-6f), layer_norm_ref(q, qw, qb, 1e-6)), 1e-5);
}

TEST(Ops, RmsNorm) {
  Tensor x = random_tensor({3, 7, 10}, 13), w = random_tensor({10}, 14);
  auto xv = to_doubles(x), wv = to_doubles(w);
  std::vector<double> y(xv.size());
  for (int64_t r = 0; r < 21; ++r) {
    double ss = 0;
    for (int i = 0; i < 10; ++i) ss += xv[r * 10 + i] * xv[r * 10 + i];
    for (int i = 0; i < 10; ++i) y[r * 10 + i] = xv[r * 10 + i] / std::sqrt(ss / 10 + 1e-6) * wv[i];
  }
  EXPECT_LT(max_error(rms_norm(kCpu, x, w, 1e-6f), y), 1e-5);
}

TEST(Ops, ModulateAndFusedNormModulate) {
  Tensor x = random_tensor({2, 5, 9}, 15), shift = random_tensor({2, 9}, 16), scale = random_tensor({2, 9}, 17);
  auto xv = to_doubles(x), sh = to_doubles(shift), sc = to_doubles(scale);
  std::vector<double> y(xv.size());
  for (int64_t r = 0; r < 10; ++r)
    for (int i = 0; i < 9; ++i) y[r * 9 + i] = xv[r * 9 + i] * (1 + sc[(r / 5) * 9 + i]) + sh[(r / 5) * 9 + i];
  EXPECT_LT(max_error(modulate(kCpu, x, shift, scale), y), 1e-6);

  Tensor w = random_tensor({9}, 18), b = random_tensor({9}, 19);
  EXPECT_LT(max_error(layer_norm_modulate(kCpu, x, w, b, 1e-6f, shift, scale),
                      layer_norm_ref(x, w, b, 1e-6, shift, scale)),
            1e-5);
  EXPECT_LT(max_error(layer_norm_modulate(kCpu, x, {}, {}, 1e-6f, shift, scale),
                      layer_norm_ref(x, {}, {}, 1e-6, shift, scale)),
            1e-5);
}

TEST(Ops, ModulationRowsMayBeStridedViews) {
  // A [B, 6, D] table whose chunks are selected along dim 1, as the models slice their adaLN tables.
  Tensor table = random_tensor({2, 6, 9}, 20), x = random_tensor({2, 5, 9}, 21);
  Tensor shift = table.select(1, 3), scale = table.select(1, 4);
  EXPECT_LT(max_error(modulate(kCpu, x, shift, scale), to_doubles(modulate(kCpu, x, shift.contiguous(), scale.contiguous()))),
            1e-7);
}

TEST(Ops, GatedResidualAdd) {
  Tensor x = random_tensor({2, 4, 7}, 22), y = random_tensor({2, 4, 7}, 23), gate = random_tensor({2, 7}, 24);
  auto xv = to_doubles(x), yv = to_doubles(y), gv = to_doubles(gate);
  std::vector<double> gated(xv.size()), plain(xv.size());
  for (int64_t r = 0; r < 8; ++r)
    for (int i = 0; i < 7; ++i) {
      gated[r * 7 + i] = xv[r * 7 + i] + gv[(r / 4) * 7 + i] * yv[r * 7 + i];
      plain[r * 7 + i] = gated[r * 7 + i] + yv[r * 7 + i];
    }
  gated_residual_add(kCpu, x, y, gate);
  EXPECT_LT(max_error(x, gated), 1e-6);
  gated_residual_add(kCpu, x, y.to(DType::bf16), {});
  EXPECT_LT(max_error(x, plain), 1e-2);  // y rounded to bf16
}

// Exactly the two separate ops on the CPU, plain and modulated, with the gate and y strided views.
TEST(Ops, GatedResidualAddLayerNormIsTheTwoOps) {
  Tensor table = random_tensor({2, 6, 9}, 25), x = random_tensor({2, 5, 9}, 26), joint = random_tensor({2, 7, 9}, 27);
  Tensor w = random_tensor({9}, 28), b = random_tensor({9}, 29);
  const Tensor y = joint.slice(1, 2, 7), gate = table.select(1, 2), shift = table.select(1, 3), scale = table.select(1, 4);

  Tensor fused_x = x.clone(), split_x = x.clone();
  const Tensor fused = gated_residual_add_layer_norm(kCpu, fused_x, y, gate, w, b, 1e-6f);
  gated_residual_add(kCpu, split_x, y, gate);
  const Tensor split = layer_norm(kCpu, split_x, w, b, 1e-6f);
  EXPECT_EQ(to_doubles(fused_x), to_doubles(split_x));
  EXPECT_EQ(to_doubles(fused), to_doubles(split));

  Tensor fused_mod_x = x.clone(), split_mod_x = x.clone();
  const Tensor fused_mod = gated_residual_add_layer_norm(kCpu, fused_mod_x, y, {}, {}, {}, 1e-6f, shift, scale);
  gated_residual_add(kCpu, split_mod_x, y, {});
  const Tensor split_mod = layer_norm_modulate(kCpu, split_mod_x, {}, {}, 1e-6f, shift, scale);
  EXPECT_EQ(to_doubles(fused_mod_x), to_doubles(split_mod_x));
  EXPECT_EQ(to_doubles(fused_mod), to_doubles(split_mod));

  Tensor ragged = x.clone();
  EXPECT_THROW(gated_residual_add_layer_norm(kCpu, ragged, y, gate, w, b, 1e-6f, shift, {}), Error);
  EXPECT_THROW(gated_residual_add_layer_norm(kCpu, ragged, joint, gate, w, b, 1e-6f), Error);
}

// The _into variant writes the same values into a token range of a larger tensor, and nothing else;
// an `out` of another shape, dtype or token layout is refused.
TEST(Ops, GatedResidualAddLayerNormIntoATokenRange) {
  Tensor table = random_tensor({2, 6, 9}, 25), x = random_tensor({2, 5, 9}, 26), joint = random_tensor({2, 7, 9}, 27);
  const Tensor y = joint.slice(1, 2, 7), shift = table.select(1, 3), scale = table.select(1, 4);
  Tensor returned_x = x.clone(), into_x = x.clone();
  const Tensor returned = gated_residual_add_layer_norm(kCpu, returned_x, y, table.select(1, 2), {}, {}, 1e-6f, shift,
                                                        scale);
  const Tensor before = random_tensor({2, 9, 9}, 30);  // tokens 3..7 get the output, 0..2 and 8 stay
  Tensor sequence = before.clone();
  gated_residual_add_layer_norm_into(kCpu, sequence.slice(1, 3, 8), into_x, y, table.select(1, 2), {}, {}, 1e-6f, shift,
                                     scale);
  EXPECT_EQ(to_doubles(into_x), to_doubles(returned_x));
  EXPECT_EQ(to_doubles(sequence.slice(1, 3, 8).contiguous()), to_doubles(returned));
  EXPECT_EQ(to_doubles(sequence.slice(1, 0, 3).contiguous()), to_doubles(before.slice(1, 0, 3).contiguous()));
  EXPECT_EQ(to_doubles(sequence.slice(1, 8, 9).contiguous()), to_doubles(before.slice(1, 8, 9).contiguous()));

  auto refused = [&](const Tensor& out, const char* expected) {
    Tensor other = x.clone();
    try {
      gated_residual_add_layer_norm_into(kCpu, out, other, y, {}, {}, {}, 1e-6f);
      ADD_FAILURE() << "accepted an out " << out.describe();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  };
  refused(sequence.slice(1, 2, 8), "out");                       // 6 tokens for 5
  refused(sequence.slice(1, 3, 8).to(DType::bf16), "dtype");     // another dtype
  Tensor wide = random_tensor({2, 5, 18}, 31);
  refused(wide.slice(2, 0, 9), "token stride 18");               // rows of 18 for D = 9
  Tensor channels_first = random_tensor({2, 9, 5}, 32);
  refused(channels_first.transpose(1, 2), "D stride 5");         // D not contiguous
}

TEST(Ops, ElementWise) {
  Tensor x = random_tensor({3, 4099}, 25, -6.0f, 6.0f), z = random_tensor({3, 4099}, 26);
  auto xv = to_doubles(x), zv = to_doubles(z);
  std::vector<double> g(xv.size()), s(xv.size()), a(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) {
    g[i] = gelu_tanh_ref(xv[i]);
    s[i] = silu_ref(xv[i]);
    a[i] = xv[i] + zv[i];
  }
  EXPECT_LT(max_error(gelu_tanh(kCpu, x), g), 1e-6);
  EXPECT_LT(max_error(silu(kCpu, x), s), 1e-6);
  EXPECT_LT(max_error(add(kCpu, x, z), a), 1e-7);
}

// Conv3d with kernel == stride, computed directly on a [B, C, F, H, W] or [B, F, C, H, W] video.
std::vector<double> patch_embed_ref(const Tensor& video, VideoAxes axes, PatchSize p, const Tensor& w, const Tensor& b) {
  auto vv = to_doubles(video), wv = to_doubles(w), bv = to_doubles(b);
  const bool cf = axes == VideoAxes::bcfhw;
  const int64_t B = video.size(0), C = video.size(cf ? 1 : 2), F = video.size(cf ? 2 : 1), H = video.size(3),
                W = video.size(4), out = w.size(0);
  auto at = [&](int64_t bi, int64_t c, int64_t f, int64_t y, int64_t x) {
    return cf ? vv[(((bi * C + c) * F + f) * H + y) * W + x] : vv[(((bi * F + f) * C + c) * H + y) * W + x];
  };
  const int64_t gf = F / p.t, gh = H / p.h, gw = W / p.w;
  std::vector<double> y;
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t f = 0; f < gf; ++f)
      for (int64_t yy = 0; yy < gh; ++yy)
        for (int64_t xx = 0; xx < gw; ++xx)
          for (int64_t o = 0; o < out; ++o) {
            double s = bv[o];
            for (int64_t c = 0; c < C; ++c)
              for (int t = 0; t < p.t; ++t)
                for (int i = 0; i < p.h; ++i)
                  for (int j = 0; j < p.w; ++j)
                    s += wv[(((o * C + c) * p.t + t) * p.h + i) * p.w + j] *
                         at(bi, c, f * p.t + t, yy * p.h + i, xx * p.w + j);
            y.push_back(s);
          }
  return y;
}

TEST(Ops, PatchEmbedIsAStridedConvolution) {
  const PatchSize p{1, 2, 2};
  Tensor video = random_tensor({2, 3, 3, 6, 10}, 27), w = random_tensor({5, 3, 1, 2, 2}, 28), b = random_tensor({5}, 29);
  Tensor y = patch_embed(kCpu, video, VideoAxes::bcfhw, p, w, b);
  EXPECT_EQ(y.shape(), (Shape{2, 3 * 3 * 5, 5}));
  EXPECT_LT(max_error(y, patch_embed_ref(video, VideoAxes::bcfhw, p, w, b)), 1e-5);

  const PatchSize p3{2, 3, 2};
  Tensor v2 = random_tensor({1, 4, 2, 6, 4}, 30), w2 = random_tensor({7, 2, 2, 3, 2}, 31), b2 = random_tensor({7}, 32);
  EXPECT_LT(max_error(patch_embed(kCpu, v2, VideoAxes::bfchw, p3, w2, b2),
                      patch_embed_ref(v2, VideoAxes::bfchw, p3, w2, b2)),
            1e-5);
  // A Conv2d weight [out, C, ph, pw] for a patch of one frame.
  Tensor w4 = random_tensor({5, 3, 2, 2}, 33);
  EXPECT_LT(max_error(patch_embed(kCpu, video, VideoAxes::bcfhw, p, w4, b),
                      patch_embed_ref(video, VideoAxes::bcfhw, p, w4.view({5, 3, 1, 2, 2}), b)),
            1e-5);
}

TEST(Ops, UnpatchifyInvertsPatchify) {
  for (VideoAxes axes : {VideoAxes::bcfhw, VideoAxes::bfchw}) {
    const PatchSize p{2, 2, 3};
    Tensor video = random_tensor({2, 4, 2, 6, 9}, 34);  // C and F swap places with the axes
    Tensor tokens = patchify(kCpu, video, axes, p);
    Tensor back = unpatchify(kCpu, tokens, patch_grid(video, axes, p), p, PatchFeatures::channel_major, axes);
    EXPECT_EQ(back.shape(), video.shape());
    EXPECT_EQ(max_error(back, to_doubles(video)), 0.0);
  }
}

TEST(Ops, UnpatchifyChannelMinorFeatures) {
  // Wan's proj_out features are (t, y, x, c): out[b, c, f*pt+t, y*ph+i, x*pw+j] = tok[b, n, ((t*ph+i)*pw+j)*C+c].
  const PatchSize p{1, 2, 2};
  const PatchGrid g{2, 2, 3};
  const int64_t C = 3;
  Tensor tokens = random_tensor({2, g.tokens(), C * p.volume()}, 35);
  Tensor video = unpatchify(kCpu, tokens, g, p, PatchFeatures::channel_minor, VideoAxes::bcfhw);
  ASSERT_EQ(video.shape(), (Shape{2, C, 2, 4, 6}));
  auto tv = to_doubles(tokens);
  std::vector<double> expected(video.numel());
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t f = 0; f < 2; ++f)
        for (int64_t y = 0; y < 4; ++y)
          for (int64_t x = 0; x < 6; ++x) {
            const int64_t n = (f * g.height + y / 2) * g.width + x / 2, k = ((y % 2) * 2 + x % 2) * C + c;
            expected[(((b * C + c) * 2 + f) * 4 + y) * 6 + x] = tv[(b * g.tokens() + n) * C * 4 + k];
          }
  EXPECT_EQ(max_error(video, expected), 0.0);
}

TEST(Ops, PatchGridRejectsPartialPatches) {
  try {
    patch_grid(random_tensor({1, 2, 3, 5, 4}, 36), VideoAxes::bcfhw, {1, 2, 2});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[1, 2, 3, 5, 4]"), std::string::npos) << e.what();
  }
}

std::vector<double> timestep_ref(const std::vector<double>& ts, int dim, bool flip, double shift) {
  const int half = dim / 2;
  std::vector<double> out(ts.size() * dim, 0.0);
  for (size_t b = 0; b < ts.size(); ++b)
    for (int i = 0; i < half; ++i) {
      const double angle = ts[b] * std::exp(-std::log(10000.0) * i / (half - shift));
      out[b * dim + (flip ? half : 0) + i] = std::sin(angle);
      out[b * dim + (flip ? 0 : half) + i] = std::cos(angle);
    }
  return out;
}

TEST(Ops, TimestepEmbedding) {
  std::vector<double> ts = {0.5, 3.0, 17.25};
  Tensor t = Tensor::empty({3}, DType::f32);
  for (int i = 0; i < 3; ++i) t.data<float>()[i] = static_cast<float>(ts[i]);
  for (bool flip : {true, false})
    for (double shift : {0.0, 1.0})
      for (int dim : {16, 33}) {
        Tensor e = timestep_embedding(kCpu, t, dim, {flip, shift});
        EXPECT_EQ(e.shape(), (Shape{3, dim}));
        EXPECT_LT(max_error(e, timestep_ref(ts, dim, flip, shift)), 1e-5) << flip << " " << shift << " " << dim;
      }
  // Large timesteps: the f32 angle differs from the exact one by up to ~|t| * 2^-23.
  t.data<float>()[0] = 999.0f;
  ts[0] = 999.0;
  EXPECT_LT(max_error(timestep_embedding(kCpu, t, 256, {}), timestep_ref(ts, 256, true, 0.0)), 3e-4);
}

TEST(Ops, RopeTableAndRotation) {
  // Head dim 14 = 4 (t) + 6 (y) + 4 (x); a 2 x 3 x 2 grid with fractional positions.
  const std::array<int, 3> dims = {4, 6, 4};
  const std::array<std::vector<double>, 3> pos = {{{0.0, 1.0}, {0.0, 0.75, 1.5}, {0.25, 2.0}}};
  const double theta = 10000.0;
  RopeTable table = rope_table_3d(dims, pos, theta);
  ASSERT_EQ(table.cos.shape(), (Shape{12, 7}));
  std::vector<double> angles;
  for (int64_t t = 0; t < 12; ++t) {
    const int64_t at[3] = {t / 6, t / 2 % 3, t % 2};
    for (int a = 0; a < 3; ++a)
      for (int j = 0; j < dims[a] / 2; ++j) angles.push_back(pos[a][at[a]] / std::pow(theta, 2.0 * j / dims[a]));
  }
  std::vector<double> c(angles.size()), s(angles.size());
  for (size_t i = 0; i < angles.size(); ++i) {
    c[i] = std::cos(angles[i]);
    s[i] = std::sin(angles[i]);
  }
  EXPECT_LT(max_error(table.cos, c), 1e-7);
  EXPECT_LT(max_error(table.sin, s), 1e-7);

  // 3 text tokens first, then the 12 video tokens; 2 batch items, 3 heads.
  Tensor x = random_tensor({2, 15, 3, 14}, 37);
  auto xv = to_doubles(x);
  std::vector<double> expected = xv;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 12; ++t)
      for (int64_t h = 0; h < 3; ++h)
        for (int64_t i = 0; i < 7; ++i) {
          const int64_t at = ((b * 15 + 3 + t) * 3 + h) * 14 + 2 * i;
          expected[at] = xv[at] * c[t * 7 + i] - xv[at + 1] * s[t * 7 + i];
          expected[at + 1] = xv[at] * s[t * 7 + i] + xv[at + 1] * c[t * 7 + i];
        }
  apply_rope(kCpu, x, table, 3);
  EXPECT_LT(max_error(x, expected), 1e-6);
}

// CogVideoX's Q/K: LayerNorm over each head's D with weight and bias, then the rotation of the
// video tokens after 3 text tokens; float64 reference written out (layer_norm_ref, then rotate).
TEST(Ops, LayerNormRope) {
  const std::array<int, 3> dims = {2, 4, 2};
  const RopeTable table = rope_table_3d(dims, {{{0.0, 1.0}, {0.0, 1.0}, {0.0, 1.0, 2.0}}});  // 12 tokens
  Tensor x = random_tensor({2, 15, 3, 8}, 45), w = random_tensor({8}, 46), b = random_tensor({8}, 47);
  std::vector<double> expected = layer_norm_ref(x, w, b, 1e-6);
  const std::vector<double> c = to_doubles(table.cos), s = to_doubles(table.sin);
  for (int64_t item = 0; item < 2; ++item)
    for (int64_t t = 0; t < 12; ++t)
      for (int64_t h = 0; h < 3; ++h)
        for (int64_t i = 0; i < 4; ++i) {
          const int64_t at = ((item * 15 + 3 + t) * 3 + h) * 8 + 2 * i;
          const double x0 = expected[at], x1 = expected[at + 1];
          expected[at] = x0 * c[t * 4 + i] - x1 * s[t * 4 + i];
          expected[at + 1] = x0 * s[t * 4 + i] + x1 * c[t * 4 + i];
        }
  EXPECT_LT(max_error(layer_norm_rope(kCpu, x, w, b, 1e-6f, table, 3), expected), 1e-5);
  // Too many tokens for the table after the offset; not [B, N, H, D].
  EXPECT_THROW(layer_norm_rope(kCpu, x, w, b, 1e-6f, table, 4), Error);
  EXPECT_THROW(layer_norm_rope(kCpu, x.view({2, 15, 24}), {}, {}, 1e-6f, table, 0), Error);
}

TEST(Ops, AddRepeatsTrailingOperand) {
  Tensor a = random_tensor({3, 2, 5}, 39), b = random_tensor({1, 2, 5}, 40), c = random_tensor({5}, 41);
  auto av = to_doubles(a), bv = to_doubles(b), cv = to_doubles(c);
  std::vector<double> ab(av.size()), ac(av.size());
  for (size_t i = 0; i < av.size(); ++i) {
    ab[i] = av[i] + bv[i % 10];
    ac[i] = av[i] + cv[i % 5];
  }
  EXPECT_LT(max_error(add(kCpu, a, b), ab), 1e-7);
  EXPECT_LT(max_error(add(kCpu, a, c), ac), 1e-7);
  EXPECT_THROW(add(kCpu, a, random_tensor({3, 5}, 42)), Error);
}

TEST(Ops, ConcatTokens) {
  Tensor a = random_tensor({2, 3, 4}, 43), b = random_tensor({2, 5, 4}, 44).to(DType::bf16);
  Tensor y = concat_tokens(kCpu, a, b);
  ASSERT_EQ(y.shape(), (Shape{2, 8, 4}));
  auto av = to_doubles(a), bv = to_doubles(b);
  std::vector<double> expected;
  for (int64_t i = 0; i < 2; ++i) {
    expected.insert(expected.end(), av.begin() + i * 12, av.begin() + (i + 1) * 12);
    expected.insert(expected.end(), bv.begin() + i * 20, bv.begin() + (i + 1) * 20);
  }
  EXPECT_EQ(max_error(y, expected), 0.0);
}

TEST(Ops, CrossAttention) {
  // 2 items, 37 queries, 3 heads of 8 over 11 keys; and 1 key (the softmax of one score is 1).
  for (int64_t keys : {11, 1}) {
    Tensor q = random_tensor({2, 37, 3, 8}, 46), k = random_tensor({2, keys, 3, 8}, 47), v = random_tensor({2, keys, 3, 8}, 48);
    auto qv = to_doubles(q), kv = to_doubles(k), vv = to_doubles(v);
    std::vector<double> expected(qv.size());
    const double scale = 1.0 / std::sqrt(8.0);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 37; ++i)
        for (int64_t h = 0; h < 3; ++h) {
          std::vector<double> p(keys);
          double m = -1e300, sum = 0;
          for (int64_t j = 0; j < keys; ++j) {
            double s = 0;
            for (int d = 0; d < 8; ++d) s += qv[((b * 37 + i) * 3 + h) * 8 + d] * kv[((b * keys + j) * 3 + h) * 8 + d];
            m = std::max(m, p[j] = s * scale);
          }
          for (double& x : p) sum += (x = std::exp(x - m));
          for (int d = 0; d < 8; ++d) {
            double o = 0;
            for (int64_t j = 0; j < keys; ++j) o += p[j] / sum * vv[((b * keys + j) * 3 + h) * 8 + d];
            expected[((b * 37 + i) * 3 + h) * 8 + d] = o;
          }
        }
    EXPECT_LT(max_error(cross_attention(kCpu, q, k, v), expected), 1e-5) << keys << " keys";
  }
  EXPECT_THROW(cross_attention(kCpu, random_tensor({1, 4, 2, 8}, 1), random_tensor({1, 5, 3, 8}, 2),
                               random_tensor({1, 5, 3, 8}, 3)),
               Error);
}

TEST(Ops, CastConvertsAndKeepsF32) {
  Tensor x = random_tensor({3, 5}, 45);
  Tensor b = cast(kCpu, x, DType::bf16);
  EXPECT_EQ(b.dtype(), DType::bf16);
  EXPECT_LT(max_error(b, to_doubles(x)), 1e-2);
  EXPECT_EQ(cast(kCpu, x, DType::f32).raw_data(), x.raw_data());
  EXPECT_THROW(cast(kCpu, x, DType::i32), Error);
}

TEST(Ops, BlasHandleHoldsNothingOnTheCpu) { EXPECT_EQ(BlasHandle(Device::cpu()).get(), nullptr); }

TEST(Ops, CudaContextWithoutCudaOpsIsRefused) {
  const ExecContext gpu{Device::cuda(0)};
  EXPECT_THROW(silu(gpu, random_tensor({2}, 38)), Error);
}

}  // namespace
}  // namespace vdit
