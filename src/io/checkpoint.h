// Checkpoints: a single .safetensors file, or a diffusers folder (optional config.json and either
// one *.safetensors file or shards listed by *.safetensors.index.json:
// {"metadata": {...}, "weight_map": {tensor name: shard file name}}).
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace vdit {

class Checkpoint {
 public:
  // `path` is a .safetensors file or a folder. Validates every shard, and that the index names
  // each tensor in exactly one existing shard. Errors name the folder, shard and tensor.
  static Checkpoint open(const std::string& path);

  const std::string& path() const { return path_; }
  bool has_config() const { return !config_.is_null(); }
  const nlohmann::json& config() const { return config_; }  // config.json, if present
  std::vector<std::string> names() const;                    // sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;     // throws not_found
  Tensor tensor(const std::string& name) const;              // zero-copy view
  const SafetensorsFile& shard(const std::string& name) const;  // the file holding `name`
  const std::vector<SafetensorsFile>& shards() const { return shards_; }

 private:
  std::string path_;
  nlohmann::json config_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, size_t> shard_of_;  // tensor name -> shard index
};

}  // namespace vdit
