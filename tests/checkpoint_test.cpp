// Checkpoints: a single file, a folder with one file and config.json, a sharded folder whose index
// is written by hand, and every broken-index case.
#include "io/checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "temp_dir.h"
#include "test_util.h"

namespace vdit {
namespace {

using test::expect_error;

namespace fs = std::filesystem;

class CheckpointTest : public test::TempDirTest {
 protected:
  // A tensor whose element i is `first + i`.
  static Tensor iota(const Shape& shape, float first) {
    Tensor t = Tensor::empty(shape, DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = first + static_cast<float>(i);
    return t;
  }

  // Two shards: a, b in shard 1; c in shard 2; and an index listing them as `weight_map`.
  void write_sharded(const std::string& weight_map) {
    write_safetensors(file(kShard1), {{"a", iota({2, 3}, 0)}, {"b", iota({4}, 10)}}, {}, /*overwrite=*/true);
    write_safetensors(file(kShard2), {{"c", iota({3}, 20)}}, {}, /*overwrite=*/true);
    write_text(kIndex, R"({"metadata": {"total_size": 52}, "weight_map": )" + weight_map + "}");
  }
  void write_text(const std::string& name, const std::string& text) const { std::ofstream(file(name)) << text; }

  static constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
  static constexpr const char* kShard2 = "model-00002-of-00002.safetensors";
  static constexpr const char* kIndex = "model.safetensors.index.json";
  static constexpr const char* kGoodMap =
      R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
          "c": "model-00002-of-00002.safetensors"})";
};

bool equal_floats(const Tensor& t, const Tensor& want) {
  return t.shape() == want.shape() && t.dtype() == want.dtype() &&
         std::memcmp(t.raw_data(), want.raw_data(), want.nbytes()) == 0;
}

TEST_F(CheckpointTest, OpensASingleFile) {
  write_safetensors(file("w.safetensors"), {{"y", iota({2}, 1)}, {"x", iota({1, 2}, 5)}});
  const Checkpoint c = Checkpoint::open(file("w.safetensors"));
  EXPECT_FALSE(c.has_config());
  EXPECT_EQ(c.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(equal_floats(c.tensor("x"), iota({1, 2}, 5)));
  EXPECT_EQ(c.info("y").shape, Shape({2}));
  EXPECT_EQ(c.shards().size(), 1u);
  expect_error([&] { c.tensor("z"); }, ErrorCode::not_found, {file("w.safetensors"), "'z'"});
}

TEST_F(CheckpointTest, OpensAFolderWithOneFileAndConfig) {
  write_safetensors(file("diffusion_pytorch_model.safetensors"), {{"w", iota({3}, 0)}});
  write_text("config.json", R"({"_class_name": "WanTransformer3DModel", "num_layers": 2})");
  const Checkpoint c = Checkpoint::open(dir_.string());
  ASSERT_TRUE(c.has_config());
  EXPECT_EQ(c.config()["_class_name"], "WanTransformer3DModel");
  EXPECT_EQ(c.config()["num_layers"], 2);
  EXPECT_EQ(c.names(), std::vector<std::string>{"w"});
  EXPECT_TRUE(equal_floats(c.tensor("w"), iota({3}, 0)));
}

TEST_F(CheckpointTest, OpensAShardedFolder) {
  write_sharded(kGoodMap);
  const Checkpoint c = Checkpoint::open(dir_.string());
  EXPECT_FALSE(c.has_config());
  EXPECT_EQ(c.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(c.shards().size(), 2u);
  EXPECT_EQ(fs::path(c.shard("a").path()).filename(), kShard1);
  EXPECT_EQ(fs::path(c.shard("c").path()).filename(), kShard2);
  EXPECT_TRUE(equal_floats(c.tensor("a"), iota({2, 3}, 0)));
  EXPECT_TRUE(equal_floats(c.tensor("b"), iota({4}, 10)));
  EXPECT_TRUE(equal_floats(c.tensor("c"), iota({3}, 20)));
  EXPECT_EQ(c.info("c").end - c.info("c").begin, 12u);
}

TEST_F(CheckpointTest, RejectsEachBrokenIndex) {
  const std::string index = file(kIndex);
  struct Case {
    std::string label, weight_map;
    ErrorCode code;
    std::vector<std::string> parts;
  };
  const std::vector<Case> cases = {
      {"missing shard file",
       R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
          "c": "model-00003-of-00002.safetensors"})",
       ErrorCode::not_found,
       {index, "model-00003-of-00002.safetensors", "'c'", "does not exist"}},
      {"tensor missing from its shard",
       R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
          "c": "model-00002-of-00002.safetensors", "d": "model-00002-of-00002.safetensors"})",
       ErrorCode::corrupt_file,
       {index, kShard2, "'d'", "missing from it"}},
      {"tensor in the other shard",
       R"({"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
          "c": "model-00002-of-00002.safetensors"})",
       ErrorCode::corrupt_file,
       {index, kShard1, kShard2, "'b'"}},
      {"tensor not in the index",
       R"({"a": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"})",
       ErrorCode::corrupt_file,
       {index, kShard1, "'b'", "not listed"}},
      {"listed twice",
       R"({"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
          "c": "model-00002-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"})",
       ErrorCode::corrupt_file,
       {index, "'a'", "twice"}},
      {"shard outside the folder",
       R"({"a": "../model-00001-of-00002.safetensors"})",
       ErrorCode::corrupt_file,
       {index, "'a'", "not a file name"}},
      {"shard not a string", R"({"a": 1})", ErrorCode::corrupt_file, {index, "'a'", "not a string"}},
      {"weight_map not an object", R"([])", ErrorCode::corrupt_file, {index, "weight_map"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    write_sharded(c.weight_map);
    try {
      Checkpoint::open(dir_.string());
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(error_code_name(e.code()), std::string(error_code_name(c.code))) << e.what();
      for (const std::string& part : c.parts)
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "'" << part << "' not in: " << e.what();
    }
  }

  write_text(kIndex, R"({"weight_map": {"a": )");
  expect_error([&] { Checkpoint::open(dir_.string()); }, ErrorCode::corrupt_file, {index, "invalid JSON"});
  write_text(kIndex, R"({"metadata": {}})");
  expect_error([&] { Checkpoint::open(dir_.string()); }, ErrorCode::corrupt_file, {index, "'weight_map' is missing"});
}

TEST_F(CheckpointTest, RejectsATensorInTwoShards) {
  write_safetensors(file(kShard1), {{"a", iota({2}, 0)}, {"b", iota({2}, 0)}});
  write_safetensors(file(kShard2), {{"b", iota({2}, 0)}});
  write_text(kIndex,
             R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})");
  expect_error([&] { Checkpoint::open(dir_.string()); }, ErrorCode::corrupt_file,
               {dir_.string(), "'b'", kShard1, kShard2, "both"});
}

TEST_F(CheckpointTest, ACorruptShardIsNamed) {
  write_sharded(kGoodMap);
  std::ofstream(file(kShard2), std::ios::binary | std::ios::trunc) << "garbage!garbage!";
  expect_error([&] { Checkpoint::open(dir_.string()); }, ErrorCode::corrupt_file, {file(kShard2)});
}

TEST_F(CheckpointTest, RejectsFoldersWithoutOneClearSetOfWeights) {
  expect_error([&] { Checkpoint::open(dir_.string()); }, ErrorCode::not_found, {dir_.string(), "no .safetensors"});

  fs::create_directory(dir_ / "transformer");
  write_text("model_index.json", R"({"_class_name": "WanPipeline"})");
  expect_error([&] { Checkpoint::open(dir_.string()); }, ErrorCode::not_found, {file("transformer")});

  write_safetensors(file("one.safetensors"), {{"a", iota({1}, 0)}});
  write_safetensors(file("two.safetensors"), {{"b", iota({1}, 0)}});
  expect_error([&] { Checkpoint::open(dir_.string()); }, ErrorCode::invalid_argument,
               {dir_.string(), "one.safetensors", "two.safetensors"});

  write_text("config.json", "{not json");
  expect_error([&] { Checkpoint::open(dir_.string()); }, ErrorCode::corrupt_file, {file("config.json")});

  expect_error([&] { Checkpoint::open(file("absent")); }, ErrorCode::not_found, {file("absent")});
}

}  // namespace
}  // namespace vdit
