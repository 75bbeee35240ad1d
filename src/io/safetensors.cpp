#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

namespace vdit {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr uint64_t kMaxElements = std::numeric_limits<int64_t>::max();  // Shape counts in int64

struct DTypeName {
  const char* name;
  DType dtype;
};
constexpr DTypeName kDTypeNames[] = {{"F32", DType::f32},     {"F16", DType::f16}, {"BF16", DType::bf16},
                                     {"I32", DType::i32},     {"I64", DType::i64}, {"U8", DType::u8},
                                     {"BOOL", DType::boolean}};
// Valid safetensors dtypes that have no vdit DType.
constexpr const char* kUnsupportedDTypes[] = {"F64",     "I8",      "I16",     "U16", "U32",     "U64",    "C64",
                                              "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2"};

const char* safetensors_dtype_name(DType dtype) {
  for (const DTypeName& d : kDTypeNames)
    if (d.dtype == dtype) return d.name;
  fail(ErrorCode::internal, "dtype {} has no safetensors name", dtype_name(dtype));
}

DType parse_safetensors_dtype(const std::string& name, const std::string& file, const std::string& tensor) {
  for (const DTypeName& d : kDTypeNames)
    if (name == d.name) return d.dtype;
  for (const char* unsupported : kUnsupportedDTypes)
    VDIT_CHECK(name != unsupported, ErrorCode::unsupported,
               "{}: tensor '{}': dtype {} is not supported (vdit reads F32, F16, BF16, I32, I64, U8, BOOL)", file,
               tensor, name);
  fail(ErrorCode::corrupt_file, "{}: tensor '{}': unknown dtype '{}'", file, tensor, name);
}

Shape parse_shape(const json& shape, const std::string& file, const std::string& tensor, uint64_t* numel) {
  VDIT_CHECK(shape.is_array(), ErrorCode::corrupt_file, "{}: tensor '{}': 'shape' is not an array", file, tensor);
  VDIT_CHECK(shape.size() <= kMaxDims, ErrorCode::unsupported, "{}: tensor '{}': rank {} is above vdit's limit of {}",
             file, tensor, shape.size(), kMaxDims);
  Shape result;
  *numel = 1;
  for (const json& dim : shape) {
    VDIT_CHECK(dim.is_number_integer(), ErrorCode::corrupt_file, "{}: tensor '{}': shape {} holds a non-integer", file,
               tensor, shape.dump());
    VDIT_CHECK(dim.is_number_unsigned(), ErrorCode::corrupt_file, "{}: tensor '{}': shape {} has a negative dimension",
               file, tensor, shape.dump());
    const uint64_t d = dim.get<uint64_t>();
    const bool overflow = d > kMaxElements || __builtin_mul_overflow(*numel, d, numel) || *numel > kMaxElements;
    VDIT_CHECK(!overflow, ErrorCode::corrupt_file, "{}: tensor '{}': element count of shape {} overflows", file, tensor,
               shape.dump());
    result.push_back(static_cast<int64_t>(d));
  }
  return result;
}

TensorInfo parse_entry(const std::string& name, const json& entry, uint64_t data_size, const std::string& file) {
  VDIT_CHECK(entry.is_object(), ErrorCode::corrupt_file, "{}: tensor '{}': entry is not a JSON object", file, name);
  for (const auto& [key, value] : entry.items())
    VDIT_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", ErrorCode::corrupt_file,
               "{}: tensor '{}': unexpected key '{}'", file, name, key);
  for (const char* key : {"dtype", "shape", "data_offsets"})
    VDIT_CHECK(entry.contains(key), ErrorCode::corrupt_file, "{}: tensor '{}': '{}' is missing", file, name, key);

  TensorInfo info;
  info.name = name;
  const json& dtype = entry["dtype"];
  VDIT_CHECK(dtype.is_string(), ErrorCode::corrupt_file, "{}: tensor '{}': 'dtype' is not a string", file, name);
  info.dtype = parse_safetensors_dtype(dtype.get<std::string>(), file, name);
  uint64_t numel = 0;
  info.shape = parse_shape(entry["shape"], file, name, &numel);

  const json& offsets = entry["data_offsets"];
  VDIT_CHECK(
      offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() && offsets[1].is_number_unsigned(),
      ErrorCode::corrupt_file, "{}: tensor '{}': 'data_offsets' is not two non-negative integers: {}", file, name,
      offsets.dump());
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  VDIT_CHECK(info.begin <= info.end, ErrorCode::corrupt_file,
             "{}: tensor '{}': data_offsets [{}, {}] end before they begin", file, name, info.begin, info.end);
  VDIT_CHECK(info.end <= data_size, ErrorCode::corrupt_file,
             "{}: tensor '{}': data_offsets [{}, {}] reach past the end of the data section ({} bytes)", file, name,
             info.begin, info.end, data_size);
  uint64_t bytes = 0;
  VDIT_CHECK(!__builtin_mul_overflow(numel, dtype_size(info.dtype), &bytes) && bytes == info.end - info.begin,
             ErrorCode::corrupt_file, "{}: tensor '{}': {}{} needs {} x {} bytes but data_offsets [{}, {}] hold {}",
             file, name, dtype_name(info.dtype), info.shape.to_string(), numel, dtype_size(info.dtype), info.begin,
             info.end, info.end - info.begin);
  return info;
}

std::map<std::string, std::string> parse_metadata(const json& metadata, const std::string& file) {
  VDIT_CHECK(metadata.is_object(), ErrorCode::corrupt_file, "{}: '__metadata__' is not a JSON object", file);
  std::map<std::string, std::string> result;
  for (const auto& [key, value] : metadata.items()) {
    VDIT_CHECK(value.is_string(), ErrorCode::corrupt_file, "{}: '__metadata__' entry '{}' is not a string", file, key);
    result[key] = value.get<std::string>();
  }
  return result;
}

std::string describe_duplicate(const std::vector<std::string>& keys) {
  if (keys.size() == 1) return fmt::format("tensor '{}': duplicate name", keys[0]);
  if (keys[0] == "__metadata__") return fmt::format("'__metadata__': duplicate key '{}'", keys.back());
  return fmt::format("tensor '{}': duplicate key '{}'", keys[0], keys.back());
}

// Closes a file descriptor when it goes out of scope.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    VDIT_CHECK(n > 0, ErrorCode::io, "{}: write failed: {}", path, std::strerror(errno));
    p += n;
    size -= static_cast<size_t>(n);
  }
}

// A temporary file beside the target, removed unless it was renamed over the target.
class TemporaryFile {
 public:
  explicit TemporaryFile(const std::string& target)
      : target_(target), path_(fmt::format("{}.tmp.{}", target, ::getpid())) {
    file_.fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    VDIT_CHECK(file_.fd >= 0, ErrorCode::io, "{}: cannot create {}: {}", target_, path_, std::strerror(errno));
  }
  ~TemporaryFile() {
    if (!committed_) ::unlink(path_.c_str());
  }
  void write(const void* data, size_t size) { write_all(file_.fd, data, size, path_); }
  void commit() {
    VDIT_CHECK(::fsync(file_.fd) == 0, ErrorCode::io, "{}: fsync failed: {}", path_, std::strerror(errno));
    const int fd = file_.fd;
    file_.fd = -1;
    VDIT_CHECK(::close(fd) == 0, ErrorCode::io, "{}: close failed: {}", path_, std::strerror(errno));
    VDIT_CHECK(::rename(path_.c_str(), target_.c_str()) == 0, ErrorCode::io, "{}: cannot rename {} to it: {}", target_,
               path_, std::strerror(errno));
    committed_ = true;
  }

 private:
  std::string target_, path_;
  FileDescriptor file_;
  bool committed_ = false;
};

}  // namespace

nlohmann::json parse_json_unique_keys(std::string_view text, const std::string& file,
                                      std::vector<std::string>* duplicate) {
  duplicate->clear();
  struct OpenObject {
    std::set<std::string> keys;
    std::string current;
  };
  std::vector<OpenObject> open;
  auto track_keys = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open.pop_back();
    } else if (event == json::parse_event_t::key) {
      open.back().current = parsed.get<std::string>();
      if (!open.back().keys.insert(open.back().current).second && duplicate->empty())
        for (const OpenObject& o : open) duplicate->push_back(o.current);
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), track_keys);
  } catch (const json::exception& e) {
    fail(ErrorCode::corrupt_file, "{}: invalid JSON: {}", file, e.what());
  }
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  VDIT_CHECK(size >= 8, ErrorCode::corrupt_file, "{}: {} bytes is too short for a safetensors file (at least 8)", name,
             size);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = header_size << 8 | data[i];
  VDIT_CHECK(header_size <= size - 8, ErrorCode::corrupt_file, "{}: header length {} exceeds the file size ({} bytes)",
             name, header_size, size);
  VDIT_CHECK(header_size <= kMaxHeaderBytes, ErrorCode::corrupt_file,
             "{}: header length {} exceeds the limit of {} bytes", name, header_size, kMaxHeaderBytes);

  std::vector<std::string> duplicate;
  const json header =
      parse_json_unique_keys(std::string_view(reinterpret_cast<const char*>(data + 8), header_size), name, &duplicate);
  VDIT_CHECK(duplicate.empty(), ErrorCode::corrupt_file, "{}: {}", name, describe_duplicate(duplicate));
  VDIT_CHECK(header.is_object(), ErrorCode::corrupt_file, "{}: header is not a JSON object", name);

  SafetensorsFile file;
  file.path_ = name;
  file.data_ = data + 8 + header_size;
  const uint64_t data_size = size - 8 - header_size;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__")
      file.metadata_ = parse_metadata(value, name);
    else
      file.tensors_.push_back(parse_entry(key, value, data_size, name));
  }

  std::sort(file.tensors_.begin(), file.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  // Sorted by start, a range overlaps an earlier one exactly when it starts before the furthest end so far.
  const TensorInfo* furthest = nullptr;
  for (const TensorInfo& t : file.tensors_) {
    VDIT_CHECK(furthest == nullptr || t.begin >= furthest->end, ErrorCode::corrupt_file,
               "{}: tensor '{}': data_offsets [{}, {}] overlap those of tensor '{}' [{}, {}]", name, t.name, t.begin,
               t.end, furthest->name, furthest->begin, furthest->end);
    if (furthest == nullptr || t.end > furthest->end) furthest = &t;
  }
  // A C++ bool holding anything but 0 or 1 is undefined behaviour, so BOOL bytes are checked now.
  for (const TensorInfo& t : file.tensors_) {
    if (t.dtype != DType::boolean) continue;
    const uint8_t* bytes = file.data_ + t.begin;
    const uint8_t* bad = std::find_if(bytes, bytes + (t.end - t.begin), [](uint8_t b) { return b > 1; });
    VDIT_CHECK(bad == bytes + (t.end - t.begin), ErrorCode::corrupt_file,
               "{}: tensor '{}': BOOL element {} holds byte {}, not 0 or 1", name, t.name, bad - bytes, *bad);
  }
  for (size_t i = 0; i < file.tensors_.size(); ++i) file.index_[file.tensors_[i].name] = i;
  return file;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  FileDescriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  VDIT_CHECK(file.fd >= 0, errno == ENOENT ? ErrorCode::not_found : ErrorCode::io, "{}: cannot open: {}", path,
             std::strerror(errno));
  struct stat st {};
  VDIT_CHECK(::fstat(file.fd, &st) == 0, ErrorCode::io, "{}: cannot stat: {}", path, std::strerror(errno));
  VDIT_CHECK(S_ISREG(st.st_mode), ErrorCode::io, "{}: not a regular file", path);
  const size_t size = static_cast<size_t>(st.st_size);
  // Read-only: a view of the weights must never write back, and a writable private mapping would
  // count the whole file against the commit limit.
  void* bytes = nullptr;
  if (size > 0) {
    bytes = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.fd, 0);
    VDIT_CHECK(bytes != MAP_FAILED, ErrorCode::io, "{}: mmap of {} bytes failed: {}", path, size, std::strerror(errno));
  }
  std::shared_ptr<void> mapping(bytes, [size](void* p) {
    if (p) ::munmap(p, size);
  });
  SafetensorsFile result = parse(static_cast<const uint8_t*>(bytes), size, path);
  result.mapping_ = std::move(mapping);
  return result;
}

bool SafetensorsFile::contains(std::string_view name) const { return index_.find(name) != index_.end(); }

const TensorInfo& SafetensorsFile::info(std::string_view name) const {
  auto it = index_.find(name);
  VDIT_CHECK(it != index_.end(), ErrorCode::not_found, "{}: tensor '{}': not in this file", path_, name);
  return tensors_[it->second];
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  const TensorInfo& t = info(name);
  const uint8_t* bytes = data_ + t.begin;
  if (reinterpret_cast<uintptr_t>(bytes) % dtype_size(t.dtype) == 0)
    return Tensor::borrow(const_cast<uint8_t*>(bytes), t.shape, t.dtype, mapping_);
  Tensor copy = Tensor::empty(t.shape, t.dtype);
  std::memcpy(copy.raw_data(), bytes, t.end - t.begin);
  return copy;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata, bool overwrite) {
  std::set<std::string_view> names;
  for (const auto& [name, t] : tensors) {
    VDIT_CHECK(name != "__metadata__", ErrorCode::invalid_argument, "{}: tensor '__metadata__': the name is reserved",
               path);
    VDIT_CHECK(names.insert(name).second, ErrorCode::invalid_argument, "{}: tensor '{}': duplicate name", path, name);
    VDIT_CHECK(t.defined(), ErrorCode::invalid_argument, "{}: tensor '{}': undefined tensor", path, name);
    VDIT_CHECK(t.device().is_cpu(), ErrorCode::unsupported, "{}: tensor '{}': only CPU tensors can be written, not {}",
               path, name, t.describe());
  }
  struct stat st {};
  VDIT_CHECK(overwrite || ::stat(path.c_str(), &st) != 0, ErrorCode::io,
             "{}: file exists; refusing to replace it (overwrite not requested)", path);

  // Largest elements first: every tensor then starts aligned to its element size, with no gaps.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t sa = dtype_size(tensors[a].second.dtype()), sb = dtype_size(tensors[b].second.dtype());
    return sa != sb ? sa > sb : tensors[a].first < tensors[b].first;
  });
  json header = json::object();
  uint64_t offset = 0;
  for (size_t i : order) {
    const Tensor& t = tensors[i].second;
    header[tensors[i].first] = {{"dtype", safetensors_dtype_name(t.dtype())},
                                {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())},
                                {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    fail(ErrorCode::invalid_argument, "{}: a tensor name or metadata string is not valid UTF-8: {}", path, e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  TemporaryFile out(path);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  out.write(length, sizeof length);
  out.write(text.data(), text.size());
  for (size_t i : order) {
    const Tensor data = tensors[i].second.contiguous();
    out.write(data.raw_data(), data.nbytes());
  }
  out.commit();
}

}  // namespace vdit
