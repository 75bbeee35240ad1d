#include "io/checkpoint.h"

#include <fmt/ranges.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace vdit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string file_name(const SafetensorsFile& shard) { return fs::path(shard.path()).filename().string(); }

json read_json_object(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  VDIT_CHECK(in.good(), ErrorCode::io, "{}: cannot open", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  VDIT_CHECK(!in.bad(), ErrorCode::io, "{}: read failed", path.string());
  std::vector<std::string> duplicate;
  json result = parse_json_unique_keys(text.str(), path.string(), &duplicate);
  VDIT_CHECK(duplicate.empty(), ErrorCode::corrupt_file, "{}: key '{}' appears twice", path.string(),
             duplicate.empty() ? "" : duplicate.back());
  VDIT_CHECK(result.is_object(), ErrorCode::corrupt_file, "{}: not a JSON object", path.string());
  return result;
}

// The index's tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const std::string index = index_path.string();
  const json root = read_json_object(index_path);
  VDIT_CHECK(root.contains("weight_map") && root["weight_map"].is_object(), ErrorCode::corrupt_file,
             "{}: 'weight_map' is missing or not an object", index);
  std::map<std::string, std::string> weight_map;
  for (const auto& [tensor, shard] : root["weight_map"].items()) {
    VDIT_CHECK(shard.is_string(), ErrorCode::corrupt_file, "{}: tensor '{}': shard {} is not a string", index, tensor,
               shard.dump());
    const std::string name = shard.get<std::string>();
    VDIT_CHECK(!name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos,
               ErrorCode::corrupt_file, "{}: tensor '{}': shard '{}' is not a file name in the folder", index, tensor,
               name);
    weight_map[tensor] = name;
  }
  return weight_map;
}

struct FolderContents {
  std::vector<std::string> indexes;      // *.safetensors.index.json
  std::vector<std::string> safetensors;  // *.safetensors
};

FolderContents list_folder(const fs::path& folder) {
  FolderContents contents;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec)) continue;
    if (ends_with(name, ".safetensors.index.json")) contents.indexes.push_back(name);
    if (ends_with(name, ".safetensors")) contents.safetensors.push_back(name);
  }
  VDIT_CHECK(!ec, ErrorCode::io, "{}: cannot list the folder: {}", folder.string(), ec.message());
  std::sort(contents.indexes.begin(), contents.indexes.end());
  std::sort(contents.safetensors.begin(), contents.safetensors.end());
  return contents;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint checkpoint;
  checkpoint.path_ = path;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    checkpoint.shards_.push_back(SafetensorsFile::open(path));
    for (const TensorInfo& t : checkpoint.shards_[0].tensors()) checkpoint.shard_of_[t.name] = 0;
    return checkpoint;
  }

  const fs::path folder(path);
  if (fs::exists(folder / "config.json", ec)) checkpoint.config_ = read_json_object(folder / "config.json");
  const FolderContents contents = list_folder(folder);
  VDIT_CHECK(contents.indexes.size() <= 1, ErrorCode::invalid_argument,
             "{}: several shard indexes ({}); open one shard set per folder", path, fmt::join(contents.indexes, ", "));

  if (contents.indexes.empty()) {
    VDIT_CHECK(contents.safetensors.size() <= 1, ErrorCode::invalid_argument,
               "{}: several .safetensors files ({}) and no *.safetensors.index.json saying which tensors each holds",
               path, fmt::join(contents.safetensors, ", "));
    if (contents.safetensors.empty()) {
      VDIT_CHECK(!fs::is_directory(folder / "transformer", ec), ErrorCode::not_found,
                 "{}: no .safetensors file here; this looks like a diffusers pipeline: open its transformer "
                 "folder, {}",
                 path, (folder / "transformer").string());
      fail(ErrorCode::not_found, "{}: no .safetensors file or *.safetensors.index.json in the folder", path);
    }
    checkpoint.shards_.push_back(SafetensorsFile::open((folder / contents.safetensors[0]).string()));
    for (const TensorInfo& t : checkpoint.shards_[0].tensors()) checkpoint.shard_of_[t.name] = 0;
    return checkpoint;
  }

  const std::string index = (folder / contents.indexes[0]).string();
  const std::map<std::string, std::string> weight_map = read_weight_map(folder / contents.indexes[0]);
  std::map<std::string, std::string> first_tensor_of;  // shard file -> a tensor the index puts there
  for (const auto& [tensor, shard] : weight_map) first_tensor_of.emplace(shard, tensor);
  for (const auto& [shard, tensor] : first_tensor_of) {
    const fs::path shard_path = folder / shard;
    VDIT_CHECK(fs::is_regular_file(shard_path, ec), ErrorCode::not_found,
               "{}: shard '{}' (listed for tensor '{}') does not exist", index, shard, tensor);
    checkpoint.shards_.push_back(SafetensorsFile::open(shard_path.string()));
  }

  for (size_t s = 0; s < checkpoint.shards_.size(); ++s) {
    for (const TensorInfo& t : checkpoint.shards_[s].tensors()) {
      auto [it, inserted] = checkpoint.shard_of_.emplace(t.name, s);
      VDIT_CHECK(inserted, ErrorCode::corrupt_file, "{}: tensor '{}': present in both shard '{}' and shard '{}'", path,
                 t.name, file_name(checkpoint.shards_[it->second]), file_name(checkpoint.shards_[s]));
    }
  }
  for (const auto& [tensor, shard] : weight_map) {
    auto it = checkpoint.shard_of_.find(tensor);
    VDIT_CHECK(it != checkpoint.shard_of_.end(), ErrorCode::corrupt_file,
               "{}: tensor '{}': listed for shard '{}' but missing from it", index, tensor, shard);
    const std::string found_in = file_name(checkpoint.shards_[it->second]);
    VDIT_CHECK(found_in == shard, ErrorCode::corrupt_file,
               "{}: tensor '{}': listed for shard '{}' but missing from it (found in shard '{}')", index, tensor, shard,
               found_in);
  }
  for (const auto& [tensor, s] : checkpoint.shard_of_)
    VDIT_CHECK(weight_map.count(tensor), ErrorCode::corrupt_file,
               "{}: tensor '{}': in shard '{}' but not listed in the index", index, tensor,
               file_name(checkpoint.shards_[s]));
  return checkpoint;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> result;
  result.reserve(shard_of_.size());
  for (const auto& [name, shard] : shard_of_) result.push_back(name);
  return result;
}

bool Checkpoint::contains(const std::string& name) const { return shard_of_.count(name) != 0; }

const SafetensorsFile& Checkpoint::shard(const std::string& name) const {
  auto it = shard_of_.find(name);
  VDIT_CHECK(it != shard_of_.end(), ErrorCode::not_found, "{}: tensor '{}': not in this checkpoint", path_, name);
  return shards_[it->second];
}

const TensorInfo& Checkpoint::info(const std::string& name) const { return shard(name).info(name); }

Tensor Checkpoint::tensor(const std::string& name) const { return shard(name).tensor(name); }

}  // namespace vdit
