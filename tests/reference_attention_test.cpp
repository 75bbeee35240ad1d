// The CPU reference attention against a float64 attention written plainly here, with the token
// pairs of dropped tiles masked to -inf at the token level.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "test_util.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

using test::expect_error;
using test::next_random;
using test::random_tensor;
using test::relative_l2_error;
using test::to_doubles;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Bounds. f32 accumulation over a few hundred keys errs by ~1e-7 relative; 1e-5 leaves room for
// the exp and the online rescaling, and catches any wrong tile (those err by 1e-2 or more).
constexpr double kOutputBound = 1e-5;  // relative L2 of the output
constexpr double kLseBound = 1e-5;     // absolute, for LSE values of order 1-10

struct Float64Attention {
  std::vector<double> out;  // [B, S, H, D]
  std::vector<double> lse;  // [B, H, S]
};

// kept[slot][query block][key block], read straight from the CSR arrays.
std::vector<std::vector<std::vector<bool>>> kept_tiles(const BlockMask& mask) {
  const int64_t qb = mask.q_blocks(), kb = mask.k_blocks();
  std::vector<std::vector<std::vector<bool>>> kept(
      mask.heads, std::vector<std::vector<bool>>(qb, std::vector<bool>(kb, false)));
  for (int h = 0; h < mask.heads; ++h) {
    for (int64_t i = 0; i < qb; ++i) {
      const int64_t row = h * qb + i;
      for (int64_t e = mask.row_offsets[row]; e < mask.row_offsets[row + 1]; ++e) {
        kept[h][i][mask.key_blocks[e]] = true;
      }
    }
  }
  return kept;
}

// Softmax attention in float64; with a mask, query i may attend key j only when tile
// (i / block_q, j / block_k) is kept. A row with no allowed key gives 0 and LSE -inf.
Float64Attention float64_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                                   const BlockMask* mask = nullptr) {
  const int64_t batch = q.size(0), queries = q.size(1), heads = q.size(2), dim = q.size(3);
  const int64_t keys = k.size(1);
  const std::vector<double> qd = to_doubles(q), kd = to_doubles(k), vd = to_doubles(v);
  const auto kept = mask ? kept_tiles(*mask) : std::vector<std::vector<std::vector<bool>>>{};
  Float64Attention r;
  r.out.assign(batch * queries * heads * dim, 0.0);
  r.lse.assign(batch * heads * queries, -kInf);
  std::vector<double> s(keys);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t slot = mask && mask->heads == batch * heads ? b * heads + h : h;
      for (int64_t i = 0; i < queries; ++i) {
        double max = -kInf;
        for (int64_t j = 0; j < keys; ++j) {
          s[j] = -kInf;
          if (mask && !kept[slot][i / mask->block_q][j / mask->block_k]) continue;
          double dot = 0.0;
          for (int64_t d = 0; d < dim; ++d) {
            dot += qd[((b * queries + i) * heads + h) * dim + d] *
                   kd[((b * keys + j) * heads + h) * dim + d];
          }
          s[j] = scale * dot;
          max = std::max(max, s[j]);
        }
        if (max == -kInf) continue;
        double sum = 0.0;
        double* o = &r.out[((b * queries + i) * heads + h) * dim];
        for (int64_t j = 0; j < keys; ++j) {
          if (s[j] == -kInf) continue;
          const double p = std::exp(s[j] - max);
          sum += p;
          for (int64_t d = 0; d < dim; ++d) o[d] += p * vd[((b * keys + j) * heads + h) * dim + d];
        }
        for (int64_t d = 0; d < dim; ++d) o[d] /= sum;
        r.lse[(b * heads + h) * queries + i] = max + std::log(sum);
      }
    }
  }
  return r;
}

BlockMask empty_mask(int64_t tokens, int block_q, int block_k, int heads) {
  BlockMask mask;
  mask.tokens = tokens;
  mask.block_q = block_q;
  mask.block_k = block_k;
  mask.heads = heads;
  mask.row_offsets.push_back(0);
  return mask;
}

BlockMask full_mask(int64_t tokens, int block_q, int block_k, int heads) {
  BlockMask mask = empty_mask(tokens, block_q, block_k, heads);
  for (int64_t row = 0; row < heads * mask.q_blocks(); ++row) {
    for (int32_t j = 0; j < mask.k_blocks(); ++j) mask.key_blocks.push_back(j);
    mask.row_offsets.push_back(static_cast<int64_t>(mask.key_blocks.size()));
  }
  return mask;
}

// Each row is empty with probability 1/8, else keeps each key block with probability 1/3.
BlockMask random_mask(int64_t tokens, int block_q, int block_k, int heads, uint64_t seed) {
  BlockMask mask = empty_mask(tokens, block_q, block_k, heads);
  for (int64_t row = 0; row < heads * mask.q_blocks(); ++row) {
    if (next_random(seed) % 8 != 0) {
      for (int32_t j = 0; j < mask.k_blocks(); ++j) {
        if (next_random(seed) % 3 == 0) mask.key_blocks.push_back(j);
      }
    }
    mask.row_offsets.push_back(static_cast<int64_t>(mask.key_blocks.size()));
  }
  return mask;
}

// Runs the reference with `mask` and checks output and LSE against float64.
void expect_matches_float64(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask* mask,
                            float scale = 0.0f) {
  AttentionOptions options;
  options.mask = mask;
  options.scale = scale;
  Tensor lse;
  Tensor out = attention_reference(q, k, v, options, &lse);
  ASSERT_EQ(out.shape(), q.shape());
  ASSERT_EQ(out.dtype(), DType::f32);
  ASSERT_EQ(lse.shape(), Shape({q.size(0), q.size(2), q.size(1)}));

  const double s = scale != 0.0f ? scale : 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const Float64Attention want = float64_attention(q, k, v, s, mask);
  const std::vector<double> got = to_doubles(out), got_lse = to_doubles(lse);
  EXPECT_LT(relative_l2_error(got, want.out), kOutputBound);

  int64_t empty_rows = 0;
  const int64_t batch = q.size(0), queries = q.size(1), heads = q.size(2), dim = q.size(3);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < queries; ++i) {
        const int64_t at = (b * heads + h) * queries + i;
        if (want.lse[at] == -kInf) {
          ++empty_rows;
          EXPECT_EQ(got_lse[at], -kInf) << "row " << i;
          for (int64_t d = 0; d < dim; ++d) {
            EXPECT_EQ(got[((b * queries + i) * heads + h) * dim + d], 0.0) << "row " << i;
          }
        } else {
          EXPECT_NEAR(got_lse[at], want.lse[at], kLseBound) << "b " << b << " h " << h << " row " << i;
        }
      }
    }
  }
  if (mask) {
    EXPECT_LT(empty_rows, batch * heads * queries) << "every row empty: a vacuous case";
  }
}

TEST(ReferenceAttention, HandComputedTwoTokens) {
  // q = k = identity rows, v = [[1, 2], [3, 4]], scale 1: row 0 scores (1, 0), row 1 (0, 1).
  const float qk[] = {1, 0, 0, 1}, vals[] = {1, 2, 3, 4};
  Tensor q = Tensor::empty({1, 2, 1, 2}, DType::f32), v = Tensor::empty({1, 2, 1, 2}, DType::f32);
  std::memcpy(q.data<float>(), qk, sizeof qk);
  std::memcpy(v.data<float>(), vals, sizeof vals);
  AttentionOptions options;
  options.scale = 1.0f;
  Tensor lse;
  Tensor out = attention_reference(q, q, v, options, &lse);
  const double e = std::exp(1.0);
  const float* o = out.data<float>();
  EXPECT_NEAR(o[0], (e * 1 + 3) / (e + 1), 1e-6);
  EXPECT_NEAR(o[1], (e * 2 + 4) / (e + 1), 1e-6);
  EXPECT_NEAR(o[2], (1 + e * 3) / (e + 1), 1e-6);
  EXPECT_NEAR(o[3], (2 + e * 4) / (e + 1), 1e-6);
  EXPECT_NEAR(lse.data<float>()[0], std::log(e + 1), 1e-6);
  EXPECT_NEAR(lse.data<float>()[1], std::log(e + 1), 1e-6);

  // 1 x 1 blocks: row 0 keeps only key 1, row 1 keeps nothing.
  BlockMask mask = empty_mask(2, 1, 1, 1);
  mask.key_blocks = {1};
  mask.row_offsets = {0, 1, 1};
  options.mask = &mask;
  out = attention_reference(q, q, v, options, &lse);
  o = out.data<float>();
  EXPECT_EQ(o[0], 3.0f);
  EXPECT_EQ(o[1], 4.0f);
  EXPECT_EQ(o[2], 0.0f);
  EXPECT_EQ(o[3], 0.0f);
  EXPECT_EQ(lse.data<float>()[0], 0.0f);  // log(exp(q0 . k1)) = 0
  EXPECT_EQ(lse.data<float>()[1], -std::numeric_limits<float>::infinity());
}

TEST(ReferenceAttention, DenseMatchesFloat64) {
  Tensor q = random_tensor({2, 150, 3, 64}, 1, 3.0f);
  Tensor k = random_tensor({2, 150, 3, 64}, 2);
  Tensor v = random_tensor({2, 150, 3, 64}, 3);
  expect_matches_float64(q, k, v, nullptr);
  expect_matches_float64(q, k, v, nullptr, 0.3f);
}

TEST(ReferenceAttention, DenseWithOtherKeyCount) {
  Tensor q = random_tensor({1, 50, 2, 16}, 4, 3.0f);
  Tensor k = random_tensor({1, 170, 2, 16}, 5);
  Tensor v = random_tensor({1, 170, 2, 16}, 6);
  expect_matches_float64(q, k, v, nullptr);
}

TEST(ReferenceAttention, AllTilesKeptEqualsDense) {
  Tensor q = random_tensor({2, 300, 2, 64}, 7, 3.0f);
  Tensor k = random_tensor({2, 300, 2, 64}, 8);
  Tensor v = random_tensor({2, 300, 2, 64}, 9);
  Tensor dense_lse, lse;
  const std::vector<double> dense = to_doubles(attention_reference(q, k, v, {}, &dense_lse));

  // Same key blocks as the dense path (128): the same arithmetic, bitwise.
  BlockMask same = full_mask(300, 128, 128, 2);
  AttentionOptions options;
  options.mask = &same;
  EXPECT_EQ(to_doubles(attention_reference(q, k, v, options, &lse)), dense);
  EXPECT_EQ(to_doubles(lse), to_doubles(dense_lse));

  // Other blocks (per batch item) only change where the online softmax rescales.
  BlockMask other = full_mask(300, 48, 80, 4);
  options.mask = &other;
  const std::vector<double> got = to_doubles(attention_reference(q, k, v, options, &lse));
  EXPECT_LT(relative_l2_error(got, dense), 1e-6);
  const std::vector<double> got_lse = to_doubles(lse), want_lse = to_doubles(dense_lse);
  for (size_t i = 0; i < got_lse.size(); ++i) EXPECT_NEAR(got_lse[i], want_lse[i], 1e-6);
}

struct MaskCase {
  int64_t batch, tokens, heads, dim;
  int block_q, block_k;
  bool per_batch;  // mask heads == B*H
};

TEST(ReferenceAttention, RandomMasksMatchFloat64) {
  const MaskCase cases[] = {
      {1, 256, 2, 64, 64, 64, false},  {1, 200, 3, 16, 32, 48, false},  // ragged, block_q != block_k
      {2, 130, 2, 96, 64, 32, true},   {2, 77, 1, 64, 16, 8, true},
      {1, 300, 2, 64, 128, 128, false}, {2, 129, 2, 16, 128, 16, false},
  };
  uint64_t seed = 100;
  for (const MaskCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << "B " << c.batch << " S " << c.tokens << " H " << c.heads << " D "
                                      << c.dim << " blocks " << c.block_q << "x" << c.block_k
                                      << (c.per_batch ? " per batch" : ""));
    const Shape shape{c.batch, c.tokens, c.heads, c.dim};
    Tensor q = random_tensor(shape, ++seed, 3.0f), k = random_tensor(shape, ++seed),
           v = random_tensor(shape, ++seed);
    const int slots = static_cast<int>(c.per_batch ? c.batch * c.heads : c.heads);
    BlockMask mask = random_mask(c.tokens, c.block_q, c.block_k, slots, ++seed);
    expect_matches_float64(q, k, v, &mask);
  }
}

TEST(ReferenceAttention, BuiltMasksMatchFloat64) {
  const VideoLayout layouts[] = {
      {3, 4, 5, 7, TextPosition::first},
      {4, 3, 6, 5, TextPosition::last},
      {5, 4, 4, 0, TextPosition::none},
  };
  const std::vector<Pattern> patterns = {Pattern::spatial(0.3), Pattern::temporal(0.3), Pattern::tile(1),
                                         Pattern::spatial(0.2, true)};
  uint64_t seed = 200;
  for (const VideoLayout& layout : layouts) {
    SCOPED_TRACE(layout.to_string());
    const int64_t tokens = layout.tokens();
    for (const auto& [block_q, block_k] : {std::pair{16, 32}, std::pair{8, 8}}) {
      SCOPED_TRACE(::testing::Message() << "blocks " << block_q << "x" << block_k);
      // Shared by the batch: one pattern per head.
      const Shape shape{2, tokens, 4, 16};
      Tensor q = random_tensor(shape, ++seed, 3.0f), k = random_tensor(shape, ++seed),
             v = random_tensor(shape, ++seed);
      BlockMask shared = build_block_mask(layout, patterns, block_q, block_k);
      expect_matches_float64(q, k, v, &shared);

      // Per (batch item, head): 2 x 2 slots, the batch items with different patterns.
      const Shape shape2{2, tokens, 2, 64};
      Tensor q2 = random_tensor(shape2, ++seed, 3.0f), k2 = random_tensor(shape2, ++seed),
             v2 = random_tensor(shape2, ++seed);
      BlockMask per_batch = build_block_mask(layout, patterns, block_q, block_k);
      EXPECT_LT(per_batch.density(), 1.0);
      expect_matches_float64(q2, k2, v2, &per_batch);
    }
  }
}

TEST(ReferenceAttention, HalfInputsEqualTheirF32Upcasts) {
  const Shape shape{1, 140, 2, 32};
  BlockMask mask = random_mask(140, 32, 64, 2, 300);
  AttentionOptions options;
  options.mask = &mask;
  for (DType dtype : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor q = random_tensor(shape, 301, 3.0f, dtype), k = random_tensor(shape, 302, 1.0f, dtype),
           v = random_tensor(shape, 303, 1.0f, dtype);
    Tensor lse_half, lse_f32;
    const std::vector<double> half = to_doubles(attention_reference(q, k, v, options, &lse_half));
    const std::vector<double> f32 = to_doubles(
        attention_reference(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), options, &lse_f32));
    EXPECT_EQ(half, f32);
    EXPECT_EQ(to_doubles(lse_half), to_doubles(lse_f32));
  }
  // A mix of dtypes reads each as f32 too.
  Tensor q = random_tensor(shape, 304, 3.0f, DType::bf16), k = random_tensor(shape, 305, 1.0f, DType::f16),
         v = random_tensor(shape, 306);
  EXPECT_EQ(to_doubles(attention_reference(q, k, v, options)),
            to_doubles(attention_reference(q.to(DType::f32), k.to(DType::f32), v, options)));
}

TEST(ReferenceAttention, StridedInputsEqualContiguous) {
  // q as a [B, H, S, D] tensor transposed to [B, S, H, D]; k and v as slices of a wider head dim.
  Tensor q = random_tensor({2, 3, 90, 16}, 400, 3.0f).transpose(1, 2);
  Tensor k = random_tensor({2, 90, 3, 40}, 401).slice(3, 8, 24);
  Tensor v = random_tensor({2, 90, 3, 40}, 402, 1.0f, DType::bf16).slice(3, 20, 36);
  ASSERT_FALSE(q.is_contiguous());
  ASSERT_FALSE(k.is_contiguous());
  BlockMask mask = random_mask(90, 32, 16, 6, 403);
  AttentionOptions options;
  options.mask = &mask;
  EXPECT_EQ(to_doubles(attention_reference(q, k, v, options)),
            to_doubles(attention_reference(q.contiguous(), k.contiguous(), v.contiguous(), options)));
  expect_matches_float64(q, k, v, &mask);
}

TEST(ReferenceAttention, BadInputsGiveClearErrors) {
  Tensor q = random_tensor({1, 128, 4, 64}, 500);
  Tensor k_bad = random_tensor({1, 128, 3, 64}, 501, 1.0f, DType::bf16);
  expect_error([&] { attention_reference(q, k_bad, k_bad); }, ErrorCode::invalid_argument,
               "k is bf16[1, 128, 3, 64], expected [B, S, H, D] = [1, S, 4, 64]");
  Tensor v_short = random_tensor({1, 100, 4, 64}, 502);
  expect_error([&] { attention_reference(q, q, v_short); }, ErrorCode::invalid_argument,
               "v is f32[1, 100, 4, 64], expected the shape of k [1, 128, 4, 64]");
  Tensor flat = random_tensor({128, 4, 64}, 503);
  expect_error([&] { attention_reference(flat, q, q); }, ErrorCode::invalid_argument,
               "q is f32[128, 4, 64], expected [B, S, H, D]");
  Tensor ints = Tensor::zeros({1, 128, 4, 64}, DType::i32);
  expect_error([&] { attention_reference(q, ints, q); }, ErrorCode::unsupported,
               "k is i32[1, 128, 4, 64], expected f32, f16 or bf16");
  Tensor none = Tensor::zeros({1, 0, 4, 64}, DType::f32);
  expect_error([&] { attention_reference(none, none, none); }, ErrorCode::invalid_argument,
               "every dimension of [B, S, H, D] must be positive");
  expect_error([&] { attention_reference(Tensor(), q, q); }, ErrorCode::invalid_argument, "q is undefined");

  AttentionOptions options;
  options.scale = std::nanf("");
  expect_error([&] { attention_reference(q, q, q, options); }, ErrorCode::invalid_argument, "scale is nan");

  BlockMask wrong_tokens = full_mask(100, 64, 64, 4);
  options = {};
  options.mask = &wrong_tokens;
  expect_error([&] { attention_reference(q, q, q, options); }, ErrorCode::invalid_argument,
               "mask covers 100 tokens, q is f32[1, 128, 4, 64]");
  BlockMask wrong_heads = full_mask(128, 64, 64, 3);
  options.mask = &wrong_heads;
  expect_error([&] { attention_reference(q, q, q, options); }, ErrorCode::invalid_argument,
               "mask has 3 head slots, expected H = 4 or B*H = 4");
  Tensor k_long = random_tensor({1, 256, 4, 64}, 504);
  BlockMask full = full_mask(128, 64, 64, 4);
  options.mask = &full;
  expect_error([&] { attention_reference(q, k_long, k_long, options); }, ErrorCode::invalid_argument,
               "a block mask needs as many keys as queries");
  BlockMask out_of_range = full_mask(128, 64, 64, 4);
  out_of_range.key_blocks[1] = 7;  // only key blocks 0 and 1 exist
  options.mask = &out_of_range;
  EXPECT_THROW(attention_reference(q, q, q, options), Error);
}

}  // namespace
}  // namespace vdit
