// CogVideoX (diffusers' CogVideoXTransformer3DModel, the 5B configuration with rotary positions):
// text projection and patch embedding, joint attention over [text; video] with 3D RoPE on the video
// part, per-stream adaLN (CogVideoXLayerNormZero) around attention and FFN, and the modulated output
// head. Tensor names are diffusers'.
#pragma once

#include <memory>
#include <vector>

#include "io/checkpoint.h"
#include "models/config.h"
#include "models/layers.h"
#include "models/model.h"

namespace vdit {

struct CogVideoXConfig {
  int64_t heads = 30, head_dim = 64;
  int64_t in_channels = 16, out_channels = 16;
  bool flip_sin_to_cos = true;
  double freq_shift = 0.0;
  int64_t time_embed_dim = 512, text_embed_dim = 4096, layers = 30;
  bool attention_bias = true, patch_bias = true, norm_affine = true;
  int64_t sample_width = 90, sample_height = 60;  // latent size the rotary grid is fitted to
  int patch = 2, patch_t = 0;                     // patch_t 0: none (CogVideoX 1.0)
  float norm_eps = 1e-5f;

  int64_t dim() const { return heads * head_dim; }
  PatchSize patch_size() const { return {patch_t ? patch_t : 1, patch, patch}; }
  std::array<int, 3> rope_axis_dims() const;  // head-dim channels of the t, y and x rotary axes
  static CogVideoXConfig parse(const ModelConfig& config);
};

// The rotary positions diffusers' CogVideoX pipeline gives a grid of patches: for CogVideoX 1.0 the
// grid is fitted into sample_height x sample_width patches (resize and center crop) and positions are
// spread over the crop; with patch_size_t they are the patch indices.
std::array<std::vector<double>, 3> cogvideox_rope_positions(const CogVideoXConfig& config, PatchGrid grid);

class CogVideoXModel final : public VideoModel {
 public:
  static std::unique_ptr<CogVideoXModel> load(const Checkpoint& checkpoint, const ModelConfig& config,
                                              const ExecContext& ctx, DType dtype);

  std::string_view class_name() const override { return "CogVideoXTransformer3DModel"; }
  DType dtype() const override { return dtype_; }
  VideoAxes latent_axes() const override { return VideoAxes::bfchw; }
  Tensor forward(const ExecContext& ctx, const ModelInputs& inputs, AttentionPolicy& attention,
                 StepInfo step = {}) const override;
  const CogVideoXConfig& config() const { return config_; }

 private:
  // A LayerNorm modulated by linear(silu(time embedding)): CogVideoXLayerNormZero (shift, scale,
  // gate of the video stream, then of the text stream) or AdaLayerNorm (shift, scale).
  struct AdaNorm {
    LinearLayer linear;
    NormLayer norm;
  };
  struct Block {
    AdaNorm norm1, norm2;
    LinearLayer to_q, to_k, to_v, to_out;
    NormLayer norm_q, norm_k;  // per-head LayerNorm on Q and K
    LinearLayer ff_in, ff_out;
  };

  CogVideoXModel() = default;
  // One block, updating the text [B, L, dim] and video [B, N, dim] streams in place.
  // A block's feed-forward output over the joint [text; video] sequence and the modulation holding
  // its gates, not yet added to the streams: the next norm (the next block's first, or the final
  // one) adds it in the same pass.
  struct PendingResidual {
    Tensor y, mod;
  };
  // Applies `pending` first and leaves its own feed-forward output there.
  void block(const ExecContext& ctx, const Block& b, Tensor& text, Tensor& video, PendingResidual& pending,
             const Tensor& time, const RopeTable& rope, AttentionPolicy& attention, const AttentionSite& site) const;

  CogVideoXConfig config_;
  DType dtype_ = DType::f32;
  Tensor patch_weight_, patch_bias_;
  LinearLayer text_proj_, time_linear_1_, time_linear_2_;
  std::vector<Block> blocks_;
  NormLayer norm_final_;
  AdaNorm norm_out_;
  LinearLayer proj_out_;
};

}  // namespace vdit
