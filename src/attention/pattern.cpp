// Attention patterns: names, parsing, the band width of spatial/temporal heads and the token-level
// rule every block mask is derived from (DESIGN.md section 2).
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "vdit/attention.h"

namespace vdit {
namespace {

constexpr const char* kPatternForms = "dense, tile:G, spatial:D, spatial:D+sink, temporal:D";

bool parse_int(std::string_view text, int* value) {
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size() && !text.empty();
}

bool parse_double(std::string_view text, double* value) {
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size() && !text.empty();
}

bool valid_density(double d) { return d > 0.0 && d <= 1.0; }  // false for NaN

// Video query/key pairs (q, k) with |q - k| <= w inside the V x V video square.
int64_t band_pairs(int64_t video, int64_t w) {
  if (w >= video - 1) return video * video;
  return (2 * w + 1) * video - w * (w + 1);
}

// Sink pairs (any video query, a key of frame 0) that the band does not already hold.
int64_t sink_pairs_outside_band(int64_t video, int64_t frame_tokens, int64_t w) {
  int64_t outside = 0;
  for (int64_t k = 0; k < frame_tokens; ++k) {
    int64_t in_band = std::min(video - 1, k + w) - std::max<int64_t>(0, k - w) + 1;
    outside += video - in_band;
  }
  return outside;
}

}  // namespace

std::string Pattern::to_string() const {
  switch (kind) {
    case Kind::dense: return "dense";
    case Kind::tile: return fmt::format("tile:{}", global_frames);
    case Kind::spatial: return fmt::format("spatial:{}{}", density, sink ? "+sink" : "");
    case Kind::temporal: return fmt::format("temporal:{}", density);
  }
  return "?";
}

Pattern parse_pattern(std::string_view text) {
  if (text == "dense") return Pattern::dense();
  size_t colon = text.find(':');
  std::string_view kind = text.substr(0, colon);
  std::string_view arg = colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  if (kind == "tile") {
    int g = 0;
    VDIT_CHECK(parse_int(arg, &g) && g >= 0, ErrorCode::invalid_argument,
               "pattern '{}': tile needs a global frame count >= 0 (tile:G)", text);
    return Pattern::tile(g);
  }
  if (kind == "spatial" || kind == "temporal") {
    bool sink = arg.ends_with("+sink");
    if (sink) arg.remove_suffix(5);
    VDIT_CHECK(!(sink && kind == "temporal"), ErrorCode::invalid_argument,
               "pattern '{}': only spatial heads take +sink", text);
    double d = 0.0;
    VDIT_CHECK(parse_double(arg, &d), ErrorCode::invalid_argument,
               "pattern '{}': {} needs a target density ({}:D)", text, kind, kind);
    VDIT_CHECK(valid_density(d), ErrorCode::invalid_argument,
               "pattern '{}': density {} is not in (0, 1]", text, d);
    return kind == "spatial" ? Pattern::spatial(d, sink) : Pattern::temporal(d);
  }
  fail(ErrorCode::invalid_argument, "pattern '{}' is not one of {}", text, kPatternForms);
}

int64_t band_width(const VideoLayout& layout, const Pattern& pattern, int block) {
  layout.validate();
  VDIT_CHECK(pattern.kind == Pattern::Kind::spatial || pattern.kind == Pattern::Kind::temporal,
             ErrorCode::invalid_argument, "pattern '{}' has no band width", pattern.to_string());
  VDIT_CHECK(valid_density(pattern.density), ErrorCode::invalid_argument,
             "pattern '{}': density {} is not in (0, 1]", pattern.to_string(), pattern.density);
  VDIT_CHECK(!(pattern.sink && pattern.kind == Pattern::Kind::temporal), ErrorCode::invalid_argument,
             "pattern '{}': only spatial heads take a sink", pattern.to_string());
  VDIT_CHECK(block >= 1, ErrorCode::invalid_argument, "band width block must be >= 1, got {}", block);

  const int64_t s = layout.tokens(), v = layout.video_tokens();
  const int64_t text_pairs = s * s - v * v;
  const double total = static_cast<double>(s) * static_cast<double>(s);
  auto reaches = [&](int64_t w) {
    int64_t kept = text_pairs + band_pairs(v, w);
    if (pattern.sink) kept += sink_pairs_outside_band(v, layout.frame_tokens(), w);
    return static_cast<double>(kept) / total >= pattern.density;
  };
  // Kept pairs grow with w and w = V - 1 keeps everything: binary search the smallest w.
  int64_t lo = 0, hi = v - 1;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (reaches(mid)) hi = mid;
    else lo = mid + 1;
  }
  int64_t rounded = (lo + block - 1) / block * block;
  return std::min(rounded, v - 1);
}

bool token_pair_allowed(const VideoLayout& layout, const Pattern& pattern, int64_t band, int64_t q,
                        int64_t k) {
  const int64_t s = layout.tokens();
  VDIT_CHECK(q >= 0 && q < s && k >= 0 && k < s, ErrorCode::invalid_argument,
             "token pair ({}, {}) outside [0, {})", q, k, s);
  if (layout.is_text(q) || layout.is_text(k)) return true;
  const int64_t vq = q - layout.video_begin(), vk = k - layout.video_begin();
  const int64_t frames = layout.frames, frame_tokens = layout.frame_tokens();
  switch (pattern.kind) {
    case Pattern::Kind::dense: return true;
    case Pattern::Kind::tile: {
      const int64_t g = pattern.global_frames;
      VDIT_CHECK(g >= 0 && g <= frames, ErrorCode::invalid_argument,
                 "pattern '{}': global frames must be in [0, {}]", pattern.to_string(), frames);
      // Global frames are floor(i*T/g); frame a is one iff i = ceil(a*g/T) lands on it.
      auto global = [&](int64_t a) {
        if (g == 0) return false;
        int64_t i = (a * g + frames - 1) / frames;
        return i < g && i * frames / g == a;
      };
      const int64_t a = vq / frame_tokens, b = vk / frame_tokens;
      return a == b || global(a) || global(b);
    }
    case Pattern::Kind::spatial:
      return std::abs(vq - vk) <= band || (pattern.sink && vk < frame_tokens);
    case Pattern::Kind::temporal: return std::abs(vq - vk) <= band;
  }
  return false;
}

}  // namespace vdit
