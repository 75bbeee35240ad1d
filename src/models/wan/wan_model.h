// Wan2.1 (diffusers' WanTransformer3DModel, text-to-video): patch embedding, time and text
// embedders, blocks of adaLN self-attention (RMSNorm across heads on Q and K, 3D RoPE) +
// cross-attention to the text + FFN, and the modulated output head. Tensor names are diffusers'.
#pragma once

#include <memory>
#include <vector>

#include "io/checkpoint.h"
#include "models/config.h"
#include "models/layers.h"
#include "models/model.h"

namespace vdit {

struct WanConfig {
  PatchSize patch{1, 2, 2};
  int64_t heads = 40, head_dim = 128;
  int64_t in_channels = 16, out_channels = 16;
  int64_t text_dim = 4096, freq_dim = 256, ffn_dim = 13824, layers = 40;
  bool cross_attn_norm = true;
  float eps = 1e-6f;
  int64_t rope_max_seq_len = 1024;

  int64_t dim() const { return heads * head_dim; }
  // Head-dim channels of the t, y and x rotary axes.
  std::array<int, 3> rope_axis_dims() const;
  static WanConfig parse(const ModelConfig& config);
};

class WanModel final : public VideoModel {
 public:
  static std::unique_ptr<WanModel> load(const Checkpoint& checkpoint, const ModelConfig& config,
                                        const ExecContext& ctx, DType dtype);

  std::string_view class_name() const override { return "WanTransformer3DModel"; }
  DType dtype() const override { return dtype_; }
  VideoAxes latent_axes() const override { return VideoAxes::bcfhw; }
  Tensor forward(const ExecContext& ctx, const ModelInputs& inputs, AttentionPolicy& attention,
                 StepInfo step = {}) const override;
  const WanConfig& config() const { return config_; }

 private:
  struct Attention {
    LinearLayer to_q, to_k, to_v, to_out;
    NormLayer norm_q, norm_k;
  };
  struct Block {
    Attention attn1, attn2;  // self-attention, cross-attention to the text
    NormLayer norm2;         // the cross-attention input norm (affine when cross_attn_norm)
    LinearLayer ffn_in, ffn_out;
    Tensor scale_shift_table;  // [1, 6, dim]
  };

  // A block's last update of the residual stream, x += gate * y, not yet applied: the next norm
  // (the next block's first, or the output head's) applies it in the same pass.
  struct PendingResidual {
    Tensor y, gate;
  };

  WanModel() = default;
  // One block, updating the residual stream x [B, N, dim] in place; applies `pending` first and
  // leaves its own feed-forward output there.
  void block(const ExecContext& ctx, const Block& b, Tensor& x, PendingResidual& pending, const Tensor& text,
             const Tensor& modulation, const RopeTable& rope, AttentionPolicy& attention,
             const AttentionSite& site) const;

  WanConfig config_;
  DType dtype_ = DType::f32;
  Tensor patch_weight_, patch_bias_;
  LinearLayer time_linear_1_, time_linear_2_, time_proj_, text_linear_1_, text_linear_2_;
  std::vector<Block> blocks_;
  Tensor scale_shift_table_;  // [1, 2, dim]
  LinearLayer proj_out_;
};

}  // namespace vdit
