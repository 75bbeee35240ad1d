// GPU conformance of the models against diffusers: f32 weights and activations on the GPU (the f32
// attention kernel, cuBLASLt with f32 compute) within 1e-4 relative L2 of diffusers' float32
// output, bf16 within 2e-2; and the sparse attention policies in f32 on the GPU against the same
// policies on the CPU. The GPU attention kernels take head dims 64, 96 and 128, so the fixtures
// come from `scripts/make_reference_fixtures.py --out DIR --head-dim 64` run on the GPU machine,
// with DIR in VDIT_GPU_MODEL_FIXTURES. Skipped without a GPU or without fixtures.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <map>

#include "io/safetensors.h"
#include "model_fixtures.h"
#include "models/model.h"
#include "ops/op_timeline.h"

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
    blas_ = std::make_unique<BlasHandle>(Device::cuda(0));
    gpu_ = ExecContext{Device::cuda(0), nullptr, 0, blas_->get()};
    file_ = std::make_unique<SafetensorsFile>(SafetensorsFile::open(folder_ + "/reference.safetensors"));
    inputs_ = reference_inputs(*file_);
  }
  std::unique_ptr<VideoModel> load(const ExecContext& ctx, DType dtype) const {
    return load_model(folder_ + "/transformer", ctx, dtype);
  }

  std::string folder_;
  std::unique_ptr<BlasHandle> blas_;
  ExecContext gpu_, cpu_;
  std::unique_ptr<SafetensorsFile> file_;  // the reference fixture: inputs and diffusers' output
  ModelInputs inputs_;
};

// The model in `dtype` on the GPU, dense attention, against diffusers' float32 output.
double gpu_error(const std::string& folder, DType dtype) {
  const BlasHandle blas(Device::cuda(0));
  const ExecContext gpu{Device::cuda(0), nullptr, 0, blas.get()};
  const SafetensorsFile file = SafetensorsFile::open(folder + "/reference.safetensors");
  auto model = load_model(folder + "/transformer", gpu, dtype);
  AttentionPolicy dense = AttentionPolicy::dense();
  const Tensor out = model->forward(gpu, reference_inputs(file), dense);
  EXPECT_EQ(out.dtype(), dtype);
  EXPECT_TRUE(out.device().is_cuda());
  return relative_l2(out, file.tensor("expected"));
}

TEST_P(ModelsCuda, F32MatchesDiffusers) {
  const double error = gpu_error(folder_, DType::f32);
  std::printf("%s on the GPU in f32 vs diffusers float32: relative L2 error %.3e\n", GetParam(), error);
  EXPECT_LT(error, 1e-4);
}

TEST_P(ModelsCuda, Bf16MatchesDiffusers) {
  const double error = gpu_error(folder_, DType::bf16);
  std::printf("%s on the GPU in bf16 vs diffusers float32: relative L2 error %.3e\n", GetParam(), error);
  EXPECT_LT(error, 2e-2);
}

// Sparse policies in f32 on the GPU run what the CPU runs: a fixed tile pattern and a plan with a
// temporal (permuted) layer, in blocks of 4 tokens (which only the f32 kernel takes), and the
// profiled policy, which for f32 profiles on host copies of Q, K, V. The records name the same
// patterns and densities, and the outputs agree within the conformance bound, 1e-4 relative L2
// (a wrong mask or permutation moves them by far more: the tile pattern alone moves the output
// by more than 1e-4 from dense, tests/models_wan_test.cpp).
TEST_P(ModelsCuda, F32SparsePoliciesMatchTheCpu) {
  const ExecContext &gpu = gpu_, &cpu = cpu_;
  const ModelInputs& inputs = inputs_;
  auto gpu_model = load(gpu, DType::f32);
  auto cpu_model = load(cpu, DType::f32);

  ProfiledOptions profiled;
  profiled.warmup_fraction = 0.5;
  profiled.warmup_layers = 1;
  profiled.profile.block_q = profiled.profile.block_k = 4;
  profiled.profile.sample_rows = 8;
  const LayerPlan plan = parse_layer_plan(R"({"layers": {"1": "temporal:0.5"}})", "plan");
  const std::vector<std::pair<const char*, std::function<AttentionPolicy()>>> policies = {
      {"tile:0", [] { return AttentionPolicy::fixed(Pattern::tile(0), 4, 4); }},
      {"plan", [&] { return AttentionPolicy::plan(plan, 4, 4); }},
      {"profiled", [&] { return AttentionPolicy::profiled(profiled); }},
  };
  for (const auto& [name, make] : policies) {
    SCOPED_TRACE(name);
    AttentionPolicy on_gpu = make(), on_cpu = make();
    for (int step = 0; step < 2; ++step) {
      const Tensor a = gpu_model->forward(gpu, inputs, on_gpu, {step, 2});
      const Tensor b = cpu_model->forward(cpu, inputs, on_cpu, {step, 2});
      const double error = relative_l2(a, b);
      std::printf("%s f32 %s step %d: GPU vs CPU relative L2 %.3e, density %.3f\n", GetParam(), name, step, error,
                  on_cpu.records().back().density);
      EXPECT_LT(error, 1e-4);
    }
    const std::vector<AttentionRecord>& got = on_gpu.records();
    const std::vector<AttentionRecord>& want = on_cpu.records();
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].heads, want[i].heads) << "record " << i;
      EXPECT_DOUBLE_EQ(got[i].density, want[i].density) << "record " << i;
    }
  }
}

// The op timeline on the GPU (CUDA events on the stream): the same op categories, called as often,
// as the CPU forward's timeline (the CPU implementations call other ops inside theirs, which count
// as part of the outer op on both), times that add up to no more than the forward's, and the same
// output as without the timeline (up to cuBLASLt's run-to-run freedom, which is none here).
TEST_P(ModelsCuda, OpTimelineCountsTheCpuOps) {
  const ExecContext &gpu = gpu_, &cpu = cpu_;
  const ModelInputs& inputs = inputs_;
  auto gpu_model = load(gpu, DType::bf16);
  auto cpu_model = load(cpu, DType::f32);
  auto counted = [&](const VideoModel& model, const ExecContext& ctx, Tensor* out, double* forward_ms) {
    OpTimeline timeline(ctx);
    ExecContext timed = ctx;
    timed.timeline = &timeline;
    AttentionPolicy dense = AttentionPolicy::dense();
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    cudaEventRecord(start, nullptr);
    timeline.begin();
    *out = model.forward(timed, inputs, dense);
    cudaEventRecord(stop, nullptr);
    std::map<std::string, int> calls;
    double sum = 0.0;
    for (const OpTime& t : timeline.finish()) {
      calls[t.category] = t.calls;
      EXPECT_GE(t.ms, 0.0) << t.category;
      sum += t.ms;
    }
    float ms = 0.0f;
    cudaEventSynchronize(stop);
    cudaEventElapsedTime(&ms, start, stop);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    *forward_ms = ms;
    if (ctx.device.is_cuda()) {
      EXPECT_LE(sum, ms * 1.001 + 1e-3);
    }
    return calls;
  };
  Tensor on_gpu, on_cpu;
  double gpu_ms = 0.0, cpu_ms = 0.0;
  const std::map<std::string, int> gpu_calls = counted(*gpu_model, gpu, &on_gpu, &gpu_ms);
  const std::map<std::string, int> cpu_calls = counted(*cpu_model, cpu, &on_cpu, &cpu_ms);
  EXPECT_EQ(gpu_calls, cpu_calls);
  EXPECT_GT(gpu_calls.at("attention"), 0);
  AttentionPolicy dense = AttentionPolicy::dense();
  EXPECT_EQ(relative_l2(gpu_model->forward(gpu, inputs, dense), on_gpu), 0.0);
  std::printf("%s: %zu op categories, GPU forward %.2f ms\n", GetParam(), gpu_calls.size(), gpu_ms);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelsCuda, ::testing::Values("wan", "cogvideox", "cogvideox15"));

}  // namespace
}  // namespace vdit
