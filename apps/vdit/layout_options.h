// The command-line options that describe a video layout and per-head patterns, shared by the
// subcommands that take them (`vdit mask`, `vdit bench attention`).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "vdit/attention.h"

namespace vdit::cli {

struct LayoutOptions {
  int64_t frames = 0, height = 0, width = 0, text = 0;
  std::string text_position;
  CLI::Option* text_position_option = nullptr;  // given or not
};

// --frames, --height, --width (required), --text, --text-pos.
void add_layout_options(CLI::App* cmd, LayoutOptions& o);
// The layout they describe; errors name the option.
VideoLayout layout_from(const LayoutOptions& o);

// --pattern's text: one pattern for every head (`heads` of them, or 1 when `heads_given` is false)
// or a comma-separated list with one per head; errors name --pattern and --heads.
std::vector<Pattern> head_patterns_from(const std::string& pattern, int heads, bool heads_given);

}  // namespace vdit::cli
