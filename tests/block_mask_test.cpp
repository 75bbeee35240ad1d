// Block mask builders against a brute-force construction: every token pair is tested with
// token_pair_allowed and a tile is kept when any of its pairs is allowed.
#include <gtest/gtest.h>

#include <vector>

#include "vdit/attention.h"

namespace vdit {
namespace {

bool banded(const Pattern& p) { return p.kind == Pattern::Kind::spatial || p.kind == Pattern::Kind::temporal; }

// The CSR of kept tiles, derived from all S^2 token pairs.
BlockMask brute_force_mask(const VideoLayout& layout, const std::vector<Pattern>& patterns, int bq, int bk) {
  BlockMask mask;
  mask.tokens = layout.tokens();
  mask.block_q = bq;
  mask.block_k = bk;
  mask.heads = static_cast<int>(patterns.size());
  const int64_t s = layout.tokens(), qbs = mask.q_blocks(), kbs = mask.k_blocks();
  mask.row_offsets.push_back(0);
  for (const Pattern& p : patterns) {
    const int64_t band = banded(p) ? band_width(layout, p, bk) : 0;
    std::vector<uint8_t> kept(qbs * kbs, 0);
    for (int64_t q = 0; q < s; ++q) {
      for (int64_t k = 0; k < s; ++k) {
        if (token_pair_allowed(layout, p, band, q, k)) kept[(q / bq) * kbs + k / bk] = 1;
      }
    }
    for (int64_t i = 0; i < qbs; ++i) {
      for (int64_t j = 0; j < kbs; ++j) {
        if (kept[i * kbs + j]) mask.key_blocks.push_back(static_cast<int32_t>(j));
      }
      mask.row_offsets.push_back(static_cast<int64_t>(mask.key_blocks.size()));
    }
  }
  return mask;
}

// Sum over kept tiles of their real (ragged) area, divided by S^2, averaged over heads.
double brute_force_density(const BlockMask& m) {
  double sum = 0;
  for (int h = 0; h < m.heads; ++h) {
    int64_t area = 0;
    for (int64_t i = 0; i < m.q_blocks(); ++i) {
      for (int32_t j : m.row(h, i)) {
        int64_t rows = std::min<int64_t>(m.tokens, (i + 1) * m.block_q) - i * m.block_q;
        int64_t cols = std::min<int64_t>(m.tokens, (j + 1) * int64_t{m.block_k}) - j * int64_t{m.block_k};
        area += rows * cols;
      }
    }
    sum += static_cast<double>(area) / (static_cast<double>(m.tokens) * m.tokens);
  }
  return sum / m.heads;
}

std::vector<Pattern> patterns_for(int64_t frames) {
  std::vector<Pattern> ps = {Pattern::dense()};
  for (int g = 0; g <= frames; ++g) ps.push_back(Pattern::tile(g));
  for (double d : {0.02, 0.1, 0.3, 0.55, 0.9, 1.0}) {
    ps.push_back(Pattern::spatial(d));
    ps.push_back(Pattern::spatial(d, true));
    ps.push_back(Pattern::temporal(d));
  }
  return ps;
}

std::string describe(const VideoLayout& layout, int bq, int bk) {
  return layout.to_string() + " blocks " + std::to_string(bq) + "x" + std::to_string(bk);
}

void expect_same_mask(const BlockMask& got, const BlockMask& want, const std::string& what) {
  ASSERT_NO_THROW(got.validate()) << what;
  ASSERT_EQ(got.tokens, want.tokens) << what;
  ASSERT_EQ(got.heads, want.heads) << what;
  ASSERT_EQ(got.row_offsets, want.row_offsets) << what;
  ASSERT_EQ(got.key_blocks, want.key_blocks) << what;
  ASSERT_NEAR(got.density(), brute_force_density(want), 1e-12) << what;
}

struct Grid {
  int64_t h, w;
};
struct Text {
  int64_t count;
  TextPosition position;
};

const std::vector<Grid> kGrids = {{1, 1}, {2, 3}, {3, 5}, {4, 4}};
const std::vector<Text> kTexts = {
    {0, TextPosition::none}, {3, TextPosition::first}, {5, TextPosition::last}, {9, TextPosition::first}};
const std::vector<std::pair<int, int>> kBlocks = {{4, 4}, {8, 8}, {16, 16}, {4, 8}, {8, 4}, {5, 3}};

TEST(BlockMask, EveryPatternMatchesBruteForceOnSmallLayouts) {
  int cases = 0;
  for (int64_t frames : {1, 2, 3, 5}) {
    for (Grid grid : kGrids) {
      for (Text text : kTexts) {
        VideoLayout layout{frames, grid.h, grid.w, text.count, text.position};
        for (auto [bq, bk] : kBlocks) {
          for (const Pattern& p : patterns_for(frames)) {
            std::vector<Pattern> one = {p};
            expect_same_mask(build_block_mask(layout, one, bq, bk), brute_force_mask(layout, one, bq, bk),
                             describe(layout, bq, bk) + " " + p.to_string());
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_GT(cases, 2000);
}

TEST(BlockMask, MixedHeadPatternsMatchBruteForce) {
  for (Text text : kTexts) {
    VideoLayout layout{6, 3, 7, text.count, text.position};  // L = 21: ragged for every block below
    std::vector<Pattern> heads = {Pattern::spatial(0.2, true), Pattern::temporal(0.2), Pattern::tile(2),
                                  Pattern::dense(), Pattern::spatial(0.2), Pattern::temporal(0.2),
                                  Pattern::tile(0), Pattern::spatial(0.6)};
    for (auto [bq, bk] : kBlocks) {
      expect_same_mask(build_block_mask(layout, heads, bq, bk), brute_force_mask(layout, heads, bq, bk),
                       describe(layout, bq, bk) + " mixed");
    }
  }
}

TEST(BlockMask, LargerRaggedLayoutsMatchBruteForce) {
  VideoLayout layouts[] = {{8, 6, 6, 10, TextPosition::last}, {7, 5, 9, 0, TextPosition::none},
                           {10, 3, 11, 17, TextPosition::first}};
  for (const VideoLayout& layout : layouts) {
    for (auto [bq, bk] : std::vector<std::pair<int, int>>{{16, 16}, {32, 16}, {12, 20}}) {
      std::vector<Pattern> heads = {Pattern::tile(1), Pattern::tile(3), Pattern::spatial(0.07, true),
                                    Pattern::spatial(0.25), Pattern::temporal(0.07), Pattern::temporal(0.4)};
      expect_same_mask(build_block_mask(layout, heads, bq, bk), brute_force_mask(layout, heads, bq, bk),
                       describe(layout, bq, bk));
    }
  }
}

// Frame tiles of tile:g are (2g+1)T - g(g+1); with L a multiple of the block each is (L/B)^2 tiles.
TEST(BlockMask, TileCountMatchesFormula) {
  for (int64_t frames : {1, 4, 7, 12, 33}) {
    for (int64_t g = 0; g <= std::min<int64_t>(frames, 5); ++g) {
      for (int block : {8, 16}) {
        VideoLayout layout{frames, 4, 8, 0, TextPosition::none};  // L = 32
        BlockMask m = build_block_mask(layout, Pattern::tile(static_cast<int>(g)), 2, block, block);
        const int64_t per_side = 32 / block;
        const int64_t frame_tiles = (2 * g + 1) * frames - g * (g + 1);
        EXPECT_EQ(m.kept_tiles(0), frame_tiles * per_side * per_side) << frames << " " << g << " " << block;
        EXPECT_EQ(m.kept_tiles(), 2 * m.kept_tiles(0));
      }
    }
  }
}

// Allowed token pairs with band w, counted one by one.
int64_t allowed_pairs(const VideoLayout& layout, const Pattern& p, int64_t w) {
  int64_t n = 0;
  for (int64_t q = 0; q < layout.tokens(); ++q) {
    for (int64_t k = 0; k < layout.tokens(); ++k) n += token_pair_allowed(layout, p, w, q, k);
  }
  return n;
}

TEST(BlockMask, BandWidthIsTheSmallestBlockMultipleReachingTheDensity) {
  VideoLayout layouts[] = {{5, 4, 6, 0, TextPosition::none}, {6, 3, 5, 11, TextPosition::last},
                           {4, 7, 3, 6, TextPosition::first}, {1, 5, 5, 0, TextPosition::none}};
  int checked_below = 0;
  for (const VideoLayout& layout : layouts) {
    const int64_t v = layout.video_tokens();
    const double total = static_cast<double>(layout.tokens()) * layout.tokens();
    for (int block : {1, 4, 8}) {
      for (double d : {0.01, 0.05, 0.1, 0.2, 0.33, 0.5, 0.75, 0.99, 1.0}) {
        for (const Pattern& p : {Pattern::spatial(d), Pattern::spatial(d, true), Pattern::temporal(d)}) {
          const int64_t w = band_width(layout, p, block);
          const std::string what = layout.to_string() + " " + p.to_string() + " block " + std::to_string(block);
          ASSERT_GE(w, 0) << what;
          ASSERT_LE(w, v - 1) << what;
          ASSERT_TRUE(w % block == 0 || w == v - 1) << what << " w " << w;
          EXPECT_GE(allowed_pairs(layout, p, w) / total, d) << what;
          const int64_t below = w % block == 0 ? w - block : w / block * block;
          if (below >= 0) {
            EXPECT_LT(allowed_pairs(layout, p, below) / total, d) << what << " w " << w;
            ++checked_below;
          }
          BlockMask m = build_block_mask(layout, p, 1, block, block);
          EXPECT_GE(m.density(), d) << what;
        }
      }
    }
  }
  EXPECT_GT(checked_below, 100);
}

TEST(BlockMask, DensityOfDenseIsOneAndHeadsAverage) {
  VideoLayout layout{3, 5, 5, 4, TextPosition::last};
  BlockMask dense = build_block_mask(layout, Pattern::dense(), 3, 16, 16);
  EXPECT_EQ(dense.density(), 1.0);
  std::vector<Pattern> heads = {Pattern::dense(), Pattern::tile(0)};
  BlockMask mixed = build_block_mask(layout, heads, 4, 4);
  EXPECT_DOUBLE_EQ(mixed.density(), (mixed.density(0) + mixed.density(1)) / 2);
  EXPECT_EQ(mixed.density(0), 1.0);
  EXPECT_LT(mixed.density(1), 1.0);
}

TEST(BlockMask, BadInputsFailWithAClearError) {
  VideoLayout layout{3, 2, 2, 0, TextPosition::none};
  auto message_of = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message_of([&] { build_block_mask(layout, Pattern::tile(4), 1); }).find("tile:4"), std::string::npos);
  EXPECT_NE(message_of([&] { build_block_mask(layout, Pattern::spatial(0.0), 1); }).find("spatial:0"),
            std::string::npos);
  EXPECT_NE(message_of([&] { build_block_mask(layout, Pattern::temporal(1.5), 1); }).find("temporal:1.5"),
            std::string::npos);
  EXPECT_NE(message_of([&] { build_block_mask(layout, Pattern::dense(), 1, 0, 4); }).find("block_q"),
            std::string::npos);
  EXPECT_NE(message_of([&] { build_block_mask(layout, Pattern::dense(), 0); }).find("heads"), std::string::npos);
  EXPECT_NE(message_of([&] { build_block_mask(VideoLayout{0, 1, 1}, Pattern::dense(), 1); }).find("frames"),
            std::string::npos);
  BlockMask m = build_block_mask(layout, Pattern::dense(), 1, 4, 4);
  EXPECT_THROW(m.row(1, 0), Error);
  EXPECT_THROW(m.row(0, m.q_blocks()), Error);
  m.key_blocks[0] = 7;
  EXPECT_THROW(m.validate(), Error);
}

}  // namespace
}  // namespace vdit
