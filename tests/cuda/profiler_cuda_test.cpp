// The GPU profiler against the CPU profile_heads on the same inputs: the same sampled rows and
// masks; MSE and relative error within the bound below (the GPU rounds probabilities to 16 bits
// before P V, the CPU keeps them in f32); the same choice wherever the CPU's best candidate leads
// the next by more than both their bounds. Each case runs with the profile's blocks and with one
// and three (one block: every segment in turn, references that move mid-piece, long pipelines), on
// head dims, candidate counts and row counts that reach every warp layout of the kernel (8 or 16
// rows a warp, ragged row tiles), and the wgmma kernel where the GPU runs it (Hopper, bf16, d = 64,
// up to two candidates). Then the choices drive the GPU mask builder and the permutation
// through GPU memory, and the results equal the CPU's for those choices.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

bool hopper() {
  cudaDeviceProp prop{};
  return cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major == 9 && prop.minor == 0;
}

// Q, K, V [B, S, H, D] with random parts and, per head, a positional part that makes nearby tokens
// alike: head h % 3 == 0 random only, 1 local in frame-major order, 2 local in token-major order.
// So some heads have a clear winner and some are close calls.
std::array<Tensor, 3> structured_qkv(const VideoLayout& layout, int64_t batch, int64_t heads, int64_t dim,
                                     DType dtype, uint64_t seed) {
  const int64_t s = layout.tokens();
  const std::vector<int64_t> order = token_major_order(layout);
  std::vector<int64_t> token_major(s);
  for (int64_t i = 0; i < s; ++i) token_major[order[i]] = i;
  std::array<Tensor, 3> qkv;
  for (int i = 0; i < 3; ++i) qkv[i] = test::random_tensor(Shape{batch, s, heads, dim}, seed + 101 * i, 1.0f);
  std::vector<double> omega(dim), phase(dim);
  for (int64_t d = 0; d < dim; ++d) {
    omega[d] = 3.14159 * test::random_uniform(seed) / (0.08 * static_cast<double>(s));
    phase[d] = 3.14159 * test::random_uniform(seed);
  }
  float* q = qkv[0].data<float>();
  float* k = qkv[1].data<float>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < s; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        if (h % 3 == 0) continue;
        const double position = static_cast<double>(h % 3 == 1 ? t : token_major[t]);
        for (int64_t d = 0; d < dim; ++d) {
          const float f = static_cast<float>(1.5 * std::cos(omega[d] * position + phase[d]));
          const int64_t at = ((b * s + t) * heads + h) * dim + d;
          q[at] += f;
          k[at] += f;
        }
      }
    }
  }
  for (Tensor& t : qkv) t = t.to(dtype);
  return qkv;
}

struct Case {
  VideoLayout layout;
  int64_t batch, heads, dim;
  DType dtype;
  int block_q, block_k;
  std::vector<Pattern> candidates;
  int sample_rows;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {{4, 6, 10, 0, TextPosition::none}, 2, 3, 128, DType::bf16, 64, 64,
       {Pattern::spatial(0.25), Pattern::temporal(0.25)}, 64},
      {{5, 7, 9, 37, TextPosition::first}, 2, 3, 64, DType::f16, 32, 32,
       {Pattern::spatial(0.2, true), Pattern::temporal(0.2)}, 64},
      {{6, 5, 11, 19, TextPosition::last}, 1, 6, 96, DType::bf16, 16, 48,
       {Pattern::spatial(0.3), Pattern::temporal(0.15), Pattern::dense()}, 40},
      {{3, 4, 5, 3, TextPosition::last}, 2, 3, 64, DType::bf16, 8, 8,
       {Pattern::temporal(0.3)}, 100},  // more rows than video tokens: every video row
      {{9, 12, 14, 60, TextPosition::first}, 1, 3, 128, DType::f16, 128, 128,
       {Pattern::spatial(0.15, true), Pattern::temporal(0.15)}, 130},  // three row tiles
      {{13, 30, 45, 226, TextPosition::first}, 1, 3, 64, DType::bf16, 128, 128,
       {Pattern::spatial(0.25), Pattern::temporal(0.25)}, 64},  // CogVideoX-5B
      {{7, 8, 9, 23, TextPosition::first}, 1, 3, 128, DType::bf16, 64, 32,
       {Pattern::spatial(0.2), Pattern::temporal(0.2), Pattern::dense()}, 50},  // 128 accumulators a thread
      {{5, 9, 10, 0, TextPosition::none}, 2, 2, 96, DType::f16, 128, 64,
       {Pattern::spatial(0.3, true)}, 64},  // 16 rows a warp at d = 96
      {{8, 6, 9, 0, TextPosition::none}, 1, 2, 96, DType::bf16, 32, 64,
       {Pattern::spatial(0.2), Pattern::temporal(0.2)}, 64},  // Open-Sora-Plan's head dim
      {{6, 7, 8, 11, TextPosition::last}, 1, 2, 64, DType::f16, 64, 64,
       {Pattern::spatial(0.2), Pattern::temporal(0.2), Pattern::temporal(0.4)}, 64},  // 8 rows a warp at d = 64
      // The wgmma kernel on Hopper (bf16, d = 64, up to two candidates): a ragged row tile and two
      // batch items; three row tiles and one candidate; a dense candidate (exactly dense there).
      {{5, 6, 8, 13, TextPosition::last}, 2, 2, 64, DType::bf16, 32, 32,
       {Pattern::spatial(0.2, true), Pattern::temporal(0.3)}, 50},
      {{4, 5, 7, 0, TextPosition::none}, 1, 4, 64, DType::bf16, 16, 64, {Pattern::temporal(0.25)}, 130},
      {{6, 6, 9, 17, TextPosition::first}, 1, 3, 64, DType::bf16, 64, 64,
       {Pattern::spatial(0.25), Pattern::dense()}, 64},
  };
  return all;
}

std::string describe(const Case& c) {
  std::string s = c.layout.to_string() + " B" + std::to_string(c.batch) + " H" + std::to_string(c.heads) + " D" +
                  std::to_string(c.dim) + " " + dtype_name(c.dtype) + " blocks " + std::to_string(c.block_q) + "x" +
                  std::to_string(c.block_k) + " rows " + std::to_string(c.sample_rows) + " [";
  for (const Pattern& p : c.candidates) s += p.to_string() + " ";
  return s + "]";
}

// The stated bound on |GPU MSE - CPU MSE|: 5e-3 of the MSE, or 1e-5 of the dense output's mean
// square (mse / relative_error), whichever is larger.
double mse_bound(const ProfileResult& cpu, int64_t i) {
  const double power = cpu.relative_error[i] > 0 ? cpu.mse[i] / cpu.relative_error[i] : 0.0;
  return std::max(5e-3 * cpu.mse[i], 1e-5 * power) + 1e-12;
}

// Whether the CPU's best candidate leads every other by more than both their bounds.
bool clear_winner(const ProfileResult& cpu, int slot) {
  const int n = cpu.candidates;
  const int64_t first = int64_t{slot} * n;
  int best = 0;
  for (int c = 1; c < n; ++c)
    if (cpu.mse[first + c] < cpu.mse[first + best]) best = c;
  for (int c = 0; c < n; ++c) {
    if (c == best) continue;
    if (cpu.mse[first + c] - cpu.mse[first + best] <= mse_bound(cpu, first + c) + mse_bound(cpu, first + best))
      return false;
  }
  return true;
}

// Runs the GPU profile into `profile` (poisoned first) and compares it with the CPU's; counts the
// close calls and those that went the other way.
ProfileResult expect_matches_cpu(const std::array<Tensor, 3>& gpu, const GpuPatterns& patterns,
                                 const ProfileOptions& options, const GpuProfile& profile, const ProfileResult& cpu,
                                 const std::string& what, int* close_calls, int* mismatched_close_calls) {
  EXPECT_EQ(cudaMemset(profile.choice.raw_data(), 0x7f, profile.choice.nbytes()), cudaSuccess);
  EXPECT_EQ(cudaMemset(profile.mse.raw_data(), 0xff, profile.mse.nbytes()), cudaSuccess);  // NaN
  EXPECT_EQ(cudaMemset(profile.workspace.raw_data(), 0xff, profile.workspace.nbytes()), cudaSuccess);
  profile_heads_gpu(gpu[0], gpu[1], gpu[2], patterns, options, profile);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
  const ProfileResult got = profile.to_host();
  // Each slot was decided by its last combine block, which handed the slot's ticket back to 0.
  const Tensor tickets = profile.tickets.to(Device::cpu());
  for (int64_t i = 0; i < tickets.numel(); ++i) EXPECT_EQ(tickets.data<int32_t>()[i], 0) << what << " slot " << i;
  EXPECT_EQ(got.choice.size(), cpu.choice.size()) << what;
  if (got.choice.size() != cpu.choice.size()) return got;
  const int n = cpu.candidates;
  double worst_relative = 0, worst_of_power = 0;
  for (int slot = 0; slot < static_cast<int>(cpu.choice.size()); ++slot) {
    for (int k = 0; k < n; ++k) {
      const int64_t i = int64_t{slot} * n + k;
      const double bound = mse_bound(cpu, i);
      EXPECT_NEAR(got.mse[i], cpu.mse[i], bound) << what << " slot " << slot << " cand " << k;
      // The same bound, relative; a dense candidate has MSE 0 on the CPU and about 1e-16 here.
      const double relative_bound = cpu.mse[i] > 0 ? bound / cpu.mse[i] * cpu.relative_error[i] : 1e-9;
      EXPECT_NEAR(got.relative_error[i], cpu.relative_error[i], relative_bound)
          << what << " slot " << slot << " cand " << k;
      // The wgmma kernel's candidates multiply and sum dense's own probabilities: a dense one is exact.
      if (profile.wgmma && cpu.mse[i] == 0) {
        EXPECT_EQ(got.mse[i], 0.0) << what << " slot " << slot << " cand " << k;
      }
      const double error = std::abs(got.mse[i] - cpu.mse[i]);
      if (cpu.mse[i] > 0) worst_relative = std::max(worst_relative, error / cpu.mse[i]);
      if (cpu.relative_error[i] > 0) worst_of_power = std::max(worst_of_power, error * cpu.relative_error[i] / cpu.mse[i]);
    }
    if (clear_winner(cpu, slot)) {
      EXPECT_EQ(got.choice[slot], cpu.choice[slot]) << what << " slot " << slot;
    } else {
      ++*close_calls;
      if (got.choice[slot] != cpu.choice[slot]) ++*mismatched_close_calls;
    }
  }
  std::printf("[ profile  ] %s, %s, %d blocks: worst |MSE gpu - cpu| = %.2e of MSE, %.2e of dense power\n",
              what.c_str(), profile.wgmma ? "wgmma" : "mma.sync", profile.blocks, worst_relative, worst_of_power);
  return got;
}

TEST(ProfilerGpu, MatchesCpuProfileAndDrivesMasksAndPermutation) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 3;
  int close_calls = 0, mismatched_close_calls = 0;
  for (const Case& c : cases()) {
    const std::string what = describe(c);
    ProfileOptions options;
    options.sample_rows = c.sample_rows;
    options.seed = test::next_random(seed);
    options.block_q = c.block_q;
    options.block_k = c.block_k;
    const auto qkv = structured_qkv(c.layout, c.batch, c.heads, c.dim, c.dtype, test::next_random(seed));
    const ProfileResult cpu = profile_heads(qkv[0], qkv[1], qkv[2], c.layout, c.candidates, options);

    const GpuPatterns patterns = make_gpu_patterns(c.layout, c.candidates, c.block_q, c.block_k);
    const GpuProfile profile = allocate_gpu_profile(patterns, static_cast<int>(c.batch), static_cast<int>(c.heads),
                                                    static_cast<int>(c.dim), c.dtype, options);
    EXPECT_EQ(profile.wgmma, hopper() && c.dim == 64 && c.dtype == DType::bf16 && c.candidates.size() <= 2) << what;
    std::array<Tensor, 3> gpu;
    for (int i = 0; i < 3; ++i) gpu[i] = qkv[i].to(Device::cuda());
    // The same buffers, the work split over other block counts: one block runs every segment in
    // turn (references that move mid-piece, long pipelines); three split segments unevenly.
    GpuProfile split = profile;
    for (int blocks : {1, 3}) {
      set_gpu_profile_blocks(split, blocks);
      expect_matches_cpu(gpu, patterns, options, split, cpu, what, &close_calls, &mismatched_close_calls);
    }
    const ProfileResult got =
        expect_matches_cpu(gpu, patterns, options, profile, cpu, what, &close_calls, &mismatched_close_calls);
    if (got.choice.size() != cpu.choice.size()) continue;

    // The choices feed the mask builder and the permutation on the GPU. Compared with the CPU's
    // pipeline on the GPU's choices (equal to the CPU's choices wherever the call is clear).
    const std::vector<Pattern> chosen = got.patterns(c.candidates);
    GpuBlockMask mask = allocate_gpu_block_mask(patterns, static_cast<int>(c.batch * c.heads));
    build_block_mask_gpu(patterns, profile.choice, mask);
    const BlockMask want = build_block_mask(c.layout, chosen, c.block_q, c.block_k);
    const BlockMask mask_got = mask.to_host();
    EXPECT_EQ(mask_got.row_offsets, want.row_offsets) << what;
    EXPECT_EQ(mask_got.key_blocks, want.key_blocks) << what;

    const Tensor flags = profile.permute.to(Device::cpu());
    std::array<Tensor, 3> permuted;
    for (int i = 0; i < 3; ++i) permuted[i] = Tensor::empty(gpu[i].shape(), gpu[i].dtype(), Device::cuda());
    gather_to_token_major_gpu(gpu, permuted, c.layout, profile.permute);
    for (int64_t b = 0; b < c.batch; ++b) {
      std::vector<uint8_t> item(c.heads);
      for (int64_t h = 0; h < c.heads; ++h) {
        const Pattern& p = chosen[b * c.heads + h];
        item[h] = p.permuted() ? 1 : 0;
        EXPECT_EQ(flags.data<uint8_t>()[b * c.heads + h], item[h]) << what << " slot " << b * c.heads + h;
      }
      const Tensor want_q = gather_to_token_major(qkv[0].slice(0, b, b + 1), c.layout, item);
      const Tensor got_q = permuted[0].to(Device::cpu()).slice(0, b, b + 1).contiguous();
      EXPECT_EQ(std::memcmp(got_q.raw_data(), want_q.raw_data(), want_q.nbytes()), 0) << what << " batch " << b;
    }
  }
  // Close calls may go either way, but not most of them.
  EXPECT_LE(mismatched_close_calls * 2, close_calls) << mismatched_close_calls << " of " << close_calls;
}

// Head 0's rows put all but e^-120 of their weight on key 0 (4 + noise against key 0's 4s in every
// dimension), head 1 is plain noise. A candidate that misses key 0 has dense probabilities below
// 2^-126 on every key it keeps; its output must still be its own softmax, as on the CPU.
TEST(ProfilerGpu, CandidatesFarBelowTheDenseMaximumStayExact) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout{4, 6, 10, 0, TextPosition::none};
  const std::vector<Pattern> candidates = {Pattern::spatial(0.2), Pattern::temporal(0.2)};
  const int64_t tokens = layout.tokens(), heads = 2;
  int close_calls = 0, mismatched_close_calls = 0;
  for (const auto& [dim, dtype] : {std::pair<int64_t, DType>{64, DType::bf16}, {128, DType::f16}}) {
    std::array<Tensor, 3> qkv;
    for (int i = 0; i < 3; ++i) qkv[i] = test::random_tensor(Shape{1, tokens, heads, dim}, 41 + 7 * i + dim, 1.0f);
    float* q = qkv[0].data<float>();
    float* k = qkv[1].data<float>();
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t d = 0; d < dim; ++d) q[t * heads * dim + d] += 4.0f;
    for (int64_t d = 0; d < dim; ++d) k[d] = 4.0f;
    for (Tensor& t : qkv) t = t.to(dtype);
    ProfileOptions options;
    options.block_q = options.block_k = 16;
    const ProfileResult cpu = profile_heads(qkv[0], qkv[1], qkv[2], layout, candidates, options);
    const GpuPatterns patterns = make_gpu_patterns(layout, candidates, 16, 16);
    GpuProfile profile =
        allocate_gpu_profile(patterns, 1, static_cast<int>(heads), static_cast<int>(dim), dtype, options);
    std::array<Tensor, 3> gpu;
    for (int i = 0; i < 3; ++i) gpu[i] = qkv[i].to(Device::cuda());
    const std::string what = "key 0 dominant, d = " + std::to_string(dim) + " " + dtype_name(dtype);
    for (int blocks : {profile.blocks, 1}) {
      set_gpu_profile_blocks(profile, blocks);
      expect_matches_cpu(gpu, patterns, options, profile, cpu, what, &close_calls, &mismatched_close_calls);
    }
    EXPECT_GT(cpu.relative_error[0] + cpu.relative_error[1], 0.1) << what << ": key 0 is not dominant";
  }
  EXPECT_LE(mismatched_close_calls * 2, close_calls) << mismatched_close_calls << " of " << close_calls;
}

TEST(ProfilerGpu, DenseFallbackFollowsTheThreshold) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout{5, 6, 8, 10, TextPosition::last};
  const std::vector<Pattern> candidates = {Pattern::spatial(0.2), Pattern::temporal(0.2)};
  const auto qkv = structured_qkv(layout, 1, 3, 64, DType::bf16, 17);
  std::array<Tensor, 3> gpu;
  for (int i = 0; i < 3; ++i) gpu[i] = qkv[i].to(Device::cuda());
  for (double threshold : {1e-12, 0.0, 1e6}) {
    ProfileOptions options;
    options.block_q = options.block_k = 32;
    options.dense_fallback = threshold;
    const ProfileResult cpu = profile_heads(qkv[0], qkv[1], qkv[2], layout, candidates, options);
    const GpuPatterns patterns = make_gpu_patterns(layout, candidates, 32, 32);
    const GpuProfile profile = allocate_gpu_profile(patterns, 1, 3, 64, DType::bf16, options);
    profile_heads_gpu(gpu[0], gpu[1], gpu[2], patterns, options, profile);
    const ProfileResult got = profile.to_host();
    for (int slot = 0; slot < 3; ++slot) {
      if (threshold == 1e-12) {
        EXPECT_EQ(got.choice[slot], -1) << threshold;
      } else {
        EXPECT_GE(got.choice[slot], 0) << threshold;
      }
      if (threshold == 1e-12 || clear_winner(cpu, slot)) {
        EXPECT_EQ(got.choice[slot], cpu.choice[slot]) << threshold;
      }
    }
    const Tensor flags = profile.permute.to(Device::cpu());
    for (int slot = 0; slot < 3; ++slot) {
      const int c = got.choice[slot];
      EXPECT_EQ(flags.data<uint8_t>()[slot], c >= 0 && candidates[c].permuted() ? 1 : 0);
    }
  }
}

TEST(ProfilerGpu, RejectsWhatItDoesNotRun) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout{3, 4, 4, 0, TextPosition::none};
  ProfileOptions options;
  const std::vector<Pattern> tile = {Pattern::tile(1)};
  EXPECT_THROW(allocate_gpu_profile(make_gpu_patterns(layout, tile), 1, 1, 64, DType::bf16, options), Error);
  const std::vector<Pattern> ok = {Pattern::spatial(0.3), Pattern::temporal(0.3)};
  const GpuPatterns patterns = make_gpu_patterns(layout, ok);
  EXPECT_THROW(allocate_gpu_profile(patterns, 1, 1, 80, DType::bf16, options), Error);  // head dim
  ProfileOptions other_blocks = options;
  other_blocks.block_q = 64;
  EXPECT_THROW(allocate_gpu_profile(patterns, 1, 1, 64, DType::bf16, other_blocks), Error);
  EXPECT_THROW(allocate_gpu_profile(patterns, 1, 1, 64, DType::f32, options), Error);
  const GpuProfile profile = allocate_gpu_profile(patterns, 1, 1, 64, DType::bf16, options);
  const Tensor f32 = Tensor::zeros(Shape{1, layout.tokens(), 1, 64}, DType::f32, Device::cuda());
  EXPECT_THROW(profile_heads_gpu(f32, f32, f32, patterns, options, profile), Error);
  const Tensor bf16 = Tensor::zeros(Shape{1, layout.tokens(), 1, 64}, DType::bf16, Device::cuda());
  ProfileOptions other_seed = options;
  other_seed.seed = 99;
  EXPECT_THROW(profile_heads_gpu(bf16, bf16, bf16, patterns, other_seed, profile), Error);
  // Its key masks were built for these candidates and this layout.
  const std::vector<Pattern> swapped = {Pattern::temporal(0.3), Pattern::spatial(0.3)};
  EXPECT_THROW(profile_heads_gpu(bf16, bf16, bf16, make_gpu_patterns(layout, swapped), options, profile), Error);
  const VideoLayout other_layout{4, 3, 4, 0, TextPosition::none};  // as many tokens
  EXPECT_THROW(profile_heads_gpu(bf16, bf16, bf16, make_gpu_patterns(other_layout, ok), options, profile), Error);
  EXPECT_THROW(profile_heads_gpu(bf16, bf16, bf16, make_gpu_patterns(layout, ok, 64, 128), options, profile), Error);
  GpuProfile no_blocks = profile;
  no_blocks.blocks = 0;
  EXPECT_THROW(profile_heads_gpu(bf16, bf16, bf16, patterns, options, no_blocks), Error);
  EXPECT_THROW(set_gpu_profile_blocks(no_blocks, 0), Error);
  EXPECT_THROW(set_gpu_profile_blocks(no_blocks, 2), Error);  // one step of work: 48 keys, one row tile
  GpuProfile no_tickets = profile;
  no_tickets.tickets = Tensor();
  EXPECT_THROW(profile_heads_gpu(bf16, bf16, bf16, patterns, options, no_tickets), Error);
  // Keep bits in the other kernel's order (and size).
  GpuProfile other_kernel = profile;
  other_kernel.wgmma = !profile.wgmma;
  EXPECT_THROW(profile_heads_gpu(bf16, bf16, bf16, patterns, options, other_kernel), Error);
}

}  // namespace
}  // namespace vdit
