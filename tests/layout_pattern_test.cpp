// VideoLayout, pattern names and parsing, and the token-level rule on hand-checked cases.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "vdit/attention.h"

namespace vdit {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    return e.what();
  }
  return "no error";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(VideoLayout, IndicesForEachTextPosition) {
  VideoLayout first{33, 45, 80, 256, TextPosition::first};
  EXPECT_EQ(first.frame_tokens(), 3600);
  EXPECT_EQ(first.video_tokens(), 118800);
  EXPECT_EQ(first.tokens(), 119056);
  EXPECT_EQ(first.video_begin(), 256);
  EXPECT_TRUE(first.is_text(255));
  EXPECT_FALSE(first.is_text(256));
  EXPECT_FALSE(first.is_text(119055));
  VideoLayout last{33, 45, 80, 256, TextPosition::last};
  EXPECT_EQ(last.video_begin(), 0);
  EXPECT_FALSE(last.is_text(118799));
  EXPECT_TRUE(last.is_text(118800));
  EXPECT_NO_THROW(last.validate());
  EXPECT_EQ(last.to_string(), "33x45x80 + 256 text last");
  EXPECT_EQ(VideoLayout({21, 30, 52}).to_string(), "21x30x52");
}

TEST(VideoLayout, ValidateNamesTheBadField) {
  EXPECT_TRUE(contains(error_of([] { VideoLayout{0, 1, 1}.validate(); }), "frames"));
  EXPECT_TRUE(contains(error_of([] { VideoLayout{1, 0, 1}.validate(); }), "height"));
  EXPECT_TRUE(contains(error_of([] { VideoLayout{1, 1, -2}.validate(); }), "width"));
  EXPECT_TRUE(contains(error_of([] { VideoLayout{1, 1, 1, -1, TextPosition::last}.validate(); }), "text"));
  EXPECT_TRUE(contains(error_of([] { VideoLayout{1, 1, 1, 4, TextPosition::none}.validate(); }), "position"));
  const int64_t big = int64_t{1} << 40;
  EXPECT_TRUE(contains(error_of([&] { VideoLayout{big, big, big}.validate(); }), "tokens"));
}

TEST(VideoLayout, TextPositionNames) {
  for (TextPosition p : {TextPosition::none, TextPosition::first, TextPosition::last}) {
    EXPECT_EQ(parse_text_position(text_position_name(p)), p);
  }
  EXPECT_TRUE(contains(error_of([] { parse_text_position("middle"); }), "middle"));
}

TEST(Pattern, ParseAndPrintRoundTrip) {
  for (const char* text : {"dense", "tile:0", "tile:3", "spatial:0.15", "spatial:0.25+sink", "temporal:1",
                           "temporal:0.125"}) {
    EXPECT_EQ(parse_pattern(text).to_string(), text);
  }
  EXPECT_EQ(parse_pattern("tile:2"), Pattern::tile(2));
  EXPECT_EQ(parse_pattern("spatial:0.5+sink"), Pattern::spatial(0.5, true));
  EXPECT_EQ(parse_pattern("temporal:0.5"), Pattern::temporal(0.5));
  EXPECT_TRUE(parse_pattern("temporal:0.5").permuted());
  EXPECT_FALSE(parse_pattern("spatial:0.5").permuted());
}

TEST(Pattern, ParseErrorsNameTheText) {
  for (const char* bad : {"", "sparse", "tile", "tile:", "tile:-1", "tile:2x", "spatial", "spatial:",
                          "spatial:0", "spatial:1.5", "spatial:-0.1", "spatial:nan", "spatial:abc",
                          "temporal:0.5+sink", "spatial:0.5+sunk", "dense:1"}) {
    std::string message = error_of([&] { parse_pattern(bad); });
    EXPECT_TRUE(contains(message, fmt::format("'{}'", bad))) << bad << ": " << message;
  }
}

TEST(Pattern, BandWidthErrors) {
  VideoLayout layout{4, 4, 4};
  EXPECT_TRUE(contains(error_of([&] { band_width(layout, Pattern::dense(), 4); }), "dense"));
  EXPECT_TRUE(contains(error_of([&] { band_width(layout, Pattern::spatial(0.0), 4); }), "spatial:0"));
  EXPECT_TRUE(contains(error_of([&] { band_width(layout, Pattern::temporal(std::nan("")), 4); }), "temporal"));
  EXPECT_TRUE(contains(error_of([&] { band_width(layout, Pattern::spatial(0.5), 0); }), "block"));
}

// Band area by hand: V = 10, no text, d = 0.28 -> 28 pairs; (2W+1)*10 - W(W+1) = 10, 28, 44 for W = 0, 1, 2.
TEST(Pattern, BandWidthSmallCaseByHand) {
  VideoLayout layout{2, 1, 5};
  EXPECT_EQ(band_width(layout, Pattern::spatial(0.28), 1), 1);
  EXPECT_EQ(band_width(layout, Pattern::spatial(0.29), 1), 2);
  EXPECT_EQ(band_width(layout, Pattern::spatial(0.29), 4), 4);
  EXPECT_EQ(band_width(layout, Pattern::spatial(0.10), 4), 0);
  EXPECT_EQ(band_width(layout, Pattern::spatial(1.0), 4), 9);  // 12 clamped to V - 1
  // Sink adds the 5 keys of frame 0 for every query: W = 0 gives 10 + (50 - 5) = 55 pairs.
  EXPECT_EQ(band_width(layout, Pattern::spatial(0.55, true), 1), 0);
  EXPECT_EQ(band_width(layout, Pattern::spatial(0.56, true), 1), 1);
}

TEST(Pattern, TokenRuleHandChecked) {
  // T = 10, L = 1, g = 3: global frames 0, 3, 6.
  VideoLayout layout{10, 1, 1, 2, TextPosition::first};
  Pattern tile = Pattern::tile(3);
  auto frame = [](int64_t f) { return f + 2; };
  for (int64_t a = 0; a < 10; ++a) {
    for (int64_t b = 0; b < 10; ++b) {
      bool global_a = a == 0 || a == 3 || a == 6, global_b = b == 0 || b == 3 || b == 6;
      EXPECT_EQ(token_pair_allowed(layout, tile, 0, frame(a), frame(b)), a == b || global_a || global_b) << a << b;
    }
  }
  EXPECT_TRUE(token_pair_allowed(layout, Pattern::tile(0), 0, 0, frame(5)));  // text query
  EXPECT_TRUE(token_pair_allowed(layout, Pattern::tile(0), 0, frame(5), 1));  // text key
  EXPECT_FALSE(token_pair_allowed(layout, Pattern::tile(0), 0, frame(5), frame(4)));
  EXPECT_TRUE(token_pair_allowed(layout, Pattern::tile(10), 0, frame(5), frame(4)));

  VideoLayout video{4, 2, 2, 3, TextPosition::last};  // L = 4, text at 16..18
  EXPECT_TRUE(token_pair_allowed(video, Pattern::spatial(0.5), 2, 5, 7));
  EXPECT_FALSE(token_pair_allowed(video, Pattern::spatial(0.5), 2, 5, 8));
  EXPECT_TRUE(token_pair_allowed(video, Pattern::spatial(0.5, true), 2, 12, 3));   // sink key
  EXPECT_FALSE(token_pair_allowed(video, Pattern::spatial(0.5, true), 2, 3, 12));  // not a sink key
  EXPECT_FALSE(token_pair_allowed(video, Pattern::temporal(0.5), 2, 12, 3));
  EXPECT_TRUE(token_pair_allowed(video, Pattern::temporal(0.5), 2, 15, 17));
  EXPECT_THROW(token_pair_allowed(video, Pattern::dense(), 0, 19, 0), Error);
}

}  // namespace
}  // namespace vdit
