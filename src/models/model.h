// A video DiT transformer loaded from a diffusers checkpoint folder: the architecture named by
// config.json's _class_name, its weights bound by their checkpoint names.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "models/attention_policy.h"
#include "ops/ops.h"

namespace vdit {

struct ModelInputs {
  Tensor latents;    // the model's own diffusers layout: Wan [B, C, F, H, W], CogVideoX [B, F, C, H, W]
  Tensor timesteps;  // [B]
  Tensor text;       // text encoder states [B, L, text dim]
};

struct StepInfo {
  int step = 0;   // this denoising step
  int steps = 1;  // of how many
};

class VideoModel {
 public:
  virtual ~VideoModel() = default;
  virtual std::string_view class_name() const = 0;
  virtual VideoAxes latent_axes() const = 0;
  virtual DType dtype() const = 0;  // of its weights and activations
  // The transformer's output for `inputs` (the layout of the latents), its self-attention run by
  // `attention` at `step`.
  virtual Tensor forward(const ExecContext& ctx, const ModelInputs& inputs, AttentionPolicy& attention,
                         StepInfo step = {}) const = 0;
};

// The _class_name values load_model accepts.
const std::vector<std::string>& supported_architectures();

// Opens `path` (a diffusers transformer folder: config.json and safetensors, sharded or not) and
// builds the model config.json names, its weights (from f32, f16 or bf16 checkpoints) converted to
// `dtype` on the context's device: f32 on the CPU; bf16 (or f16, f32) on a GPU. Inputs of any float
// dtype and device are converted to the model's; its outputs are in its dtype, on its device.
std::unique_ptr<VideoModel> load_model(const std::string& path, const ExecContext& ctx, DType dtype = DType::f32);

}  // namespace vdit
