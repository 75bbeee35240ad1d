// safetensors reader and writer: round trips checked against a header parsed independently in the
// test, hand-built files, and every corrupt-file case the reader must reject.
#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "temp_dir.h"
#include "test_util.h"

namespace vdit {
namespace {

using test::expect_error;

namespace fs = std::filesystem;
using nlohmann::json;

using SafetensorsTest = test::TempDirTest;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

// A safetensors image built by hand: little-endian length, header, then `data_bytes` bytes 0, 1, 2, ...
std::string image(const std::string& header, size_t data_bytes, uint64_t declared_length) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(declared_length >> (8 * i));
  bytes += header;
  for (size_t i = 0; i < data_bytes; ++i) bytes += static_cast<char>(i);
  return bytes;
}
std::string image(const std::string& header, size_t data_bytes) { return image(header, data_bytes, header.size()); }

// A tensor of `dtype` filled with random bytes (0/1 for bool).
Tensor random_tensor(const Shape& shape, DType dtype, std::mt19937& rng) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* bytes = static_cast<uint8_t*>(t.raw_data());
  for (size_t i = 0; i < t.nbytes(); ++i) bytes[i] = static_cast<uint8_t>(dtype == DType::boolean ? rng() % 2 : rng());
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

TEST_F(SafetensorsTest, RoundTripsEveryDTypeAgainstAnIndependentHeaderParse) {
  std::mt19937 rng(7);
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"a.u8", random_tensor({3}, DType::u8, rng)},
      {"b.f32", random_tensor({2, 3}, DType::f32, rng)},
      {"c.bool", random_tensor({5}, DType::boolean, rng)},
      {"d.f16", random_tensor({1, 3, 1}, DType::f16, rng)},
      {"e.i64", random_tensor({2, 2}, DType::i64, rng)},
      {"f.bf16", random_tensor({7}, DType::bf16, rng)},
      {"g.i32", random_tensor({1, 1, 1, 1, 1, 3}, DType::i32, rng)},
      {"h.scalar", random_tensor({}, DType::f32, rng)},
      {"i.empty", random_tensor({0, 4}, DType::bf16, rng)}};
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "x\"y"}};
  const std::string path = file("all.safetensors");
  write_safetensors(path, tensors, metadata);

  // The bytes on disk, read without vdit's reader.
  const std::string bytes = read_bytes(path);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = header_length << 8 | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(header_length % 8, 0u);
  const json header = json::parse(bytes.substr(8, header_length));
  EXPECT_EQ(header["__metadata__"], json(metadata));
  const std::map<DType, std::string> names = {{DType::f32, "F32"},     {DType::f16, "F16"}, {DType::bf16, "BF16"},
                                              {DType::i32, "I32"},     {DType::i64, "I64"}, {DType::u8, "U8"},
                                              {DType::boolean, "BOOL"}};
  uint64_t total = 0;
  for (const auto& [name, t] : tensors) {
    const json& entry = header.at(name);
    EXPECT_EQ(entry["dtype"], names.at(t.dtype()));
    EXPECT_EQ(entry["shape"], json(std::vector<int64_t>(t.shape().begin(), t.shape().end())));
    const uint64_t begin = entry["data_offsets"][0], end = entry["data_offsets"][1];
    EXPECT_EQ(end - begin, t.nbytes());
    EXPECT_EQ(begin % dtype_size(t.dtype()), 0u) << name;
    EXPECT_EQ(bytes.compare(8 + header_length + begin, t.nbytes(),
                            std::string(static_cast<const char*>(t.raw_data()), t.nbytes())),
              0)
        << name;
    total += t.nbytes();
  }
  EXPECT_EQ(bytes.size(), 8 + header_length + total);  // no gaps, nothing after

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), metadata);
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (size_t i = 1; i < f.tensors().size(); ++i) EXPECT_LE(f.tensors()[i - 1].end, f.tensors()[i].begin);
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(f.contains(name));
    const Tensor read = f.tensor(name);
    EXPECT_EQ(read.dtype(), t.dtype()) << name;
    EXPECT_EQ(read.shape(), t.shape()) << name;
    EXPECT_TRUE(same_bytes(read, t)) << name;
    EXPECT_EQ(read.raw_data(), f.tensor(name).raw_data()) << "a view of the mapping, not a copy: " << name;
  }
  EXPECT_FALSE(f.contains("missing"));
  expect_error([&] { f.info("missing"); }, ErrorCode::not_found, {path, "'missing'"});
}

TEST_F(SafetensorsTest, ViewsOutliveTheFileObject) {
  std::mt19937 rng(1);
  const Tensor t = random_tensor({4, 4}, DType::f32, rng);
  write_safetensors(file("w.safetensors"), {{"w", t}});
  Tensor view;
  {
    const SafetensorsFile f = SafetensorsFile::open(file("w.safetensors"));
    view = f.tensor("w");
  }
  EXPECT_TRUE(same_bytes(view, t));
}

TEST_F(SafetensorsTest, WritesStridedTensorsContiguously) {
  Tensor base = Tensor::empty({3, 4}, DType::f32);
  for (int i = 0; i < 12; ++i) base.data<float>()[i] = static_cast<float>(i);
  const Tensor transposed = base.transpose(0, 1);  // [4, 3]
  const Tensor columns = base.slice(1, 1, 3);      // [3, 2], row stride 4
  write_safetensors(file("s.safetensors"), {{"t", transposed}, {"c", columns}});

  const SafetensorsFile f = SafetensorsFile::open(file("s.safetensors"));
  const Tensor t = f.tensor("t"), c = f.tensor("c");
  ASSERT_EQ(t.shape(), Shape({4, 3}));
  ASSERT_EQ(c.shape(), Shape({3, 2}));
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(t.data<float>()[i * 3 + j], static_cast<float>(j * 4 + i));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) EXPECT_EQ(c.data<float>()[i * 2 + j], static_cast<float>(i * 4 + j + 1));
}

TEST_F(SafetensorsTest, ReadsHandBuiltFiles) {
  // Unsorted offsets, a gap between tensors, a zero-size tensor, a scalar, metadata, and a header
  // length that misaligns the data section: the f32 tensors must be copied, not viewed.
  const std::string header =
      R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},"__metadata__":{"k":"v"},)"
      R"("a":{"dtype":"U8","shape":[2,2],"data_offsets":[0,4]},"z":{"dtype":"I64","shape":[0,5],"data_offsets":[4,4]},)"
      R"("s":{"dtype":"F32","shape":[],"data_offsets":[20,24]}}       )";
  ASSERT_NE(header.size() % 4, 0u);
  const std::string bytes = image(header, 24);
  const std::string path = file("hand.safetensors");
  write_bytes(path, bytes);
  const SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.tensors()[0].name, "a");
  EXPECT_EQ(f.tensors()[1].name, "z");
  EXPECT_EQ(f.tensors()[2].name, "b");
  EXPECT_EQ(f.tensors()[3].name, "s");
  EXPECT_EQ(f.metadata().at("k"), "v");
  const Tensor a = f.tensor("a");
  EXPECT_EQ(a.shape(), Shape({2, 2}));
  EXPECT_EQ(a.data<uint8_t>()[3], 3);
  EXPECT_EQ(f.tensor("z").numel(), 0);
  const Tensor b = f.tensor("b");
  float expected[2];
  std::memcpy(expected, bytes.data() + 8 + header.size() + 12, 8);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.raw_data()) % 4, 0u);
  EXPECT_EQ(std::memcmp(b.raw_data(), expected, 8), 0);
  EXPECT_EQ(f.tensor("s").rank(), 0);

  // The same image at every alignment in memory.
  std::vector<uint8_t> buffer(bytes.size() + 8);
  for (size_t shift = 0; shift < 8; ++shift) {
    std::memcpy(buffer.data() + shift, bytes.data(), bytes.size());
    const SafetensorsFile g = SafetensorsFile::parse(buffer.data() + shift, bytes.size(), "memory");
    EXPECT_EQ(std::memcmp(g.tensor("b").raw_data(), expected, 8), 0) << shift;
  }
}

TEST_F(SafetensorsTest, EmptyHeaderIsAValidFileWithNoTensors) {
  write_bytes(file("empty.safetensors"), image("{}      ", 0));
  EXPECT_TRUE(SafetensorsFile::open(file("empty.safetensors")).tensors().empty());
  write_safetensors(file("none.safetensors"), {});
  EXPECT_TRUE(SafetensorsFile::open(file("none.safetensors")).tensors().empty());
}

struct CorruptCase {
  std::string label;
  std::string bytes;
  ErrorCode code;
  std::string tensor;  // named in the message, when there is one
  std::string what;    // a phrase the message must hold
};

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return fmt::format(R"("{}":{{"dtype":{},"shape":{},"data_offsets":{}}})", name, dtype, shape, offsets);
}

std::vector<CorruptCase> corrupt_cases() {
  const auto one = [](const std::string& e, size_t data) { return image("{" + e + "}", data); };
  const ErrorCode corrupt = ErrorCode::corrupt_file;
  return {
      {"truncated", std::string("\x10\0\0\0", 4), corrupt, "", "too short"},
      {"header_length_past_end", image(R"({"w":1})", 0, 1000), corrupt, "", "exceeds the file size"},
      {"header_length_huge", image(R"({})", 0, ~uint64_t{0}), corrupt, "", "exceeds the file size"},
      {"empty_header", image("", 4), corrupt, "", "invalid JSON"},
      {"invalid_json", image(R"({"w": {"dtype": "F32",)", 4), corrupt, "", "invalid JSON"},
      {"trailing_garbage", image(R"({} x)", 4), corrupt, "", "invalid JSON"},
      {"invalid_utf8", image("{\"w\xff\":1}", 0), corrupt, "", "invalid JSON"},
      {"not_object", image("[1, 2]", 4), corrupt, "", "not a JSON object"},
      {"unknown_dtype", one(entry("w", R"("F33")", "[1]", "[0,4]"), 4), corrupt, "w", "unknown dtype 'F33'"},
      {"unsupported_f64", one(entry("w", R"("F64")", "[1]", "[0,8]"), 8), ErrorCode::unsupported, "w", "F64"},
      {"unsupported_fp8", one(entry("w", R"("F8_E4M3")", "[1]", "[0,1]"), 1), ErrorCode::unsupported, "w", "F8_E4M3"},
      {"unsupported_i8", one(entry("w", R"("I8")", "[1]", "[0,1]"), 1), ErrorCode::unsupported, "w", "I8"},
      {"size_mismatch", one(entry("w", R"("F32")", "[2,3]", "[0,20]"), 24), corrupt, "w", "hold 20"},
      {"offsets_past_end", one(entry("w", R"("F32")", "[2]", "[0,8]"), 4), corrupt, "w", "past the end"},
      {"begin_after_end", one(entry("w", R"("F32")", "[1]", "[8,4]"), 8), corrupt, "w", "end before they begin"},
      {"overlap",
       image("{" + entry("a", R"("F32")", "[2]", "[0,8]") + "," + entry("b", R"("F32")", "[2]", "[4,12]") + "}", 12),
       corrupt, "b", "overlap those of tensor 'a'"},
      {"inside_another",
       image("{" + entry("a", R"("U8")", "[8]", "[0,8]") + "," + entry("b", R"("U8")", "[2]", "[2,4]") + "}", 8),
       corrupt, "b", "overlap"},
      {"duplicate_name",
       image("{" + entry("w", R"("U8")", "[1]", "[0,1]") + "," + entry("w", R"("U8")", "[1]", "[1,2]") + "}", 2),
       corrupt, "w", "duplicate name"},
      {"duplicate_key", one(R"("w":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]})", 1), corrupt, "w",
       "duplicate key 'dtype'"},
      {"duplicate_metadata_key", image(R"({"__metadata__":{"a":"1","a":"2"}})", 0), corrupt, "__metadata__",
       "duplicate key 'a'"},
      {"entry_not_object", one(R"("w":[1])", 0), corrupt, "w", "not a JSON object"},
      {"missing_offsets", one(R"("w":{"dtype":"U8","shape":[1]})", 1), corrupt, "w", "'data_offsets' is missing"},
      {"extra_key", one(R"("w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":0})", 1), corrupt, "w",
       "unexpected key 'x'"},
      {"dtype_not_string", one(entry("w", "1", "[1]", "[0,1]"), 1), corrupt, "w", "'dtype' is not a string"},
      {"shape_not_array", one(entry("w", R"("U8")", R"("1")", "[0,1]"), 1), corrupt, "w", "'shape' is not an array"},
      {"shape_float", one(entry("w", R"("U8")", "[1.5]", "[0,1]"), 1), corrupt, "w", "non-integer"},
      {"shape_string", one(entry("w", R"("U8")", R"(["1"])", "[0,1]"), 1), corrupt, "w", "non-integer"},
      {"negative_dim", one(entry("w", R"("U8")", "[-1]", "[0,1]"), 1), corrupt, "w", "negative dimension"},
      {"dim_overflow", one(entry("w", R"("U8")", "[4294967296,4294967296,4]", "[0,1]"), 1), corrupt, "w", "overflows"},
      {"dim_above_int64", one(entry("w", R"("U8")", "[18446744073709551615]", "[0,1]"), 1), corrupt, "w", "overflows"},
      {"bytes_overflow", one(entry("w", R"("F32")", "[4611686018427387904]", "[0,1]"), 1), corrupt, "w", "needs"},
      {"rank_too_high", one(entry("w", R"("U8")", "[1,1,1,1,1,1,1]", "[0,1]"), 1), ErrorCode::unsupported, "w",
       "rank 7"},
      {"offsets_three", one(entry("w", R"("U8")", "[1]", "[0,1,2]"), 1), corrupt, "w", "data_offsets"},
      {"offsets_negative", one(entry("w", R"("U8")", "[1]", "[-1,0]"), 1), corrupt, "w", "data_offsets"},
      {"offsets_float", one(entry("w", R"("U8")", "[1]", "[0,1.0]"), 1), corrupt, "w", "data_offsets"},
      {"offsets_not_array", one(entry("w", R"("U8")", "[1]", "{}"), 1), corrupt, "w", "data_offsets"},
      {"bool_not_0_or_1", image("{" + entry("f", R"("BOOL")", "[4]", "[0,4]") + "}", 4), corrupt, "f", "holds byte 2"},
      {"metadata_not_object", image(R"({"__metadata__":[1]})", 0), corrupt, "__metadata__", "not a JSON object"},
      {"metadata_value_not_string", image(R"({"__metadata__":{"k":1}})", 0), corrupt, "__metadata__", "'k'"},
  };
}

TEST_F(SafetensorsTest, RejectsEveryCorruptFileWithAMessageNamingFileAndTensor) {
  for (const CorruptCase& c : corrupt_cases()) {
    SCOPED_TRACE(c.label);
    const std::string path = file(c.label + ".safetensors");
    write_bytes(path, c.bytes);
    std::vector<std::string> parts = {path, c.what};
    if (!c.tensor.empty()) parts.push_back("'" + c.tensor + "'");
    for (int in_memory = 0; in_memory < 2; ++in_memory) {
      try {
        if (in_memory)
          SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(c.bytes.data()), c.bytes.size(), path);
        else
          SafetensorsFile::open(path);
        ADD_FAILURE() << "accepted";
      } catch (const Error& e) {
        EXPECT_EQ(error_code_name(e.code()), std::string(error_code_name(c.code))) << e.what();
        for (const std::string& part : parts)
          EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "'" << part << "' not in: " << e.what();
      }
    }
  }
}

TEST_F(SafetensorsTest, RejectsAHeaderAboveTheLengthLimit) {
  // A sparse file just big enough that only the 100 MB limit can reject the header length.
  const std::string path = file("huge_header.safetensors");
  const uint64_t length = 100'000'001;
  write_bytes(path, image("", 0, length));
  fs::resize_file(path, 8 + length + 16);
  expect_error([&] { SafetensorsFile::open(path); }, ErrorCode::corrupt_file, {path, "exceeds the limit"});
}

TEST_F(SafetensorsTest, RejectsMissingFilesAndFolders) {
  expect_error([&] { SafetensorsFile::open(file("absent.safetensors")); }, ErrorCode::not_found,
               {file("absent.safetensors")});
  expect_error([&] { SafetensorsFile::open(dir_.string()); }, ErrorCode::io, {dir_.string(), "not a regular file"});
  write_bytes(file("zero.safetensors"), "");
  expect_error([&] { SafetensorsFile::open(file("zero.safetensors")); }, ErrorCode::corrupt_file,
               {file("zero.safetensors"), "too short"});
}

TEST_F(SafetensorsTest, TruncatedAndMutatedImagesFailCleanly) {
  std::mt19937 rng(3);
  const std::string path = file("base.safetensors");
  write_safetensors(path,
                    {{"x", random_tensor({3, 2}, DType::f32, rng)},
                     {"y", random_tensor({5}, DType::u8, rng)},
                     {"z", random_tensor({2}, DType::i64, rng)}},
                    {{"k", "v"}});
  const std::string bytes = read_bytes(path);
  const auto parse_or_error = [](const std::string& b) {
    try {
      const SafetensorsFile f = SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "m");
      for (const TensorInfo& t : f.tensors()) f.tensor(t.name).clone();
    } catch (const Error&) {
    }
  };
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string truncated = bytes.substr(0, n);
    EXPECT_THROW(SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(truncated.data()), n, "m"), Error) << n;
  }
  const uint64_t header_end = 8 + static_cast<uint8_t>(bytes[0]) + 256 * static_cast<uint8_t>(bytes[1]);
  for (size_t i = 0; i < header_end; ++i) {
    for (char c : {'{', '}', '"', ',', ':', '[', '0', '9', '-', ' ', '\0', '\xff'}) {
      std::string mutated = bytes;
      mutated[i] = c;
      parse_or_error(mutated);
    }
  }
}

TEST_F(SafetensorsTest, RefusesToReplaceAFileUnlessAsked) {
  std::mt19937 rng(5);
  const std::string path = file("keep.safetensors");
  const Tensor old_tensor = random_tensor({4}, DType::f32, rng), new_tensor = random_tensor({2}, DType::i32, rng);
  write_safetensors(path, {{"old", old_tensor}});
  const std::string before = read_bytes(path);
  expect_error([&] { write_safetensors(path, {{"new", new_tensor}}); }, ErrorCode::io, {path, "exists"});
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_TRUE(same_bytes(SafetensorsFile::open(path).tensor("old"), old_tensor));

  write_safetensors(path, {{"new", new_tensor}}, {}, /*overwrite=*/true);
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_FALSE(f.contains("old"));
  EXPECT_TRUE(same_bytes(f.tensor("new"), new_tensor));
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
}

TEST_F(SafetensorsTest, WriterRejectsBadInputNamingPathAndTensor) {
  const std::string path = file("bad.safetensors");
  const Tensor t = Tensor::zeros({2}, DType::f32);
  expect_error(
      [&] {
        write_safetensors(path, {{"w", t}, {"w", t}});
      },
      ErrorCode::invalid_argument, {path, "'w'", "duplicate"});
  expect_error(
      [&] {
        write_safetensors(path, {{"__metadata__", t}});
      },
      ErrorCode::invalid_argument, {path, "'__metadata__'", "reserved"});
  expect_error([&] { write_safetensors(path, {{"u", Tensor()}}); }, ErrorCode::invalid_argument, {path, "'u'"});
  float device_memory[2];  // never touched: the device check must come first
  const Tensor on_gpu = Tensor::borrow(device_memory, {2}, DType::f32, nullptr, Device::cuda(0));
  expect_error([&] { write_safetensors(path, {{"g", on_gpu}}); }, ErrorCode::unsupported, {path, "'g'", "CPU"});
  expect_error(
      [&] {
        write_safetensors(path, {{"n", t}}, {{"bad", "\xff"}});
      },
      ErrorCode::invalid_argument, {path, "UTF-8"});
  EXPECT_FALSE(fs::exists(path));
  const std::string nowhere = file("no/such/folder.safetensors");
  expect_error([&] { write_safetensors(nowhere, {{"w", t}}); }, ErrorCode::io, {nowhere});
  EXPECT_TRUE(fs::is_empty(dir_));
}

}  // namespace
}  // namespace vdit
