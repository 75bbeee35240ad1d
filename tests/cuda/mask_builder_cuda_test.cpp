// The GPU mask builder against the CPU build_block_mask: identical CSR (offsets and key blocks) for
// every pattern, ragged layouts, text first/last/none and several block sizes, with slot codes read
// from GPU memory. The row rule the GPU runs is also checked on the host, where it runs without a
// GPU.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "kernels/cuda/mask_builder.h"
#include "test_util.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

struct Case {
  VideoLayout layout;
  int block_q, block_k;
};

const Case kCases[] = {
    {{1, 1, 1, 0, TextPosition::none}, 128, 128},
    {{3, 4, 5, 0, TextPosition::none}, 8, 8},
    {{5, 3, 7, 11, TextPosition::first}, 16, 16},
    {{7, 6, 6, 100, TextPosition::last}, 32, 64},
    {{4, 9, 13, 29, TextPosition::first}, 64, 32},
    {{6, 5, 11, 3, TextPosition::last}, 13, 7},
    {{9, 7, 10, 0, TextPosition::none}, 48, 80},
    {{13, 30, 45, 226, TextPosition::first}, 128, 128},  // CogVideoX-5B
    {{21, 30, 52, 0, TextPosition::none}, 128, 128},     // Wan2.1-1.3B 480p
    {{21, 30, 52, 0, TextPosition::none}, 64, 128},
    {{33, 45, 80, 256, TextPosition::last}, 128, 128},   // HunyuanVideo 720p
};

std::vector<Pattern> candidates_for(int64_t frames) {
  std::vector<Pattern> c = {Pattern::dense(), Pattern::tile(0), Pattern::tile(1)};
  if (frames >= 2) c.push_back(Pattern::tile(2));
  if (frames >= 3) c.push_back(Pattern::tile(static_cast<int>(frames)));
  for (double d : {0.03, 0.15, 0.25, 0.6, 1.0}) {
    c.push_back(Pattern::spatial(d));
    c.push_back(Pattern::spatial(d, true));
    c.push_back(Pattern::temporal(d));
  }
  return c;
}

std::string describe(const Case& c) {
  return c.layout.to_string() + " blocks " + std::to_string(c.block_q) + "x" + std::to_string(c.block_k);
}

std::vector<Pattern> slot_patterns(const std::vector<Pattern>& candidates, const std::vector<int32_t>& codes) {
  std::vector<Pattern> p;
  for (int32_t code : codes) p.push_back(code < 0 ? Pattern::dense() : candidates[code]);
  return p;
}

Tensor to_gpu(const std::vector<int32_t>& values) {
  Tensor host = Tensor::empty(Shape{static_cast<int64_t>(values.size())}, DType::i32);
  std::copy(values.begin(), values.end(), host.data<int32_t>());
  return host.to(Device::cuda());
}

void poison(const GpuBlockMask& mask) {
  ASSERT_EQ(cudaMemset(mask.row_offsets.raw_data(), 0xff, mask.row_offsets.nbytes()), cudaSuccess);
  ASSERT_EQ(cudaMemset(mask.key_blocks.raw_data(), 0xff, mask.key_blocks.nbytes()), cudaSuccess);
}

void expect_same(const BlockMask& got, const BlockMask& want, const std::string& what) {
  ASSERT_NO_THROW(got.validate()) << what;
  ASSERT_EQ(got.tokens, want.tokens) << what;
  ASSERT_EQ(got.heads, want.heads) << what;
  ASSERT_EQ(got.row_offsets, want.row_offsets) << what;
  ASSERT_EQ(got.key_blocks, want.key_blocks) << what;
}

// The rule's inputs for a case, worked out here from the layout and the pattern (with the CPU
// builder's band width).
cuda::MaskGeometry rule_geometry(const Case& c) {
  return {c.layout.tokens(), c.layout.video_begin(), c.layout.video_tokens(), c.layout.frames,
          c.layout.frame_tokens(), c.block_q, c.block_k, (c.layout.tokens() + c.block_q - 1) / c.block_q,
          (c.layout.tokens() + c.block_k - 1) / c.block_k};
}

cuda::MaskPattern rule_pattern(const Case& c, const Pattern& pattern) {
  cuda::MaskPattern p;
  p.kind = static_cast<int32_t>(pattern.kind);
  p.global_frames = pattern.global_frames;
  p.sink = pattern.sink;
  p.permuted = pattern.permuted();
  if (pattern.kind == Pattern::Kind::spatial || pattern.kind == Pattern::Kind::temporal)
    p.band = band_width(c.layout, pattern, c.block_k);
  return p;
}

// The shared host/device rule, run on the host: each pattern's rows equal the CPU builder's.
TEST(MaskBuilderRule, RowsEqualCpuBuilderOnHost) {
  for (const Case& c : kCases) {
    const cuda::MaskGeometry g = rule_geometry(c);
    for (const Pattern& pattern : candidates_for(c.layout.frames)) {
      const BlockMask want = build_block_mask(c.layout, pattern, 1, c.block_q, c.block_k);
      const cuda::MaskPattern p = rule_pattern(c, pattern);
      std::vector<int32_t> blocks;
      for (int64_t qb = 0; qb < g.q_blocks; ++qb) {
        cuda::RowDedup dedup;
        cuda::walk_mask_row(g, p, qb, [&](int64_t first, int64_t last) {
          if (!dedup.next(&first, &last)) return;
          for (int64_t b = first; b <= last; ++b) blocks.push_back(static_cast<int32_t>(b));
        });
        ASSERT_EQ(static_cast<int64_t>(blocks.size()), want.row_offsets[qb + 1])
            << describe(c) << " " << pattern.to_string() << " row " << qb;
        ASSERT_EQ(cuda::mask_row_tiles(g, p, qb), want.row_offsets[qb + 1] - want.row_offsets[qb]);
      }
      ASSERT_EQ(blocks, want.key_blocks) << describe(c) << " " << pattern.to_string();
    }
  }
}

// The profiler's three-run form of dense, spatial and temporal rows keeps exactly the blocks of
// the row walk, and none past the last block.
TEST(MaskBuilderRule, BandRowsKeepTheWalkedBlocks) {
  for (const Case& c : kCases) {
    const cuda::MaskGeometry g = rule_geometry(c);
    for (const Pattern& pattern : candidates_for(c.layout.frames)) {
      if (pattern.kind == Pattern::Kind::tile) continue;
      const cuda::MaskPattern p = rule_pattern(c, pattern);
      for (int64_t qb = 0; qb < g.q_blocks; ++qb) {
        std::vector<uint8_t> walked(g.k_blocks + 1, 0);
        cuda::walk_mask_row(g, p, qb, [&](int64_t first, int64_t last) {
          for (int64_t b = first; b <= last; ++b) walked[b] = 1;
        });
        const cuda::BandRow row = cuda::band_mask_row(g, p, qb);
        for (int64_t b = 0; b < g.k_blocks; ++b)
          ASSERT_EQ(row.keeps(b) ? 1 : 0, walked[b]) << describe(c) << " " << pattern.to_string() << " row " << qb
                                                      << " block " << b;
      }
    }
  }
}

TEST(MaskBuilderGpu, EveryPatternAndSlotMixEqualsCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 7;
  for (const Case& c : kCases) {
    const std::vector<Pattern> candidates = candidates_for(c.layout.frames);
    const GpuPatterns patterns = make_gpu_patterns(c.layout, candidates, c.block_q, c.block_k);
    // Each candidate alone on a few slots, then random mixes of codes including dense (-1).
    const bool large = c.layout.tokens() > 50000;
    std::vector<std::vector<int32_t>> code_sets;
    if (!large) {
      for (int i = 0; i < static_cast<int>(candidates.size()); ++i) code_sets.push_back({i, i});
    }
    for (int mix = 0; mix < (large ? 1 : 3); ++mix) {
      const int slots = large ? 6 : 1 + static_cast<int>(test::next_random(seed) % 24);
      std::vector<int32_t> codes;
      for (int s = 0; s < slots; ++s)
        codes.push_back(static_cast<int32_t>(test::next_random(seed) % (candidates.size() + 1)) - 1);
      code_sets.push_back(codes);
    }
    for (const std::vector<int32_t>& codes : code_sets) {
      const std::string what = describe(c) + " codes " + ::testing::PrintToString(codes);
      GpuBlockMask mask = allocate_gpu_block_mask(patterns, static_cast<int>(codes.size()));
      poison(mask);
      build_block_mask_gpu(patterns, to_gpu(codes), mask);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
      const BlockMask want = build_block_mask(c.layout, slot_patterns(candidates, codes), c.block_q, c.block_k);
      expect_same(mask.to_host(), want, what);
    }
  }
}

// Masks change per step: rebuilding into the same buffers gives the new mask, on a stream.
TEST(MaskBuilderGpu, RebuildsInPlaceOnAStream) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout{8, 12, 20, 40, TextPosition::last};
  const std::vector<Pattern> candidates = {Pattern::spatial(0.2, true), Pattern::temporal(0.2), Pattern::tile(2)};
  const GpuPatterns patterns = make_gpu_patterns(layout, candidates, 64, 64);
  GpuBlockMask mask = allocate_gpu_block_mask(patterns, 8);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  for (const std::vector<int32_t>& codes : {std::vector<int32_t>{0, 1, 2, -1, 0, 1, 2, -1},
                                            std::vector<int32_t>{1, 1, 1, 1, 0, 0, 0, 0},
                                            std::vector<int32_t>{-1, -1, 2, 2, 2, 2, 2, -1}}) {
    Tensor gpu_codes = to_gpu(codes);
    build_block_mask_gpu(patterns, gpu_codes, mask, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    expect_same(mask.to_host(), build_block_mask(layout, slot_patterns(candidates, codes), 64, 64),
                ::testing::PrintToString(codes));
  }
  cudaStreamDestroy(stream);
}

TEST(MaskBuilderGpu, CapacityCoversTheWidestCode) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout{6, 10, 10, 17, TextPosition::first};
  const std::vector<Pattern> candidates = {Pattern::spatial(0.1), Pattern::temporal(0.3)};
  const GpuPatterns patterns = make_gpu_patterns(layout, candidates, 32, 32);
  for (int code = -1; code < 2; ++code) {
    const BlockMask want = build_block_mask(layout, code < 0 ? Pattern::dense() : candidates[code], 1, 32, 32);
    EXPECT_EQ(patterns.kept_tiles(code), want.kept_tiles()) << code;
  }
  EXPECT_EQ(allocate_gpu_block_mask(patterns, 5, false).key_blocks.numel(), 5 * patterns.kept_tiles(1));
  EXPECT_EQ(allocate_gpu_block_mask(patterns, 5, true).key_blocks.numel(), 5 * patterns.kept_tiles(-1));
}

}  // namespace
}  // namespace vdit
