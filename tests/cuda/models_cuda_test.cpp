// GPU conformance of the models against diffusers: bf16 weights and activations on the GPU, within
// 2e-2 relative L2 of diffusers' float32 output. The GPU attention kernels take head dims 64, 96 and
// 128, so the fixtures come from `scripts/make_reference_fixtures.py --out DIR --head-dim 64` run on
// the GPU machine, with DIR in VDIT_GPU_MODEL_FIXTURES. Skipped without a GPU or without fixtures.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstdlib>

#include "io/safetensors.h"
#include "model_fixtures.h"
#include "models/model.h"

namespace vdit {
namespace {

using test::reference_inputs;
using test::relative_l2;

class ModelsCuda : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA GPU";
    const char* dir = std::getenv("VDIT_GPU_MODEL_FIXTURES");
    if (!dir) GTEST_SKIP() << "VDIT_GPU_MODEL_FIXTURES is not set";
    folder_ = std::string(dir) + "/" + GetParam();
  }
  std::string folder_;
};

TEST_P(ModelsCuda, Bf16MatchesDiffusers) {
  const BlasHandle blas(Device::cuda(0));
  const ExecContext gpu{Device::cuda(0), nullptr, 0, blas.get()};
  const SafetensorsFile file = SafetensorsFile::open(folder_ + "/reference.safetensors");
  auto model = load_model(folder_ + "/transformer", gpu, DType::bf16);
  AttentionPolicy dense = AttentionPolicy::dense();
  const Tensor out = model->forward(gpu, reference_inputs(file), dense);
  EXPECT_EQ(out.dtype(), DType::bf16);
  const double error = relative_l2(out, file.tensor("expected"));
  std::printf("%s on the GPU in bf16 vs diffusers float32: relative L2 error %.3e\n", GetParam(), error);
  EXPECT_LT(error, 2e-2);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelsCuda, ::testing::Values("wan", "cogvideox", "cogvideox15"));

}  // namespace
}  // namespace vdit
