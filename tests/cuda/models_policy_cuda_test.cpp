// The profiled attention policy on the GPU (profile_heads_gpu -> build_block_mask_gpu -> permutation
// -> flash attention, no host copy of Q, K, V) against the same policy on the CPU, on bf16 inputs
// built so that some (batch item, head) slots are clearly frame-local (spatial wins) and the others
// clearly position-aligned (temporal wins): the records name the same patterns per slot with the
// same densities, and the outputs agree within the bound stated at kMaxAbs / kMaxRelL2.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "models/attention_policy.h"
#include "test_util.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

enum class Kind { frame_local, position_aligned };

// Q, K, V [B, S, H, D] (f32) as in tests/profiler_test.cpp: slot b*H + h gets a per-frame (frame
// local) or per-spatial-position (position aligned) signature in q and k plus a little noise; text
// tokens carry noise only. V is uniform in [-1, 1).
std::vector<Tensor> make_inputs(const VideoLayout& layout, int64_t batch, int64_t heads, int64_t dim,
                                const std::vector<Kind>& kinds, uint64_t seed) {
  const int64_t tokens = layout.tokens(), frame_tokens = layout.frame_tokens();
  const Shape shape{batch, tokens, heads, dim};
  std::vector<Tensor> qkv = {Tensor::empty(shape, DType::f32), Tensor::empty(shape, DType::f32),
                             test::random_tensor(shape, seed + 1)};
  const float signature_scale = 1.5f, noise = 0.3f;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const Kind kind = kinds[b * heads + h];
      const int64_t groups = kind == Kind::frame_local ? layout.frames : frame_tokens;
      std::vector<float> signature(groups * dim);
      for (float& x : signature) x = test::random_uniform(seed);
      for (int64_t t = 0; t < tokens; ++t) {
        float* q = qkv[0].data<float>() + ((b * tokens + t) * heads + h) * dim;
        float* k = qkv[1].data<float>() + ((b * tokens + t) * heads + h) * dim;
        const int64_t video = t - layout.video_begin();
        const bool text = layout.is_text(t);
        const int64_t group = kind == Kind::frame_local ? video / frame_tokens : video % frame_tokens;
        for (int64_t d = 0; d < dim; ++d) {
          const float base = text ? 0.0f : signature_scale * signature[group * dim + d];
          q[d] = base + noise * test::random_uniform(seed);
          k[d] = base + noise * test::random_uniform(seed);
        }
      }
    }
  }
  return qkv;
}

// Output bound, GPU (bf16 in and out, P rounded to bf16 before P V, f32 accumulation) against the
// CPU policy (f32 reference on the same bf16-rounded inputs): |V| < 1 so |O| < 1, and bf16 keeps 8
// significant bits (relative step 2^-8 = 0.0039): the output's own rounding is at most 0.002 and
// the rounded probabilities add an error of the same order. 0.02 is several times that, and far
// below what one slot under the wrong pattern gives on these inputs (its rows attend other keys).
constexpr double kMaxAbs = 0.02;
constexpr double kMaxRelL2 = 0.01;

TEST(ProfiledPolicyCuda, PicksWhatTheCpuPolicyPicksAndMatchesItsOutput) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  // L = 128 tokens a frame: frames fill whole 128-token blocks; 16 text tokens first.
  VideoLayout layout;
  layout.frames = 8;
  layout.height = 8;
  layout.width = 16;
  layout.text = 16;
  layout.text_position = TextPosition::first;
  const int64_t batch = 2, heads = 4, dim = 64;
  std::vector<Kind> kinds;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      kinds.push_back((h + b) % 2 == 0 ? Kind::frame_local : Kind::position_aligned);
  const std::vector<Tensor> f32 = make_inputs(layout, batch, heads, dim, kinds, 7);
  // The same values on both sides: bf16 on the GPU, their exact f32 widening on the CPU.
  std::vector<Tensor> cpu, gpu;
  for (const Tensor& t : f32) {
    const Tensor rounded = t.to(DType::bf16);
    cpu.push_back(rounded.to(DType::f32));
    gpu.push_back(rounded.to(Device::cuda()));
  }

  ProfiledOptions options;  // spatial:0.25 and temporal:0.25, 64 rows, 128 x 128 blocks
  options.warmup_fraction = 0.25;
  options.warmup_layers = 1;
  AttentionPolicy on_cpu = AttentionPolicy::profiled(options);
  AttentionPolicy on_gpu = AttentionPolicy::profiled(options);
  const ExecContext cpu_ctx{Device::cpu()};
  const ExecContext gpu_ctx{Device::cuda()};

  // Layer 0 is the dense warm-up layer; layers 1 and 2 are profiled (the second reuses the GPU
  // profile buffers and mask).
  for (int layer = 0; layer < 3; ++layer) {
    const AttentionSite site{4, 10, layer, 3, layout};
    const Tensor expected = on_cpu.attend(cpu_ctx, cpu[0], cpu[1], cpu[2], site);
    const Tensor got = on_gpu.attend(gpu_ctx, gpu[0], gpu[1], gpu[2], site).to(Device::cpu()).to(DType::f32);
    ASSERT_EQ(got.shape(), expected.shape());
    const float* e = expected.data<float>();
    const float* g = got.data<float>();
    double max_abs = 0.0, diff = 0.0, norm = 0.0;
    for (int64_t i = 0; i < got.numel(); ++i) {
      const double d = static_cast<double>(g[i]) - e[i];
      max_abs = std::max(max_abs, std::fabs(d));
      diff += d * d;
      norm += static_cast<double>(e[i]) * e[i];
    }
    EXPECT_LE(max_abs, kMaxAbs) << "layer " << layer;
    EXPECT_LE(std::sqrt(diff / norm), kMaxRelL2) << "layer " << layer;
  }

  const std::vector<AttentionRecord>& cpu_records = on_cpu.records();
  const std::vector<AttentionRecord>& gpu_records = on_gpu.records();
  ASSERT_EQ(cpu_records.size(), 3u);
  ASSERT_EQ(gpu_records.size(), 3u);
  EXPECT_EQ(gpu_records[0].density, 1.0);  // warm-up layer
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(gpu_records[i].step, cpu_records[i].step);
    EXPECT_EQ(gpu_records[i].layer, cpu_records[i].layer);
    EXPECT_EQ(gpu_records[i].heads, cpu_records[i].heads) << "record " << i;
    EXPECT_NEAR(gpu_records[i].density, cpu_records[i].density, 1e-12) << "record " << i;
  }
  // The inputs were built for a clear winner in every slot.
  for (size_t i = 1; i < 3; ++i) {
    ASSERT_EQ(gpu_records[i].heads.size(), kinds.size());
    for (size_t slot = 0; slot < kinds.size(); ++slot)
      EXPECT_EQ(gpu_records[i].heads[slot], kinds[slot] == Kind::frame_local ? options.candidates[0]
                                                                            : options.candidates[1])
          << "record " << i << " slot " << slot;
    EXPECT_LT(gpu_records[i].density, 1.0);
  }

  // clear_records drops the pending GPU records too; the next call records afresh.
  on_gpu.clear_records();
  EXPECT_TRUE(on_gpu.records().empty());
  on_gpu.attend(gpu_ctx, gpu[0], gpu[1], gpu[2], AttentionSite{4, 10, 2, 3, layout});
  ASSERT_EQ(on_gpu.records().size(), 1u);
  EXPECT_EQ(on_gpu.records()[0].heads, cpu_records[2].heads);
}

}  // namespace
}  // namespace vdit
