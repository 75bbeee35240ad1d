// The online profiler on inputs built to have a known best pattern, its row sampling, and its MSE
// against outputs computed another way (whole tensors permuted, reference attention with masks).
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "test_util.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

using test::expect_error;
using test::random_uniform;

// How the queries and keys of one (batch item, head) are built.
enum class Kind {
  frame_local,       // a per-frame signature dominates q and k: attention stays inside the frame
  position_aligned,  // a per-spatial-position signature shared by all frames: attention follows
                     // the same place across frames
  random,            // uniform q and k with a large scale: sharp attention on arbitrary keys
};

// Q, K, V [B, S, H, D] (f32) where slot b*H + h is built by kinds[b*H + h].
struct Inputs {
  Tensor q, k, v;
};

Inputs make_inputs(const VideoLayout& layout, int64_t batch, int64_t heads, int64_t dim,
                   const std::vector<Kind>& kinds, uint64_t seed) {
  const int64_t tokens = layout.tokens(), frame_tokens = layout.frame_tokens();
  const Shape shape{batch, tokens, heads, dim};
  Inputs in{Tensor::empty(shape, DType::f32), Tensor::empty(shape, DType::f32),
            test::random_tensor(shape, seed + 1)};
  const float signature_scale = 1.5f, noise = 0.3f, random_scale = 3.0f;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const Kind kind = kinds[b * heads + h];
      // One signature per frame or per spatial position.
      const int64_t groups = kind == Kind::frame_local ? layout.frames : frame_tokens;
      std::vector<float> signature(groups * dim);
      for (float& x : signature) x = random_uniform(seed);
      for (int64_t t = 0; t < tokens; ++t) {
        float* q = in.q.data<float>() + ((b * tokens + t) * heads + h) * dim;
        float* k = in.k.data<float>() + ((b * tokens + t) * heads + h) * dim;
        const int64_t video = t - layout.video_begin();
        const bool text = layout.is_text(t);
        const int64_t group = kind == Kind::frame_local ? video / frame_tokens : video % frame_tokens;
        for (int64_t d = 0; d < dim; ++d) {
          if (kind == Kind::random) {
            q[d] = random_scale * random_uniform(seed);
            k[d] = random_scale * random_uniform(seed);
          } else {
            const float base = text ? 0.0f : signature_scale * signature[group * dim + d];
            q[d] = base + noise * random_uniform(seed);
            k[d] = base + noise * random_uniform(seed);
          }
        }
      }
    }
  }
  return in;
}

const VideoLayout kLayouts[] = {
    {8, 8, 8, 16, TextPosition::first},  // L = 64: frames fill whole blocks of 64
    {6, 6, 10, 20, TextPosition::last},  // L = 60: ragged against the blocks
    {7, 5, 9, 0, TextPosition::none},
};

const std::vector<Pattern> kCandidates = {Pattern::spatial(0.25), Pattern::temporal(0.25)};
constexpr int kSpatial = 0, kTemporal = 1;

ProfileOptions small_blocks(uint64_t seed = 0) {
  ProfileOptions options;
  options.block_q = 64;
  options.block_k = 64;
  options.seed = seed;
  return options;
}

std::vector<Kind> repeat(Kind kind, int64_t n) { return std::vector<Kind>(n, kind); }

TEST(Profiler, FrameLocalPicksSpatial) {
  for (const VideoLayout& layout : kLayouts) {
    SCOPED_TRACE(layout.to_string());
    Inputs in = make_inputs(layout, 1, 4, 64, repeat(Kind::frame_local, 4), 1);
    ProfileResult r = profile_heads(in.q, in.k, in.v, layout, kCandidates, small_blocks());
    ASSERT_EQ(r.choice.size(), 4u);
    for (int h = 0; h < 4; ++h) {
      EXPECT_EQ(r.choice[h], kSpatial) << "head " << h << ": spatial mse " << r.mse[h * 2] << ", temporal "
                                       << r.mse[h * 2 + 1];
    }
  }
}

TEST(Profiler, PositionAlignedPicksTemporal) {
  for (const VideoLayout& layout : kLayouts) {
    SCOPED_TRACE(layout.to_string());
    Inputs in = make_inputs(layout, 1, 4, 64, repeat(Kind::position_aligned, 4), 2);
    ProfileResult r = profile_heads(in.q, in.k, in.v, layout, kCandidates, small_blocks());
    for (int h = 0; h < 4; ++h) {
      EXPECT_EQ(r.choice[h], kTemporal) << "head " << h << ": spatial mse " << r.mse[h * 2] << ", temporal "
                                        << r.mse[h * 2 + 1];
    }
  }
}

// Heads of one batch item differ, and the two batch items choose differently for the same head.
std::vector<Kind> mixed_kinds() {
  std::vector<Kind> kinds;
  for (int b = 0; b < 2; ++b) {
    for (int h = 0; h < 6; ++h) {
      kinds.push_back((h + b) % 2 == 0 ? Kind::frame_local : Kind::position_aligned);
    }
  }
  return kinds;
}

int expected_choice(Kind kind) { return kind == Kind::frame_local ? kSpatial : kTemporal; }

TEST(Profiler, MixedHeadsAndBatchItemsChooseEach) {
  const std::vector<Kind> kinds = mixed_kinds();
  for (const VideoLayout& layout : kLayouts) {
    SCOPED_TRACE(layout.to_string());
    Inputs in = make_inputs(layout, 2, 6, 32, kinds, 3);
    ProfileResult r = profile_heads(in.q, in.k, in.v, layout, kCandidates, small_blocks());
    ASSERT_EQ(r.batch, 2);
    ASSERT_EQ(r.heads, 6);
    ASSERT_EQ(r.candidates, 2);
    ASSERT_EQ(r.mse.size(), 24u);
    for (size_t slot = 0; slot < kinds.size(); ++slot) {
      EXPECT_EQ(r.choice[slot], expected_choice(kinds[slot])) << "slot " << slot;
    }
    const std::vector<Pattern> patterns = r.patterns(kCandidates);
    ASSERT_EQ(patterns.size(), 12u);
    for (size_t slot = 0; slot < kinds.size(); ++slot) {
      EXPECT_EQ(patterns[slot], kCandidates[r.choice[slot]]);
    }
  }
}

TEST(Profiler, DeterministicForASeedAndStableAcrossSeeds) {
  const VideoLayout& layout = kLayouts[1];
  const std::vector<Kind> kinds = mixed_kinds();
  Inputs in = make_inputs(layout, 2, 6, 32, kinds, 4);
  ProfileResult first = profile_heads(in.q, in.k, in.v, layout, kCandidates, small_blocks(7));
  ProfileResult again = profile_heads(in.q, in.k, in.v, layout, kCandidates, small_blocks(7));
  EXPECT_EQ(first.choice, again.choice);
  EXPECT_EQ(first.mse, again.mse);
  EXPECT_EQ(first.relative_error, again.relative_error);
  for (uint64_t seed : {1u, 2u, 3u, 12345u}) {
    ProfileResult other = profile_heads(in.q, in.k, in.v, layout, kCandidates, small_blocks(seed));
    EXPECT_EQ(other.choice, first.choice) << "seed " << seed;
    EXPECT_NE(other.mse, first.mse) << "seed " << seed << " sampled the same rows";
  }
}

TEST(Profiler, DenseFallbackWhenNoCandidateFits) {
  const VideoLayout& layout = kLayouts[0];
  Inputs noise = make_inputs(layout, 1, 3, 64, repeat(Kind::random, 3), 5);
  ProfileOptions options = small_blocks();
  ProfileResult without = profile_heads(noise.q, noise.k, noise.v, layout, kCandidates, options);
  options.dense_fallback = 0.2;
  ProfileResult with = profile_heads(noise.q, noise.k, noise.v, layout, kCandidates, options);
  for (int h = 0; h < 3; ++h) {
    EXPECT_NE(without.choice[h], -1);
    EXPECT_GT(std::min(with.relative_error[h * 2], with.relative_error[h * 2 + 1]), options.dense_fallback);
    EXPECT_EQ(with.choice[h], -1) << "head " << h;
  }
  EXPECT_EQ(with.patterns(kCandidates), std::vector<Pattern>(3, Pattern::dense()));

  // The same threshold keeps the clear inputs sparse (their best relative errors are ~0.02 at
  // D = 64, the noise inputs' 0.4 or more).
  const std::vector<Kind> kinds = mixed_kinds();
  Inputs clear = make_inputs(layout, 2, 6, 64, kinds, 6);
  ProfileResult r = profile_heads(clear.q, clear.k, clear.v, layout, kCandidates, options);
  for (size_t slot = 0; slot < kinds.size(); ++slot) {
    EXPECT_EQ(r.choice[slot], expected_choice(kinds[slot])) << "slot " << slot;
  }
}

// The MSE and relative error of every candidate, recomputed from whole-tensor attention: dense,
// spatial with its mask, temporal on tensors gathered to token-major order and scattered back.
TEST(Profiler, ErrorsMatchWholeTensorAttention) {
  const std::vector<Pattern> candidates = {Pattern::spatial(0.3, true), Pattern::temporal(0.2),
                                           Pattern::tile(1), Pattern::dense()};
  for (const VideoLayout& layout : kLayouts) {
    SCOPED_TRACE(layout.to_string());
    const int64_t batch = 2, heads = 3, dim = 16, tokens = layout.tokens();
    Tensor q = test::random_tensor({batch, tokens, heads, dim}, 10, 2.0f, DType::bf16);
    Tensor k = test::random_tensor({batch, tokens, heads, dim}, 11, 2.0f);
    Tensor v = test::random_tensor({batch, tokens, heads, dim}, 12);
    ProfileOptions options = small_blocks(3);
    options.block_k = 32;
    options.sample_rows = 40;
    ProfileResult r = profile_heads(q, k, v, layout, candidates, options);

    const std::vector<double> dense = test::to_doubles(attention_reference(q, k, v));
    const std::vector<uint8_t> all_heads(heads, 1);
    for (size_t c = 0; c < candidates.size(); ++c) {
      SCOPED_TRACE(candidates[c].to_string());
      BlockMask mask = build_block_mask(layout, candidates[c], heads, options.block_q, options.block_k);
      AttentionOptions attention;
      attention.mask = &mask;
      Tensor out;
      if (candidates[c].permuted()) {
        out = attention_reference(gather_to_token_major(q, layout, all_heads),
                                  gather_to_token_major(k, layout, all_heads),
                                  gather_to_token_major(v, layout, all_heads), attention);
        out = scatter_from_token_major(out, layout, all_heads);
      } else {
        out = attention_reference(q, k, v, attention);
      }
      const std::vector<double> got = test::to_doubles(out);
      for (int64_t b = 0; b < batch; ++b) {
        const std::vector<int64_t> rows = profile_sample_rows(layout, options, b);
        for (int64_t h = 0; h < heads; ++h) {
          double error = 0.0, squares = 0.0;
          for (int64_t row : rows) {
            for (int64_t d = 0; d < dim; ++d) {
              const size_t at = ((b * tokens + row) * heads + h) * dim + d;
              error += (got[at] - dense[at]) * (got[at] - dense[at]);
              squares += dense[at] * dense[at];
            }
          }
          const size_t at = (b * heads + h) * candidates.size() + c;
          const double mse = error / static_cast<double>(rows.size() * dim);
          // f32 outputs agree to ~1e-6 relative, so errors of 1e-3 and more agree to ~1e-3.
          EXPECT_NEAR(r.mse[at], mse, 1e-3 * mse + 1e-10) << "b " << b << " h " << h;
          EXPECT_NEAR(r.relative_error[at], error / squares, 1e-3 * error / squares + 1e-10);
        }
      }
    }
  }
}

TEST(Profiler, SampleRowsAreDistinctSortedVideoTokens) {
  for (const VideoLayout& layout : kLayouts) {
    SCOPED_TRACE(layout.to_string());
    ProfileOptions options;
    options.sample_rows = 50;
    std::set<std::vector<int64_t>> seen;
    for (uint64_t seed = 0; seed < 4; ++seed) {
      options.seed = seed;
      for (int64_t b = 0; b < 3; ++b) {
        const std::vector<int64_t> rows = profile_sample_rows(layout, options, b);
        ASSERT_EQ(rows.size(), 50u);
        EXPECT_EQ(rows, profile_sample_rows(layout, options, b));
        for (size_t i = 0; i < rows.size(); ++i) {
          EXPECT_FALSE(layout.is_text(rows[i]));
          EXPECT_GE(rows[i], 0);
          EXPECT_LT(rows[i], layout.tokens());
          if (i > 0) {
            EXPECT_LT(rows[i - 1], rows[i]);
          }
        }
        seen.insert(rows);
      }
    }
    EXPECT_EQ(seen.size(), 12u) << "seeds or batch items sampled the same rows";

    // More rows than video tokens: every video token once.
    options.sample_rows = 100000;
    const std::vector<int64_t> all = profile_sample_rows(layout, options, 0);
    ASSERT_EQ(static_cast<int64_t>(all.size()), layout.video_tokens());
    EXPECT_EQ(all.front(), layout.video_begin());
    EXPECT_EQ(all.back(), layout.video_end() - 1);
  }
}

// Every video token is drawn about equally often: 4000 draws of 8 rows from 64 tokens give each
// token 500 on average (standard deviation ~21); 400..600 fails only for a broken sampler.
TEST(Profiler, SampleRowsAreUniform) {
  const VideoLayout layout{4, 4, 4, 3, TextPosition::first};
  ProfileOptions options;
  options.sample_rows = 8;
  std::vector<int> count(layout.tokens(), 0);
  for (uint64_t seed = 0; seed < 4000; ++seed) {
    options.seed = seed;
    for (int64_t row : profile_sample_rows(layout, options, 0)) ++count[row];
  }
  for (int64_t t = layout.video_begin(); t < layout.video_end(); ++t) {
    EXPECT_GT(count[t], 400) << "token " << t;
    EXPECT_LT(count[t], 600) << "token " << t;
  }
}

TEST(Profiler, BadInputsGiveClearErrors) {
  const VideoLayout layout{2, 4, 4, 0, TextPosition::none};
  Tensor x = test::random_tensor({1, 32, 2, 16}, 20);
  Tensor short_k = test::random_tensor({1, 30, 2, 16}, 21);
  expect_error([&] { profile_heads(x, short_k, x, layout, kCandidates); }, ErrorCode::invalid_argument,
               "k is f32[1, 30, 2, 16], expected [B, S, H, D] with S = 32");
  Tensor other_heads = test::random_tensor({1, 32, 3, 16}, 22);
  expect_error([&] { profile_heads(x, x, other_heads, layout, kCandidates); }, ErrorCode::invalid_argument,
               "v is f32[1, 32, 3, 16], expected the shape of q [1, 32, 2, 16]");
  expect_error([&] { profile_heads(x, x, x, layout, {}); }, ErrorCode::invalid_argument,
               "no candidate patterns");
  ProfileOptions options;
  options.sample_rows = 0;
  expect_error([&] { profile_heads(x, x, x, layout, kCandidates, options); }, ErrorCode::invalid_argument,
               "sample_rows is 0");
  options = {};
  options.dense_fallback = -1.0;
  expect_error([&] { profile_heads(x, x, x, layout, kCandidates, options); }, ErrorCode::invalid_argument,
               "dense_fallback is -1");
  ProfileResult r = profile_heads(x, x, x, layout, kCandidates);
  expect_error([&] { r.patterns(std::vector<Pattern>{Pattern::dense()}); }, ErrorCode::invalid_argument,
               "1 candidates given, the profile has 2");
}

}  // namespace
}  // namespace vdit
