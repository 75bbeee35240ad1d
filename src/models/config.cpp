#include "models/config.h"

#include "vdit/error.h"

namespace vdit {

ModelConfig::ModelConfig(nlohmann::json json, std::string source) : json_(std::move(json)), source_(std::move(source)) {
  VDIT_CHECK(json_.is_object(), ErrorCode::corrupt_file, "{}: expected a JSON object", source_);
}

bool ModelConfig::has(const std::string& key) const { return json_.contains(key) && !json_[key].is_null(); }

const nlohmann::json& ModelConfig::value(const std::string& key, const char* expected) const {
  VDIT_CHECK(has(key), ErrorCode::not_found, "{}: missing key \"{}\" ({})", source_, key, expected);
  return json_[key];
}

int64_t ModelConfig::integer(const std::string& key) const {
  const nlohmann::json& v = value(key, "an integer");
  VDIT_CHECK(v.is_number_integer(), ErrorCode::corrupt_file, "{}: \"{}\" is {}, expected an integer", source_, key,
             v.dump());
  return v.get<int64_t>();
}

int64_t ModelConfig::integer(const std::string& key, int64_t fallback) const {
  return has(key) ? integer(key) : fallback;
}

double ModelConfig::number(const std::string& key, double fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = json_[key];
  VDIT_CHECK(v.is_number(), ErrorCode::corrupt_file, "{}: \"{}\" is {}, expected a number", source_, key, v.dump());
  return v.get<double>();
}

bool ModelConfig::boolean(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = json_[key];
  VDIT_CHECK(v.is_boolean(), ErrorCode::corrupt_file, "{}: \"{}\" is {}, expected true or false", source_, key,
             v.dump());
  return v.get<bool>();
}

std::string ModelConfig::string(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = json_[key];
  VDIT_CHECK(v.is_string(), ErrorCode::corrupt_file, "{}: \"{}\" is {}, expected a string", source_, key, v.dump());
  return v.get<std::string>();
}

std::vector<int64_t> ModelConfig::integers(const std::string& key, const std::vector<int64_t>& fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = json_[key];
  std::vector<int64_t> out;
  bool ok = v.is_array();
  for (size_t i = 0; ok && i < v.size(); ++i) {
    ok = v[i].is_number_integer();
    if (ok) out.push_back(v[i].get<int64_t>());
  }
  VDIT_CHECK(ok, ErrorCode::corrupt_file, "{}: \"{}\" is {}, expected a list of integers", source_, key, v.dump());
  return out;
}

void ModelConfig::require_absent(const std::string& key, const std::string& feature) const {
  VDIT_CHECK(!has(key), ErrorCode::unsupported, "{}: \"{}\" is {}: {} is not supported", source_, key,
             json_[key].dump(), feature);
}

}  // namespace vdit
