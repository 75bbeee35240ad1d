// Wan2.1 against diffusers: the committed tiny checkpoint and inputs (tests/data/models/wan, made by
// scripts/make_reference_fixtures.py) must give diffusers' float32 output; and the attention
// policies run through the model and record what they did.
#include <gtest/gtest.h>

#include <chrono>
#include <map>

#include "io/safetensors.h"
#include "model_fixtures.h"
#include "models/model.h"
#include "models/wan/wan_model.h"
#include "ops/op_timeline.h"

namespace vdit {
namespace {

using test::reference_inputs;
using test::relative_l2;

const std::string kModel = std::string(VDIT_TEST_DATA) + "/models/wan/transformer";
const std::string kReference = std::string(VDIT_TEST_DATA) + "/models/wan/reference.safetensors";
const ExecContext kCpu{};

struct Reference {
  ModelInputs inputs;
  Tensor expected;
};

Reference load_reference() {
  const SafetensorsFile file = SafetensorsFile::open(kReference);
  return {reference_inputs(file), file.tensor("expected")};
}

TEST(WanModel, ConfigFromCheckpoint) {
  auto model = load_model(kModel, kCpu);
  ASSERT_EQ(model->class_name(), "WanTransformer3DModel");
  const WanConfig& c = dynamic_cast<const WanModel&>(*model).config();
  EXPECT_EQ(c.dim(), 32);
  EXPECT_EQ(c.layers, 2);
  EXPECT_EQ(c.text_dim, 24);
  EXPECT_EQ(c.rope_axis_dims(), (std::array<int, 3>{8, 4, 4}));  // head dim 16: t gets the rest
  // The real 1.3B head dim 128 splits 44 + 42 + 42.
  WanConfig big;
  EXPECT_EQ(big.rope_axis_dims(), (std::array<int, 3>{44, 42, 42}));
}

TEST(WanModel, MatchesDiffusersInFloat32) {
  const Reference ref = load_reference();
  auto model = load_model(kModel, kCpu);
  AttentionPolicy dense = AttentionPolicy::dense();
  const Tensor out = model->forward(kCpu, ref.inputs, dense);
  ASSERT_EQ(out.shape(), ref.expected.shape());
  const double error = relative_l2(out, ref.expected);
  std::printf("Wan tiny vs diffusers float32: relative L2 error %.3e\n", error);
  EXPECT_LT(error, 1e-4);
  ASSERT_EQ(dense.records().size(), 2u);  // one per layer
  EXPECT_EQ(dense.records()[1].layer, 1);
  EXPECT_EQ(dense.records()[1].heads.size(), 4u);  // 2 batch items x 2 heads
  EXPECT_EQ(dense.records()[1].density, 1.0);
}

// The op timeline of the real forward: every op of the architecture marked once per call (counted
// from WanTransformer3DModel: per block 10 linears, 2 RMSNorm + RoPE, 2 RMSNorm, one self- and one
// cross-attention; 5 embedding linears and the output projection), and the output unchanged.
TEST(WanModel, OpTimelineCountsEveryOp) {
  const Reference ref = load_reference();
  auto model = load_model(kModel, kCpu);
  AttentionPolicy dense = AttentionPolicy::dense();
  const Tensor plain = model->forward(kCpu, ref.inputs, dense);

  OpTimeline timeline(kCpu);
  ExecContext timed = kCpu;
  timed.timeline = &timeline;
  const auto start = std::chrono::steady_clock::now();
  timeline.begin();
  const Tensor out = model->forward(timed, ref.inputs, dense);
  const std::vector<OpTime> times = timeline.finish();
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(relative_l2(out, plain), 0.0);

  const int layers = 2;
  std::map<std::string, int> calls;
  int linears = 0;
  double sum_ms = 0.0;
  for (const OpTime& t : times) {
    calls[t.category] = t.calls;
    if (t.category.rfind("linear ", 0) == 0) linears += t.calls;
    EXPECT_GE(t.ms, 0.0) << t.category;
    sum_ms += t.ms;
  }
  EXPECT_EQ(linears, 10 * layers + 5 + 1);
  EXPECT_EQ(calls["attention"], layers);
  EXPECT_EQ(calls["cross_attention"], layers);
  EXPECT_EQ(calls["rms_norm_rope"], 2 * layers);
  EXPECT_EQ(calls["rms_norm"], 2 * layers);
  EXPECT_EQ(calls["patch_embed"], 1);
  EXPECT_EQ(calls["unpatchify"], 1);
  EXPECT_EQ(calls["linear 72x32->64 gelu_tanh"], layers);  // the feed-forward input: 2 x 36 tokens, dim 32, ffn 64
  EXPECT_LE(sum_ms, wall_ms);
  EXPECT_GT(sum_ms, 0.5 * wall_ms);

  timeline.begin();  // begin() starts over
  EXPECT_TRUE(timeline.finish().empty());
}

TEST(WanModel, EachBatchItemIsIndependent) {
  const Reference ref = load_reference();
  auto model = load_model(kModel, kCpu);
  AttentionPolicy dense = AttentionPolicy::dense();
  const ModelInputs second{ref.inputs.latents.slice(0, 1, 2).contiguous(), ref.inputs.timesteps.slice(0, 1, 2).contiguous(),
                           ref.inputs.text.slice(0, 1, 2).contiguous()};
  const Tensor out = model->forward(kCpu, second, dense);
  EXPECT_LT(relative_l2(out, ref.expected.slice(0, 1, 2)), 1e-4);
}

TEST(WanModel, SparsePoliciesRecordTheirDensity) {
  const Reference ref = load_reference();
  auto model = load_model(kModel, kCpu);
  // The tiny latent has a 3 x 3 x 4 patch grid: 36 tokens, in blocks of 4.
  AttentionPolicy tile = AttentionPolicy::fixed(Pattern::tile(0), 4, 4);
  const Tensor sparse = model->forward(kCpu, ref.inputs, tile, {3, 10});
  ASSERT_EQ(tile.records().size(), 2u);
  for (const AttentionRecord& r : tile.records()) {
    EXPECT_EQ(r.step, 3);
    EXPECT_NEAR(r.density, 1.0 / 3.0, 1e-12);  // frame-diagonal tiles of 3 frames
    EXPECT_EQ(r.heads[0], Pattern::tile(0));
  }
  // Sparse attention changes the output, but not beyond recognition.
  const double change = relative_l2(sparse, ref.expected);
  EXPECT_GT(change, 1e-4);
  EXPECT_LT(change, 1.0);

  LayerPlan plan = parse_layer_plan(R"({"layers": {"1": "temporal:0.5"}})", "test plan");
  AttentionPolicy planned = AttentionPolicy::plan(plan, 4, 4);
  model->forward(kCpu, ref.inputs, planned);
  ASSERT_EQ(planned.records().size(), 2u);
  EXPECT_EQ(planned.records()[0].density, 1.0);
  EXPECT_EQ(planned.records()[1].heads[0], Pattern::temporal(0.5));
  EXPECT_LT(planned.records()[1].density, 1.0);

  ProfiledOptions options;
  options.warmup_fraction = 0.5;
  options.warmup_layers = 1;
  options.profile.block_q = options.profile.block_k = 4;
  options.profile.sample_rows = 8;
  AttentionPolicy profiled = AttentionPolicy::profiled(options);
  for (int step = 0; step < 2; ++step) model->forward(kCpu, ref.inputs, profiled, {step, 2});
  ASSERT_EQ(profiled.records().size(), 4u);
  EXPECT_EQ(profiled.records()[0].density, 1.0);  // warm-up step
  EXPECT_EQ(profiled.records()[1].density, 1.0);
  EXPECT_EQ(profiled.records()[2].density, 1.0);  // warm-up layer of step 1
  const AttentionRecord& chosen = profiled.records()[3];
  EXPECT_EQ(chosen.step, 1);
  EXPECT_EQ(chosen.layer, 1);
  ASSERT_EQ(chosen.heads.size(), 4u);
  for (const Pattern& p : chosen.heads)
    EXPECT_TRUE(p == options.candidates[0] || p == options.candidates[1]) << p.to_string();
  EXPECT_LT(chosen.density, 1.0);
}

TEST(WanModel, RejectsLatentsOfTheWrongShape) {
  const Reference ref = load_reference();
  auto model = load_model(kModel, kCpu);
  AttentionPolicy dense = AttentionPolicy::dense();
  ModelInputs bad = ref.inputs;
  bad.text = ref.inputs.text.slice(2, 0, 20).contiguous();
  try {
    model->forward(kCpu, bad, dense);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 5, 20]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vdit
