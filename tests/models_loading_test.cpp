// Loading models from diffusers folders: f32/f16/bf16 checkpoints, and bad input (missing,
// unexpected and mis-shaped tensors, unknown or unsupported architectures) reported by name.
// Variants of the committed tiny checkpoints are written to a temporary folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model_fixtures.h"
#include "models/model.h"

namespace vdit {
namespace {

using test::reference_inputs;
using test::relative_l2;

namespace fs = std::filesystem;
const ExecContext kCpu{};

std::string model_dir(const std::string& arch) { return std::string(VDIT_TEST_DATA) + "/models/" + arch + "/transformer"; }

using TensorList = std::vector<std::pair<std::string, Tensor>>;

// A copy of a committed checkpoint, edited, in a temporary folder removed at the end of the test.
class CheckpointVariant {
 public:
  CheckpointVariant(const std::string& arch, const std::function<void(TensorList&, nlohmann::json&)>& edit) {
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / fmt::format("vdit_{}_{}_{}", test->name(), arch, getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const Checkpoint source = Checkpoint::open(model_dir(arch));
    TensorList tensors;
    for (const std::string& name : source.names()) tensors.emplace_back(name, source.tensor(name));
    nlohmann::json config = source.config();
    edit(tensors, config);
    write_safetensors((dir_ / "diffusion_pytorch_model.safetensors").string(), tensors);
    std::ofstream(dir_ / "config.json") << config.dump(2);
  }
  ~CheckpointVariant() { fs::remove_all(dir_); }
  std::string path() const { return dir_.string(); }

 private:
  fs::path dir_;
};

void remove_tensor(TensorList& tensors, const std::string& name) {
  std::erase_if(tensors, [&](const auto& entry) { return entry.first == name; });
}

// Runs load_model and returns its error (code and message); fails the test when it loads.
Error load_error(const std::string& path) {
  try {
    load_model(path, kCpu);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << path << " loaded, expected an error";
  return Error(ErrorCode::internal, "");
}

void expect_mentions(const Error& e, const std::vector<std::string>& words) {
  for (const std::string& word : words)
    EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << "missing \"" << word << "\" in: " << e.what();
}

// Error of the model at `path` against the committed diffusers float32 output of `arch`.
double error_against_reference(const std::string& arch, const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(std::string(VDIT_TEST_DATA) + "/models/" + arch + "/reference.safetensors");
  const ModelInputs inputs = reference_inputs(file);
  AttentionPolicy dense = AttentionPolicy::dense();
  return relative_l2(load_model(path, kCpu)->forward(kCpu, inputs, dense), file.tensor("expected"));
}

TEST(ModelLoading, HalfPrecisionCheckpointsLoad) {
  for (const std::string arch : {"wan", "cogvideox"}) {
    for (DType dtype : {DType::bf16, DType::f16}) {
      const CheckpointVariant variant(arch, [&](TensorList& tensors, nlohmann::json&) {
        for (auto& [name, t] : tensors) t = t.to(dtype);
      });
      const double error = error_against_reference(arch, variant.path());
      std::printf("%s with %s weights vs diffusers float32: relative L2 error %.3e\n", arch.c_str(),
                  dtype_name(dtype), error);
      EXPECT_LT(error, dtype == DType::bf16 ? 2e-2 : 2e-3) << arch << " " << dtype_name(dtype);
    }
  }
}

TEST(ModelLoading, MissingTensorsAreListedByName) {
  const CheckpointVariant variant("wan", [](TensorList& tensors, nlohmann::json&) {
    remove_tensor(tensors, "blocks.1.attn2.to_k.weight");
    remove_tensor(tensors, "proj_out.bias");
  });
  const Error e = load_error(variant.path());
  EXPECT_EQ(e.code(), ErrorCode::not_found);
  expect_mentions(e, {"WanTransformer3DModel", "missing tensors (2)", "blocks.1.attn2.to_k.weight", "proj_out.bias"});
}

TEST(ModelLoading, UnexpectedTensorsAreListedByName) {
  const CheckpointVariant variant("cogvideox", [](TensorList& tensors, nlohmann::json&) {
    tensors.emplace_back("transformer_blocks.0.attn1.extra.weight", Tensor::zeros({3}, DType::f32));
  });
  const Error e = load_error(variant.path());
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  expect_mentions(e, {"CogVideoXTransformer3DModel", "unexpected tensors (1)", "transformer_blocks.0.attn1.extra.weight"});
}

TEST(ModelLoading, WrongShapeNamesTheTensorAndBothShapes) {
  const CheckpointVariant variant("wan", [](TensorList& tensors, nlohmann::json&) {
    for (auto& [name, t] : tensors)
      if (name == "blocks.0.ffn.net.2.weight") t = Tensor::zeros({32, 63}, DType::f32);
  });
  const Error e = load_error(variant.path());
  expect_mentions(e, {"blocks.0.ffn.net.2.weight is [32, 63] in the checkpoint, expected [32, 64]"});
}

TEST(ModelLoading, ConfigAndTensorsMustAgree) {
  // Three layers in the config, two in the tensors: every tensor of layer 2 is missing.
  const CheckpointVariant variant("cogvideox", [](TensorList&, nlohmann::json& config) { config["num_layers"] = 3; });
  const Error e = load_error(variant.path());
  expect_mentions(e, {"transformer_blocks.2.norm1.linear.weight", "transformer_blocks.2.ff.net.2.bias"});
}

TEST(ModelLoading, UnknownArchitectureNamesTheSupportedOnes) {
  const CheckpointVariant variant("wan", [](TensorList&, nlohmann::json& config) {
    config["_class_name"] = "HunyuanVideoTransformer3DModel";
  });
  const Error e = load_error(variant.path());
  EXPECT_EQ(e.code(), ErrorCode::unsupported);
  expect_mentions(e, {"HunyuanVideoTransformer3DModel", "WanTransformer3DModel", "CogVideoXTransformer3DModel",
                      "config.json"});
}

TEST(ModelLoading, UnsupportedVariantsNameTheirKey) {
  const CheckpointVariant i2v("wan", [](TensorList&, nlohmann::json& config) { config["image_dim"] = 1280; });
  const Error e = load_error(i2v.path());
  EXPECT_EQ(e.code(), ErrorCode::unsupported);
  expect_mentions(e, {"image_dim"});

  const CheckpointVariant two_b("cogvideox", [](TensorList&, nlohmann::json& config) {
    config["use_rotary_positional_embeddings"] = false;
  });
  expect_mentions(load_error(two_b.path()), {"use_rotary_positional_embeddings"});
}

TEST(ModelLoading, FolderWithoutConfigIsRefused) {
  const CheckpointVariant variant("wan", [](TensorList&, nlohmann::json&) {});
  fs::remove(fs::path(variant.path()) / "config.json");
  expect_mentions(load_error(variant.path()), {"config.json"});
}

}  // namespace
}  // namespace vdit
