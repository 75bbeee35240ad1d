#include "layout_options.h"

namespace vdit::cli {

void add_layout_options(CLI::App* cmd, LayoutOptions& o) {
  cmd->add_option("--frames", o.frames, "Latent frames T")->required();
  cmd->add_option("--height", o.height, "Patch grid height h")->required();
  cmd->add_option("--width", o.width, "Patch grid width w")->required();
  cmd->add_option("--text", o.text, "Text tokens in the joint attention (default 0)");
  o.text_position_option = cmd->add_option("--text-pos", o.text_position, "Where the text tokens sit")
                               ->check(CLI::IsMember({"first", "last", "none"}));
}

VideoLayout layout_from(const LayoutOptions& o) {
  VDIT_CHECK(o.frames >= 1, ErrorCode::invalid_argument, "--frames must be >= 1, got {}", o.frames);
  VDIT_CHECK(o.height >= 1, ErrorCode::invalid_argument, "--height must be >= 1, got {}", o.height);
  VDIT_CHECK(o.width >= 1, ErrorCode::invalid_argument, "--width must be >= 1, got {}", o.width);
  VDIT_CHECK(o.text >= 0, ErrorCode::invalid_argument, "--text must be >= 0, got {}", o.text);
  VideoLayout layout{o.frames, o.height, o.width, o.text, TextPosition::none};
  if (o.text_position_option && o.text_position_option->count() > 0) {
    VDIT_CHECK(o.text > 0, ErrorCode::invalid_argument, "--text-pos {} given without --text", o.text_position);
    layout.text_position = parse_text_position(o.text_position);
    VDIT_CHECK(layout.text_position != TextPosition::none, ErrorCode::invalid_argument,
               "--text {} needs --text-pos first or last, got none", o.text);
  } else {
    VDIT_CHECK(o.text == 0, ErrorCode::invalid_argument, "--text {} needs --text-pos first or last", o.text);
  }
  layout.validate();
  return layout;
}

std::vector<Pattern> head_patterns_from(const std::string& pattern, int heads, bool heads_given) {
  std::vector<Pattern> patterns;
  size_t begin = 0;
  while (true) {
    size_t comma = pattern.find(',', begin);
    try {
      patterns.push_back(parse_pattern(std::string_view(pattern).substr(begin, comma - begin)));
    } catch (const Error& e) {
      fail(e.code(), "--pattern {}: {}", pattern, e.what());
    }
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  VDIT_CHECK(!heads_given || heads >= 1, ErrorCode::invalid_argument, "--heads must be >= 1, got {}", heads);
  if (patterns.size() == 1) return std::vector<Pattern>(heads_given ? heads : 1, patterns[0]);
  VDIT_CHECK(!heads_given || static_cast<size_t>(heads) == patterns.size(), ErrorCode::invalid_argument,
             "--pattern lists {} patterns (one per head) but --heads is {}", patterns.size(), heads);
  return patterns;
}

}  // namespace vdit::cli
