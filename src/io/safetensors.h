// safetensors files: a zero-copy mmap reader that validates everything before trusting it, and a
// writer. Format: u64 little-endian header length N, N bytes of JSON, then the data; each tensor
// has {"dtype", "shape", "data_offsets": [begin, end]} relative to the data section.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "vdit/tensor.h"

namespace vdit {

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets within the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws Error (io, corrupt_file) naming the file and tensor.
  static SafetensorsFile open(const std::string& path);
  // Validates an in-memory image (used by the fuzzer and tests); `name` is used in messages.
  // The bytes must outlive the returned object.
  static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& name);

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file order of offsets
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(std::string_view name) const;
  const TensorInfo& info(std::string_view name) const;  // throws not_found naming file and tensor
  // A borrowed, read-only view of the mapped bytes that keeps the mapping alive (clone() it to
  // write). A tensor whose bytes are not aligned to its element size (possible in files with an
  // unpadded header) is copied instead.
  Tensor tensor(std::string_view name) const;

 private:
  std::string path_;
  std::shared_ptr<void> mapping_;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// Parses JSON text, rejecting an object that repeats a key (nlohmann's parser silently keeps the
// last). Throws corrupt_file naming `file` for invalid JSON. On a repeated key, `duplicate` gets
// the keys leading to it (outermost first, the repeated key last) and the result is unspecified.
nlohmann::json parse_json_unique_keys(std::string_view text, const std::string& file,
                                      std::vector<std::string>* duplicate);

// Writes tensors (CPU, any strides) to `path` atomically (temporary file, then rename). Refuses
// to replace an existing file unless `overwrite`. The header is padded to a multiple of 8 bytes and
// tensors are stored largest element size first, so each one is aligned with no gaps between them.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {}, bool overwrite = false);

}  // namespace vdit
