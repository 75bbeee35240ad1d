// The attention policy on its own: plans from JSON (and their errors), and each policy kind against
// the attention library run by hand on random Q, K, V.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "models/attention_policy.h"

namespace vdit {
namespace {

const ExecContext kCpu{};

Tensor random_tensor(const Shape& shape, uint32_t seed) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

double max_difference(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  EXPECT_EQ(x.shape(), y.shape());
  double worst = 0.0;
  for (int64_t i = 0; i < x.numel(); ++i)
    worst = std::max(worst, static_cast<double>(std::abs(x.data<float>()[i] - y.data<float>()[i])));
  return worst;
}

std::string error_of(const std::string& json) {
  try {
    parse_layer_plan(json, "plan.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(AttentionPlan, ParsesLayersAndDefault) {
  const LayerPlan plan = parse_layer_plan(R"({"layers": {"0": "dense", "2": "tile:2", "3": "temporal:0.25"},
                                              "default": "spatial:0.5"})",
                                          "plan.json");
  EXPECT_EQ(plan.at(0), Pattern::dense());
  EXPECT_EQ(plan.at(2), Pattern::tile(2));
  EXPECT_EQ(plan.at(3), Pattern::temporal(0.25));
  EXPECT_EQ(plan.at(1), Pattern::spatial(0.5));
  EXPECT_EQ(parse_layer_plan(R"({"layers": {}})", "p").at(7), Pattern::dense());
}

TEST(AttentionPlan, ErrorsNameTheFileAndTheBadEntry) {
  EXPECT_NE(error_of("{").find("plan.json"), std::string::npos);
  EXPECT_NE(error_of(R"({"layer": {}})").find("layers"), std::string::npos);
  const std::string bad_key = error_of(R"({"layers": {"one": "dense"}})");
  EXPECT_NE(bad_key.find("\"one\""), std::string::npos) << bad_key;
  const std::string bad_pattern = error_of(R"({"layers": {"4": "tiles:2"}})");
  EXPECT_NE(bad_pattern.find("layer 4"), std::string::npos) << bad_pattern;
  EXPECT_NE(bad_pattern.find("tiles:2"), std::string::npos) << bad_pattern;
}

TEST(AttentionPlan, LoadsFromAFile) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("vdit_plan_" + std::to_string(getpid()) + ".json");
  std::ofstream(path) << R"({"layers": {"1": "tile:0"}})";
  EXPECT_EQ(load_layer_plan(path.string()).at(1), Pattern::tile(0));
  std::filesystem::remove(path);
  EXPECT_THROW(load_layer_plan(path.string()), Error);
}

// 4 frames of 3 x 4 patches with 5 text tokens first: 53 tokens, blocks of 8.
const VideoLayout kLayout{4, 3, 4, 5, TextPosition::first};
constexpr int kBlock = 8;

TEST(AttentionPolicy, FixedPatternsMatchTheLibraryByHand) {
  const Tensor q = random_tensor({2, 53, 3, 8}, 1), k = random_tensor({2, 53, 3, 8}, 2), v = random_tensor({2, 53, 3, 8}, 3);
  const AttentionSite site{0, 1, 0, 1, kLayout};

  AttentionPolicy dense = AttentionPolicy::dense();
  EXPECT_EQ(max_difference(dense.attend(kCpu, q, k, v, site), attention_reference(q, k, v)), 0.0);

  const Pattern spatial = Pattern::spatial(0.4);
  AttentionPolicy fixed = AttentionPolicy::fixed(spatial, kBlock, kBlock);
  const BlockMask mask = build_block_mask(kLayout, spatial, 3, kBlock, kBlock);
  EXPECT_EQ(max_difference(fixed.attend(kCpu, q, k, v, site), attention_reference(q, k, v, {0.0f, &mask})), 0.0);
  EXPECT_DOUBLE_EQ(fixed.records().back().density, mask.density());

  const Pattern temporal = Pattern::temporal(0.4);
  AttentionPolicy permuted = AttentionPolicy::fixed(temporal, kBlock, kBlock);
  const BlockMask tmask = build_block_mask(kLayout, temporal, 3, kBlock, kBlock);
  const std::vector<uint8_t> all(3, 1);
  const Tensor expected = scatter_from_token_major(
      attention_reference(gather_to_token_major(q, kLayout, all), gather_to_token_major(k, kLayout, all),
                          gather_to_token_major(v, kLayout, all), {0.0f, &tmask}),
      kLayout, all);
  EXPECT_EQ(max_difference(permuted.attend(kCpu, q, k, v, site), expected), 0.0);
  EXPECT_LT(permuted.records().back().density, 1.0);
}

TEST(MaskCache, BuildsEachMaskOnceAndKeepsTheNewest) {
  MaskCache cache(2);
  const std::vector<Pattern> spatial(3, Pattern::spatial(0.4)), temporal(3, Pattern::temporal(0.4));
  const auto first = cache.get(kCpu, kLayout, spatial, kBlock, kBlock);
  EXPECT_EQ(cache.get(kCpu, kLayout, spatial, kBlock, kBlock), first);
  EXPECT_EQ(first->mask.key_blocks, build_block_mask(kLayout, spatial, kBlock, kBlock).key_blocks);
  EXPECT_DOUBLE_EQ(first->density, build_block_mask(kLayout, spatial, kBlock, kBlock).density());
  EXPECT_FALSE(first->any_permuted);
  const auto permuted = cache.get(kCpu, kLayout, temporal, kBlock, kBlock);
  EXPECT_NE(permuted, first);
  EXPECT_TRUE(permuted->any_permuted);
  EXPECT_NE(cache.get(kCpu, kLayout, spatial, kBlock, 2 * kBlock), first);  // other blocks: a third mask
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_NE(cache.get(kCpu, kLayout, spatial, kBlock, kBlock), first);  // the oldest was dropped
}

TEST(AttentionPolicy, ProfiledRunsDenseDuringWarmUpThenWhatItChose) {
  const Tensor q = random_tensor({2, 53, 3, 8}, 4), k = random_tensor({2, 53, 3, 8}, 5), v = random_tensor({2, 53, 3, 8}, 6);
  ProfiledOptions options;
  options.candidates = {Pattern::spatial(0.4), Pattern::temporal(0.4)};
  options.warmup_fraction = 0.3;  // 3 of 10 steps
  options.warmup_layers = 2;
  options.profile.block_q = options.profile.block_k = kBlock;
  options.profile.sample_rows = 16;
  AttentionPolicy policy = AttentionPolicy::profiled(options);

  const Tensor dense = attention_reference(q, k, v);
  EXPECT_EQ(max_difference(policy.attend(kCpu, q, k, v, {2, 10, 5, 6, kLayout}), dense), 0.0);  // warm-up step
  EXPECT_EQ(max_difference(policy.attend(kCpu, q, k, v, {3, 10, 1, 6, kLayout}), dense), 0.0);  // warm-up layer
  const Tensor sparse = policy.attend(kCpu, q, k, v, {3, 10, 2, 6, kLayout});
  ASSERT_EQ(policy.records().size(), 3u);
  const AttentionRecord& record = policy.records()[2];
  EXPECT_EQ(record.step, 3);
  EXPECT_EQ(record.layer, 2);
  ASSERT_EQ(record.heads.size(), 6u);  // per (batch item, head)
  EXPECT_LT(record.density, 1.0);

  // The same, by hand: profile_heads' choices, each batch item under its own heads' patterns.
  const ProfileResult chosen = profile_heads(q, k, v, kLayout, options.candidates, options.profile);
  const std::vector<Pattern> patterns = chosen.patterns(options.candidates);
  EXPECT_EQ(record.heads, patterns);
  for (int64_t b = 0; b < 2; ++b) {
    const std::vector<Pattern> item(patterns.begin() + b * 3, patterns.begin() + b * 3 + 3);
    std::vector<uint8_t> permute(3);
    for (int h = 0; h < 3; ++h) permute[h] = item[h].permuted();
    const BlockMask mask = build_block_mask(kLayout, item, kBlock, kBlock);
    auto slice = [&](const Tensor& t) { return gather_to_token_major(t.slice(0, b, b + 1), kLayout, permute); };
    const Tensor expected =
        scatter_from_token_major(attention_reference(slice(q), slice(k), slice(v), {0.0f, &mask}), kLayout, permute);
    EXPECT_EQ(max_difference(sparse.slice(0, b, b + 1), expected), 0.0) << "batch item " << b;
  }
}

// With one permuted candidate every (batch item, head) slot takes it: the per-item permuted path
// must give what the fixed pattern gives.
TEST(AttentionPolicy, ProfiledPermutedSlotsMatchTheFixedPattern) {
  const Tensor q = random_tensor({2, 53, 3, 8}, 8), k = random_tensor({2, 53, 3, 8}, 9), v = random_tensor({2, 53, 3, 8}, 10);
  ProfiledOptions options;
  options.candidates = {Pattern::temporal(0.4)};
  options.warmup_fraction = 0.0;
  options.warmup_layers = 0;
  options.profile.block_q = options.profile.block_k = kBlock;
  AttentionPolicy profiled = AttentionPolicy::profiled(options);
  AttentionPolicy fixed = AttentionPolicy::fixed(Pattern::temporal(0.4), kBlock, kBlock);
  const AttentionSite site{0, 1, 0, 1, kLayout};
  EXPECT_EQ(max_difference(profiled.attend(kCpu, q, k, v, site), fixed.attend(kCpu, q, k, v, site)), 0.0);
  EXPECT_DOUBLE_EQ(profiled.records()[0].density, fixed.records()[0].density);
}

TEST(AttentionPolicy, RefusesTensorsThatDoNotFitTheLayout) {
  const Tensor q = random_tensor({1, 50, 2, 8}, 7);
  AttentionPolicy dense = AttentionPolicy::dense();
  try {
    dense.attend(kCpu, q, q, q, {0, 1, 4, 8, kLayout});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 4"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("S = 53"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vdit
