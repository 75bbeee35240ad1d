// VideoLayout checks and names (DESIGN.md section 1).
#include <fmt/format.h>

#include <cstdint>
#include <limits>

#include "vdit/attention.h"

namespace vdit {

void VideoLayout::validate() const {
  VDIT_CHECK(frames >= 1, ErrorCode::invalid_argument, "layout frames must be >= 1, got {}", frames);
  VDIT_CHECK(height >= 1, ErrorCode::invalid_argument, "layout height must be >= 1, got {}", height);
  VDIT_CHECK(width >= 1, ErrorCode::invalid_argument, "layout width must be >= 1, got {}", width);
  VDIT_CHECK(text >= 0, ErrorCode::invalid_argument, "layout text must be >= 0, got {}", text);
  VDIT_CHECK(text == 0 || text_position != TextPosition::none, ErrorCode::invalid_argument,
             "layout has {} text tokens but text position none", text);
  // Block indices are int32 and token pair counts (S^2) must fit in int64.
  constexpr int64_t max_tokens = std::numeric_limits<int32_t>::max();
  VDIT_CHECK(height <= max_tokens / width && frames <= max_tokens / (height * width) &&
                 text <= max_tokens - frames * height * width,
             ErrorCode::invalid_argument, "layout {} has more than {} tokens", to_string(), max_tokens);
}

std::string VideoLayout::to_string() const {
  std::string s = fmt::format("{}x{}x{}", frames, height, width);
  if (text > 0) s += fmt::format(" + {} text {}", text, text_position_name(text_position));
  return s;
}

const char* text_position_name(TextPosition position) {
  switch (position) {
    case TextPosition::none: return "none";
    case TextPosition::first: return "first";
    case TextPosition::last: return "last";
  }
  return "?";
}

TextPosition parse_text_position(std::string_view name) {
  if (name == "none") return TextPosition::none;
  if (name == "first") return TextPosition::first;
  if (name == "last") return TextPosition::last;
  fail(ErrorCode::invalid_argument, "text position '{}' is not one of first, last, none", name);
}

}  // namespace vdit
