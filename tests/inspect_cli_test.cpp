// `vdit inspect`, run as a real process on files the test writes; totals are counted by hand.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "temp_dir.h"

namespace vdit {
namespace {

using nlohmann::json;

struct Result {
  int exit_code = -1;
  std::string output;
};

// Runs `vdit <arguments>`; stderr is kept only when `with_stderr`.
Result run_vdit(const std::string& arguments, bool with_stderr) {
  const std::string command = std::string("'") + VDIT_CLI + "' " + arguments + (with_stderr ? " 2>&1" : "");
  Result result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

using InspectCliTest = test::TempDirTest;

// 6 + 20 + 7 + 3 = 36 parameters; 6*4 + 20*2 + 7*8 + 3*1 = 123 bytes.
std::vector<std::pair<std::string, Tensor>> sample_tensors() {
  return {{"blocks.0.proj", Tensor::zeros({2, 3}, DType::f32)},
          {"blocks.0.norm", Tensor::zeros({4, 5}, DType::bf16)},
          {"ids", Tensor::zeros({7}, DType::i64)},
          {"flags", Tensor::zeros({3}, DType::boolean)}};
}

TEST_F(InspectCliTest, JsonHasEveryTensorAndTheTotals) {
  const std::string path = file("model.safetensors");
  write_safetensors(path, sample_tensors());
  const Result r = run_vdit("inspect '" + path + "' --json", false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json out = json::parse(r.output);
  EXPECT_EQ(out["parameters"], 36);
  EXPECT_EQ(out["bytes"], 123);
  const json want = json::array({
      {{"name", "blocks.0.norm"}, {"dtype", "bf16"}, {"shape", {4, 5}}},
      {{"name", "blocks.0.proj"}, {"dtype", "f32"}, {"shape", {2, 3}}},
      {{"name", "flags"}, {"dtype", "bool"}, {"shape", {3}}},
      {{"name", "ids"}, {"dtype", "i64"}, {"shape", {7}}},
  });
  EXPECT_EQ(out["tensors"], want);
}

TEST_F(InspectCliTest, TextListsTensorsAndTotals) {
  const std::string path = file("model.safetensors");
  write_safetensors(path, sample_tensors());
  const Result r = run_vdit("inspect '" + path + "'", false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* part :
       {"blocks.0.norm", "bf16", "[4, 5]", "ids", "i64", "[7]", "tensors:    4", "parameters: 36", "bytes:      123"})
    EXPECT_NE(r.output.find(part), std::string::npos) << part << " not in:\n" << r.output;
}

TEST_F(InspectCliTest, ShowsShardsAndTheConfigClass) {
  write_safetensors(file("m-1.safetensors"), {{"a", Tensor::zeros({2, 2}, DType::f16)}});
  write_safetensors(file("m-2.safetensors"), {{"b", Tensor::zeros({3}, DType::f32)}});
  std::ofstream(file("m.safetensors.index.json"))
      << R"({"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}})";
  std::ofstream(file("config.json")) << R"({"_class_name": "WanTransformer3DModel"})";

  const Result text = run_vdit("inspect '" + dir_.string() + "'", false);
  ASSERT_EQ(text.exit_code, 0) << text.output;
  for (const char* part :
       {"m-1.safetensors", "m-2.safetensors", "WanTransformer3DModel", "parameters: 7", "bytes:      20"})
    EXPECT_NE(text.output.find(part), std::string::npos) << part << " not in:\n" << text.output;

  const Result r = run_vdit("inspect '" + dir_.string() + "' --json", false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json out = json::parse(r.output);
  EXPECT_EQ(out["parameters"], 7);
  EXPECT_EQ(out["bytes"], 20);
  EXPECT_EQ(out["tensors"][1]["shard"], "m-2.safetensors");
  EXPECT_EQ(out["class_name"], "WanTransformer3DModel");
}

TEST_F(InspectCliTest, CorruptOrMissingInputFailsNamingTheFile) {
  const std::string path = file("broken.safetensors");
  std::ofstream(path, std::ios::binary) << std::string("\x20\0\0\0\0\0\0\0{\"w\": [", 15);
  const Result corrupt = run_vdit("inspect '" + path + "' --json", true);
  EXPECT_NE(corrupt.exit_code, 0);
  EXPECT_NE(corrupt.output.find(path), std::string::npos) << corrupt.output;

  const Result missing = run_vdit("inspect '" + file("absent.safetensors") + "'", true);
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find(file("absent.safetensors")), std::string::npos) << missing.output;

  EXPECT_NE(run_vdit("inspect", true).exit_code, 0);
  const Result help = run_vdit("inspect --help", true);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--json"), std::string::npos) << help.output;
}

}  // namespace
}  // namespace vdit
