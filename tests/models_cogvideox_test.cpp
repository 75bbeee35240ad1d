// CogVideoX against diffusers: the committed tiny checkpoints and inputs (tests/data/models/cogvideox
// and cogvideox15, made by scripts/make_reference_fixtures.py, rotary positions from the pipeline's
// own function) must give diffusers' float32 output.
#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "model_fixtures.h"
#include "models/cogvideox/cogvideox_model.h"
#include "models/model.h"

namespace vdit {
namespace {

using test::reference_inputs;
using test::relative_l2;

const std::string kModel = std::string(VDIT_TEST_DATA) + "/models/cogvideox/transformer";
const std::string kReference = std::string(VDIT_TEST_DATA) + "/models/cogvideox/reference.safetensors";
const ExecContext kCpu{};

TEST(CogVideoXModel, ConfigFromCheckpoint) {
  auto model = load_model(kModel, kCpu);
  ASSERT_EQ(model->class_name(), "CogVideoXTransformer3DModel");
  EXPECT_EQ(model->latent_axes(), VideoAxes::bfchw);
  const CogVideoXConfig& c = dynamic_cast<const CogVideoXModel&>(*model).config();
  EXPECT_EQ(c.dim(), 32);
  EXPECT_EQ(c.time_embed_dim, 24);
  EXPECT_EQ(c.rope_axis_dims(), (std::array<int, 3>{4, 6, 6}));
  CogVideoXConfig five_b;  // head dim 64
  five_b.head_dim = 64;
  EXPECT_EQ(five_b.rope_axis_dims(), (std::array<int, 3>{16, 24, 24}));
}

// The pipeline fits the patch grid into the config's sample size: a 3 x 4 grid into 4 x 6 resizes to
// 4 x 5 (rounded half to even) at the top-left, and positions spread over it.
TEST(CogVideoXModel, RotaryPositionsFollowThePipeline) {
  CogVideoXConfig c;
  c.sample_height = 8;
  c.sample_width = 12;
  const auto pos = cogvideox_rope_positions(c, {3, 3, 4});
  const std::vector<double> frames = {0, 1, 2}, rows = {0, 4.0 / 3.0, 8.0 / 3.0}, cols = {0, 1.25, 2.5, 3.75};
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(pos[0][i], frames[i], 1e-12);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(pos[1][i], rows[i], 1e-12);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(pos[2][i], cols[i], 1e-12);
  // CogVideoX-5B at 720x480: a 30 x 45 grid is the base size, positions are the patch indices.
  CogVideoXConfig five_b;
  const auto full = cogvideox_rope_positions(five_b, {13, 30, 45});
  EXPECT_NEAR(full[1][29], 29.0, 1e-12);
  EXPECT_NEAR(full[2][44], 44.0, 1e-12);
  EXPECT_NEAR(full[0][12], 12.0, 1e-12);
}

TEST(CogVideoXModel, MatchesDiffusersInFloat32) {
  const SafetensorsFile file = SafetensorsFile::open(kReference);
  const ModelInputs inputs = reference_inputs(file);
  const Tensor expected = file.tensor("expected");
  auto model = load_model(kModel, kCpu);
  AttentionPolicy dense = AttentionPolicy::dense();
  const Tensor out = model->forward(kCpu, inputs, dense);
  ASSERT_EQ(out.shape(), expected.shape());
  const double error = relative_l2(out, expected);
  std::printf("CogVideoX tiny vs diffusers float32: relative L2 error %.3e\n", error);
  EXPECT_LT(error, 1e-4);
  ASSERT_EQ(dense.records().size(), 2u);
}

// CogVideoX 1.5's shape: patch_size_t 2 (a Linear over (c, t, y, x) patches, no patch bias) and
// rotary positions that are the patch indices.
TEST(CogVideoXModel, TemporalPatchesMatchDiffusersInFloat32) {
  const std::string dir = std::string(VDIT_TEST_DATA) + "/models/cogvideox15";
  const SafetensorsFile file = SafetensorsFile::open(dir + "/reference.safetensors");
  const ModelInputs inputs = reference_inputs(file);
  auto model = load_model(dir + "/transformer", kCpu);
  const CogVideoXConfig& c = dynamic_cast<const CogVideoXModel&>(*model).config();
  EXPECT_EQ(c.patch_t, 2);
  EXPECT_FALSE(c.patch_bias);
  AttentionPolicy dense = AttentionPolicy::dense();
  const double error = relative_l2(model->forward(kCpu, inputs, dense), file.tensor("expected"));
  std::printf("CogVideoX 1.5-shaped tiny vs diffusers float32: relative L2 error %.3e\n", error);
  EXPECT_LT(error, 1e-4);
}

TEST(CogVideoXModel, SparsePatternsKeepTheTextRowsAndColumns) {
  const SafetensorsFile file = SafetensorsFile::open(kReference);
  const ModelInputs inputs = reference_inputs(file);
  auto model = load_model(kModel, kCpu);
  // 7 text tokens first, then a 3 x 3 x 4 grid: 43 tokens in blocks of 4.
  AttentionPolicy tile = AttentionPolicy::fixed(Pattern::tile(0), 4, 4);
  const Tensor out = model->forward(kCpu, inputs, tile);
  ASSERT_EQ(tile.records().size(), 2u);
  const double density = tile.records()[0].density;
  EXPECT_LT(density, 1.0);
  EXPECT_GT(density, 1.0 / 3.0);  // text rows and columns on top of the frame diagonal
  EXPECT_LT(relative_l2(out, file.tensor("expected")), 1.0);
}

}  // namespace
}  // namespace vdit
