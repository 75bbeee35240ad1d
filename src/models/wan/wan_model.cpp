#include "models/wan/wan_model.h"

#include <algorithm>
#include <numeric>

namespace vdit {
namespace {

std::vector<double> positions(int64_t n) {
  std::vector<double> p(n);
  std::iota(p.begin(), p.end(), 0.0);
  return p;
}

// [B, N, heads * head_dim] -> [B, N, heads, head_dim]
Tensor split_heads(const Tensor& x, int64_t heads) {
  return x.contiguous().view({x.size(0), x.size(1), heads, x.size(2) / heads});
}

Tensor merge_heads(const Tensor& x) {
  return x.contiguous().view({x.size(0), x.size(1), x.size(2) * x.size(3)});
}

}  // namespace

std::array<int, 3> WanConfig::rope_axis_dims() const {
  const int spatial = static_cast<int>(2 * (head_dim / 6));
  return {static_cast<int>(head_dim) - 2 * spatial, spatial, spatial};
}

WanConfig WanConfig::parse(const ModelConfig& config) {
  config.require_absent("image_dim", "image conditioning (Wan I2V)");
  config.require_absent("added_kv_proj_dim", "added key/value projections (Wan I2V)");
  config.require_absent("pos_embed_seq_len", "a learned image position embedding");
  WanConfig c;
  const std::vector<int64_t> patch = config.integers("patch_size", {1, 2, 2});
  VDIT_CHECK(patch.size() == 3 && patch[0] > 0 && patch[1] > 0 && patch[2] > 0, ErrorCode::corrupt_file,
             "{}: \"patch_size\" must be three positive integers", config.source());
  c.patch = {static_cast<int>(patch[0]), static_cast<int>(patch[1]), static_cast<int>(patch[2])};
  c.heads = config.integer("num_attention_heads", 40);
  c.head_dim = config.integer("attention_head_dim", 128);
  c.in_channels = config.integer("in_channels", 16);
  c.out_channels = config.integer("out_channels", 16);
  if (c.out_channels == 0) c.out_channels = c.in_channels;
  c.text_dim = config.integer("text_dim", 4096);
  c.freq_dim = config.integer("freq_dim", 256);
  c.ffn_dim = config.integer("ffn_dim", 13824);
  c.layers = config.integer("num_layers", 40);
  c.cross_attn_norm = config.boolean("cross_attn_norm", true);
  c.eps = static_cast<float>(config.number("eps", 1e-6));
  c.rope_max_seq_len = config.integer("rope_max_seq_len", 1024);
  VDIT_CHECK(c.heads > 0 && c.head_dim > 0 && c.head_dim % 2 == 0 && c.layers >= 0, ErrorCode::corrupt_file,
             "{}: num_attention_heads {} and attention_head_dim {} (even) must be positive", config.source(), c.heads,
             c.head_dim);
  return c;
}

std::unique_ptr<WanModel> WanModel::load(const Checkpoint& checkpoint, const ModelConfig& config,
                                         const ExecContext& ctx, DType dtype) {
  std::unique_ptr<WanModel> m(new WanModel());
  m->config_ = WanConfig::parse(config);
  m->dtype_ = dtype;
  const WanConfig& c = m->config_;
  const int64_t dim = c.dim();
  WeightBinder w(checkpoint, "WanTransformer3DModel", ctx.device, dtype);
  w.ignore_unused("norm_added_q");  // diffusers ignores it on load too

  m->patch_weight_ = w.take("patch_embedding.weight", {dim, c.in_channels, c.patch.t, c.patch.h, c.patch.w});
  m->patch_bias_ = w.take("patch_embedding.bias", {dim});
  m->time_linear_1_ = LinearLayer::bind(w, "condition_embedder.time_embedder.linear_1", c.freq_dim, dim);
  m->time_linear_2_ = LinearLayer::bind(w, "condition_embedder.time_embedder.linear_2", dim, dim);
  m->time_proj_ = LinearLayer::bind(w, "condition_embedder.time_proj", dim, 6 * dim);
  m->text_linear_1_ = LinearLayer::bind(w, "condition_embedder.text_embedder.linear_1", c.text_dim, dim);
  m->text_linear_2_ = LinearLayer::bind(w, "condition_embedder.text_embedder.linear_2", dim, dim);
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = fmt::format("blocks.{}.", i);
    auto bind_attention = [&](const std::string& name) {
      return Attention{LinearLayer::bind(w, p + name + ".to_q", dim, dim),
                       LinearLayer::bind(w, p + name + ".to_k", dim, dim),
                       LinearLayer::bind(w, p + name + ".to_v", dim, dim),
                       LinearLayer::bind(w, p + name + ".to_out.0", dim, dim),
                       NormLayer::bind(w, p + name + ".norm_q", dim, false),
                       NormLayer::bind(w, p + name + ".norm_k", dim, false)};
    };
    Block b;
    b.attn1 = bind_attention("attn1");
    b.attn2 = bind_attention("attn2");
    if (c.cross_attn_norm) b.norm2 = NormLayer::bind(w, p + "norm2", dim);
    b.ffn_in = LinearLayer::bind(w, p + "ffn.net.0.proj", dim, c.ffn_dim);
    b.ffn_out = LinearLayer::bind(w, p + "ffn.net.2", c.ffn_dim, dim);
    b.scale_shift_table = w.take(p + "scale_shift_table", {1, 6, dim});
    m->blocks_.push_back(std::move(b));
  }
  m->scale_shift_table_ = w.take("scale_shift_table", {1, 2, dim});
  m->proj_out_ = LinearLayer::bind(w, "proj_out", dim, c.out_channels * c.patch.volume());
  w.finish();
  return m;
}

Tensor WanModel::forward(const ExecContext& ctx, const ModelInputs& inputs, AttentionPolicy& attention,
                         StepInfo step) const {
  const WanConfig& c = config_;
  VDIT_CHECK(inputs.latents.defined() && inputs.latents.rank() == 5 && inputs.latents.size(1) == c.in_channels,
             ErrorCode::invalid_argument, "WanTransformer3DModel: latents are {}, expected [B, {}, F, H, W]",
             inputs.latents.defined() ? inputs.latents.shape().to_string() : "undefined", c.in_channels);
  const Tensor latents = model_input(ctx, inputs.latents, dtype_);
  const int64_t batch = latents.size(0), dim = c.dim();
  VDIT_CHECK(inputs.timesteps.defined() && inputs.timesteps.shape() == Shape{batch}, ErrorCode::invalid_argument,
             "WanTransformer3DModel: timesteps are {}, expected [{}]",
             inputs.timesteps.defined() ? inputs.timesteps.shape().to_string() : "undefined", batch);
  VDIT_CHECK(inputs.text.defined() && inputs.text.rank() == 3 && inputs.text.size(0) == batch &&
                 inputs.text.size(2) == c.text_dim,
             ErrorCode::invalid_argument, "WanTransformer3DModel: text states are {}, expected [{}, L, {}]",
             inputs.text.defined() ? inputs.text.shape().to_string() : "undefined", batch, c.text_dim);
  const PatchGrid grid = patch_grid(latents, VideoAxes::bcfhw, c.patch);
  VDIT_CHECK(std::max({grid.frames, grid.height, grid.width}) <= c.rope_max_seq_len, ErrorCode::invalid_argument,
             "WanTransformer3DModel: a {}x{}x{} patch grid exceeds rope_max_seq_len {}", grid.frames, grid.height,
             grid.width, c.rope_max_seq_len);
  const RopeTable rope = rope_table_3d(ctx, c.rope_axis_dims(),
                                       {positions(grid.frames), positions(grid.height), positions(grid.width)});

  Tensor x = patch_embed(ctx, latents, VideoAxes::bcfhw, c.patch, patch_weight_, patch_bias_);
  const Tensor t = timestep_embedding(ctx, model_input(ctx, inputs.timesteps, DType::f32), static_cast<int>(c.freq_dim),
                                      {true, 0.0});
  const Tensor temb = time_linear_2_(ctx, time_linear_1_(ctx, cast(ctx, t, dtype_), Activation::silu));
  const Tensor modulation = time_proj_(ctx, silu(ctx, temb)).view({batch, 6, dim});
  const Tensor text =
      text_linear_2_(ctx, text_linear_1_(ctx, model_input(ctx, inputs.text, dtype_), Activation::gelu_tanh));

  AttentionSite site{step.step, step.steps, 0, static_cast<int>(c.layers),
                     VideoLayout{grid.frames, grid.height, grid.width, 0, TextPosition::none}};
  PendingResidual pending;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    site.layer = static_cast<int>(i);
    block(ctx, blocks_[i], x, pending, text, modulation, rope, attention, site);
  }

  const Tensor table = scale_shift_table_.select(0, 0);  // [2, dim]: shift, scale
  const Tensor shift = add(ctx, temb, table.select(0, 0)), scale = add(ctx, temb, table.select(0, 1));
  const Tensor normed = pending.y.defined()
                            ? gated_residual_add_layer_norm(ctx, x, pending.y, pending.gate, {}, {}, c.eps, shift, scale)
                            : layer_norm_modulate(ctx, x, {}, {}, c.eps, shift, scale);
  pending = {};
  x = proj_out_(ctx, normed);
  return unpatchify(ctx, x, grid, c.patch, PatchFeatures::channel_minor, VideoAxes::bcfhw);
}

void WanModel::block(const ExecContext& ctx, const Block& b, Tensor& x, PendingResidual& pending,
                     const Tensor& text, const Tensor& modulation, const RopeTable& rope, AttentionPolicy& attention,
                     const AttentionSite& site) const {
  const WanConfig& c = config_;
  const Tensor mod = add(ctx, modulation, b.scale_shift_table);  // [B, 6, dim]
  auto chunk = [&](int i) { return mod.select(1, i); };            // shift, scale, gate; then for the FFN

  // Each stage in its own scope, so that its activations are freed before the next one (the
  // feed-forward's hidden layer is the forward's peak).
  // Self-attention; its gated residual add runs fused with the cross-attention's norm.
  Tensor n = x;
  {
    // The previous block's feed-forward residual add runs fused with this norm.
    const Tensor h = pending.y.defined()
                         ? gated_residual_add_layer_norm(ctx, x, pending.y, pending.gate, {}, {}, c.eps, chunk(0), chunk(1))
                         : layer_norm_modulate(ctx, x, {}, {}, c.eps, chunk(0), chunk(1));
    pending = {};
    const Attention& a1 = b.attn1;
    const Tensor q = rms_norm_rope(ctx, a1.to_q(ctx, h), a1.norm_q.weight, c.eps, c.heads, rope);
    const Tensor k = rms_norm_rope(ctx, a1.to_k(ctx, h), a1.norm_k.weight, c.eps, c.heads, rope);
    const Tensor v = split_heads(a1.to_v(ctx, h), c.heads);
    const Tensor attn_out = a1.to_out(ctx, merge_heads(attention.attend(ctx, q, k, v, site)));
    if (c.cross_attn_norm) {
      n = gated_residual_add_layer_norm(ctx, x, attn_out, chunk(2), b.norm2.weight, b.norm2.bias, c.eps);
    } else {
      gated_residual_add(ctx, x, attn_out, chunk(2));
    }
  }

  // Cross-attention to the text; its residual add runs fused with the feed-forward's norm.
  Tensor cross_out;
  {
    const Attention& a2 = b.attn2;
    const Tensor cq = split_heads(rms_norm(ctx, a2.to_q(ctx, n), a2.norm_q.weight, c.eps), c.heads);
    n = Tensor();
    const Tensor ck = split_heads(rms_norm(ctx, a2.to_k(ctx, text), a2.norm_k.weight, c.eps), c.heads);
    const Tensor cv = split_heads(a2.to_v(ctx, text), c.heads);
    cross_out = a2.to_out(ctx, merge_heads(cross_attention(ctx, cq, ck, cv)));
  }

  // Feed-forward; its gated residual add is left to the next norm.
  const Tensor f = gated_residual_add_layer_norm(ctx, x, cross_out, {}, {}, {}, c.eps, chunk(3), chunk(4));
  cross_out = Tensor();
  pending = {b.ffn_out(ctx, b.ffn_in(ctx, f, Activation::gelu_tanh)), chunk(5)};
}

}  // namespace vdit
