// The benchmarks' JSON reports: written whole, and a file that cannot be written is an error that
// names it (not a silent empty or truncated report).
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "vdit/error.h"

namespace vdit::bench {

inline void write_json_file(const nlohmann::json& report, const std::string& path, int indent, const char* program) {
  std::ofstream file(path);
  file << report.dump(indent) << "\n";
  file.flush();
  VDIT_CHECK(file.good(), ::vdit::ErrorCode::io, "{}: cannot write {}", program, path);
}

}  // namespace vdit::bench
