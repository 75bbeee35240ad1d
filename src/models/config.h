// A model's config.json with typed getters; errors name the key and the file. Absent or null keys
// take the fallback given (the default of the diffusers class), or fail when there is none.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vdit {

class ModelConfig {
 public:
  ModelConfig(nlohmann::json json, std::string source);

  const std::string& source() const { return source_; }
  bool has(const std::string& key) const;  // present and not null

  int64_t integer(const std::string& key) const;
  int64_t integer(const std::string& key, int64_t fallback) const;
  double number(const std::string& key, double fallback) const;
  bool boolean(const std::string& key, bool fallback) const;
  std::string string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> integers(const std::string& key, const std::vector<int64_t>& fallback) const;

  // Throws unsupported naming the key unless it is absent or null (a feature vdit does not run).
  void require_absent(const std::string& key, const std::string& feature) const;

 private:
  const nlohmann::json& value(const std::string& key, const char* expected) const;

  nlohmann::json json_;
  std::string source_;
};

}  // namespace vdit
