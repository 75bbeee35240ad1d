// The benchmarks' comma lists ("128,192", "dense,profiled"): the non-empty items between separators.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace vdit::bench {

inline std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find(sep, at), text.size());
    if (end > at) parts.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return parts;
}

}  // namespace vdit::bench
