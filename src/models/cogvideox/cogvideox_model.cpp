#include "models/cogvideox/cogvideox_model.h"

#include <cmath>

namespace vdit {
namespace {

constexpr float kQkNormEps = 1e-6f;  // diffusers builds CogVideoX's Q/K LayerNorms with eps 1e-6

// torch.linspace(start, end, n) in double.
std::vector<double> linspace(double start, double end, int64_t n) {
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = n == 1 ? start : start + (end - start) * static_cast<double>(i) / (n - 1);
  return out;
}

Tensor split_heads(const Tensor& x, int64_t heads) {
  return x.contiguous().view({x.size(0), x.size(1), heads, x.size(2) / heads});
}

Tensor merge_heads(const Tensor& x) {
  return x.contiguous().view({x.size(0), x.size(1), x.size(2) * x.size(3)});
}

}  // namespace

std::array<int, 3> CogVideoXConfig::rope_axis_dims() const {
  const int d = static_cast<int>(head_dim);
  return {d / 4, d / 8 * 3, d / 8 * 3};
}

CogVideoXConfig CogVideoXConfig::parse(const ModelConfig& config) {
  VDIT_CHECK(config.boolean("use_rotary_positional_embeddings", false), ErrorCode::unsupported,
             "{}: \"use_rotary_positional_embeddings\" is false: sinusoidal position embeddings (CogVideoX-2B) "
             "are not supported",
             config.source());
  VDIT_CHECK(!config.boolean("use_learned_positional_embeddings", false), ErrorCode::unsupported,
             "{}: \"use_learned_positional_embeddings\" is true: learned position embeddings are not supported",
             config.source());
  config.require_absent("ofs_embed_dim", "the ofs embedding (CogVideoX 1.5 I2V)");
  VDIT_CHECK(config.string("activation_fn", "gelu-approximate") == "gelu-approximate" &&
                 config.string("timestep_activation_fn", "silu") == "silu",
             ErrorCode::unsupported, "{}: only activation_fn \"gelu-approximate\" and timestep_activation_fn "
             "\"silu\" are supported", config.source());
  CogVideoXConfig c;
  c.heads = config.integer("num_attention_heads", 30);
  c.head_dim = config.integer("attention_head_dim", 64);
  c.in_channels = config.integer("in_channels", 16);
  c.out_channels = config.integer("out_channels", 16);
  c.flip_sin_to_cos = config.boolean("flip_sin_to_cos", true);
  c.freq_shift = config.number("freq_shift", 0.0);
  c.time_embed_dim = config.integer("time_embed_dim", 512);
  c.text_embed_dim = config.integer("text_embed_dim", 4096);
  c.layers = config.integer("num_layers", 30);
  c.attention_bias = config.boolean("attention_bias", true);
  c.patch_bias = config.boolean("patch_bias", true);
  c.norm_affine = config.boolean("norm_elementwise_affine", true);
  c.sample_width = config.integer("sample_width", 90);
  c.sample_height = config.integer("sample_height", 60);
  c.patch = static_cast<int>(config.integer("patch_size", 2));
  c.patch_t = static_cast<int>(config.integer("patch_size_t", 0));
  c.norm_eps = static_cast<float>(config.number("norm_eps", 1e-5));
  const std::array<int, 3> axes = c.rope_axis_dims();
  VDIT_CHECK(c.heads > 0 && c.patch > 0 && c.patch_t >= 0 && axes[0] % 2 == 0 && axes[1] % 2 == 0 &&
                 axes[0] + axes[1] + axes[2] == c.head_dim,
             ErrorCode::unsupported,
             "{}: attention_head_dim {} does not split into even rotary axes (D/4 + 2 * 3D/8), or a size is not "
             "positive", config.source(), c.head_dim);
  return c;
}

std::array<std::vector<double>, 3> cogvideox_rope_positions(const CogVideoXConfig& c, PatchGrid grid) {
  if (c.patch_t) return {linspace(0, grid.frames - 1, grid.frames), linspace(0, grid.height - 1, grid.height),
                         linspace(0, grid.width - 1, grid.width)};
  // get_resize_crop_region_for_grid: fit the grid's aspect into the base size, then center it.
  const double h = static_cast<double>(grid.height), w = static_cast<double>(grid.width);
  const double base_w = static_cast<double>(c.sample_width / c.patch), base_h = static_cast<double>(c.sample_height / c.patch);
  double resize_h = base_h, resize_w = base_w;
  if (h / w > base_h / base_w) {
    resize_w = std::nearbyint(base_h / h * w);  // Python's round: halves to even
  } else {
    resize_h = std::nearbyint(base_w / w * h);
  }
  const double top = std::nearbyint((base_h - resize_h) / 2.0), left = std::nearbyint((base_w - resize_w) / 2.0);
  const double bottom = top + resize_h, right = left + resize_w;
  const double t = static_cast<double>(grid.frames);
  return {linspace(0, t * (t - 1) / t, grid.frames), linspace(top, bottom * (h - 1) / h, grid.height),
          linspace(left, right * (w - 1) / w, grid.width)};
}

std::unique_ptr<CogVideoXModel> CogVideoXModel::load(const Checkpoint& checkpoint, const ModelConfig& config,
                                                     const ExecContext& ctx, DType dtype) {
  std::unique_ptr<CogVideoXModel> m(new CogVideoXModel());
  m->config_ = CogVideoXConfig::parse(config);
  m->dtype_ = dtype;
  const CogVideoXConfig& c = m->config_;
  const int64_t dim = c.dim(), te = c.time_embed_dim, ff = 4 * dim;
  const PatchSize patch = c.patch_size();
  WeightBinder w(checkpoint, "CogVideoXTransformer3DModel", ctx.device, dtype);
  auto bind_norm = [&](const std::string& prefix) {
    return c.norm_affine ? NormLayer::bind(w, prefix, dim) : NormLayer();
  };

  if (c.patch_t) {  // nn.Linear over flattened (c, t, y, x) patches, always with bias
    m->patch_weight_ = w.take("patch_embed.proj.weight", {dim, c.in_channels * patch.volume()});
    m->patch_bias_ = w.take("patch_embed.proj.bias", {dim});
  } else {  // nn.Conv2d per frame
    m->patch_weight_ = w.take("patch_embed.proj.weight", {dim, c.in_channels, c.patch, c.patch});
    if (c.patch_bias) m->patch_bias_ = w.take("patch_embed.proj.bias", {dim});
  }
  m->text_proj_ = LinearLayer::bind(w, "patch_embed.text_proj", c.text_embed_dim, dim);
  m->time_linear_1_ = LinearLayer::bind(w, "time_embedding.linear_1", dim, te);
  m->time_linear_2_ = LinearLayer::bind(w, "time_embedding.linear_2", te, te);
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = fmt::format("transformer_blocks.{}.", i);
    Block b;
    b.norm1 = {LinearLayer::bind(w, p + "norm1.linear", te, 6 * dim), bind_norm(p + "norm1.norm")};
    b.to_q = LinearLayer::bind(w, p + "attn1.to_q", dim, dim, c.attention_bias);
    b.to_k = LinearLayer::bind(w, p + "attn1.to_k", dim, dim, c.attention_bias);
    b.to_v = LinearLayer::bind(w, p + "attn1.to_v", dim, dim, c.attention_bias);
    b.norm_q = NormLayer::bind(w, p + "attn1.norm_q", c.head_dim);
    b.norm_k = NormLayer::bind(w, p + "attn1.norm_k", c.head_dim);
    b.to_out = LinearLayer::bind(w, p + "attn1.to_out.0", dim, dim);
    b.norm2 = {LinearLayer::bind(w, p + "norm2.linear", te, 6 * dim), bind_norm(p + "norm2.norm")};
    b.ff_in = LinearLayer::bind(w, p + "ff.net.0.proj", dim, ff);
    b.ff_out = LinearLayer::bind(w, p + "ff.net.2", ff, dim);
    m->blocks_.push_back(std::move(b));
  }
  m->norm_final_ = bind_norm("norm_final");
  m->norm_out_ = {LinearLayer::bind(w, "norm_out.linear", te, 2 * dim), bind_norm("norm_out.norm")};
  m->proj_out_ = LinearLayer::bind(w, "proj_out", dim, c.out_channels * patch.volume());
  w.finish();
  return m;
}

Tensor CogVideoXModel::forward(const ExecContext& ctx, const ModelInputs& inputs, AttentionPolicy& attention,
                               StepInfo step) const {
  const CogVideoXConfig& c = config_;
  VDIT_CHECK(inputs.latents.defined() && inputs.latents.rank() == 5 && inputs.latents.size(2) == c.in_channels,
             ErrorCode::invalid_argument, "CogVideoXTransformer3DModel: latents are {}, expected [B, F, {}, H, W]",
             inputs.latents.defined() ? inputs.latents.shape().to_string() : "undefined", c.in_channels);
  const Tensor latents = model_input(ctx, inputs.latents, dtype_);
  const int64_t batch = latents.size(0), dim = c.dim();
  VDIT_CHECK(inputs.timesteps.defined() && inputs.timesteps.shape() == Shape{batch}, ErrorCode::invalid_argument,
             "CogVideoXTransformer3DModel: timesteps are {}, expected [{}]",
             inputs.timesteps.defined() ? inputs.timesteps.shape().to_string() : "undefined", batch);
  VDIT_CHECK(inputs.text.defined() && inputs.text.rank() == 3 && inputs.text.size(0) == batch &&
                 inputs.text.size(2) == c.text_embed_dim,
             ErrorCode::invalid_argument, "CogVideoXTransformer3DModel: text states are {}, expected [{}, L, {}]",
             inputs.text.defined() ? inputs.text.shape().to_string() : "undefined", batch, c.text_embed_dim);
  const PatchSize patch = c.patch_size();
  const PatchGrid grid = patch_grid(latents, VideoAxes::bfchw, patch);
  const RopeTable rope = rope_table_3d(ctx, c.rope_axis_dims(), cogvideox_rope_positions(c, grid));

  const Tensor t = timestep_embedding(ctx, model_input(ctx, inputs.timesteps, DType::f32), static_cast<int>(dim),
                                      {c.flip_sin_to_cos, c.freq_shift});
  const Tensor time =  // silu(emb), the input of every adaLN projection
      silu(ctx, time_linear_2_(ctx, time_linear_1_(ctx, cast(ctx, t, dtype_), Activation::silu)));
  Tensor text = text_proj_(ctx, model_input(ctx, inputs.text, dtype_));
  Tensor video = patch_embed(ctx, latents, VideoAxes::bfchw, patch, patch_weight_, patch_bias_);

  AttentionSite site{step.step, step.steps, 0, static_cast<int>(c.layers),
                     VideoLayout{grid.frames, grid.height, grid.width, text.size(1), TextPosition::first}};
  PendingResidual pending;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    site.layer = static_cast<int>(i);
    block(ctx, blocks_[i], text, video, pending, time, rope, attention, site);
  }

  // The last feed-forward's video part goes in with the final norm; the text stream ends here.
  video = pending.y.defined()
              ? gated_residual_add_layer_norm(ctx, video, pending.y.slice(1, text.size(1), pending.y.size(1)),
                                              pending.mod.select(1, 2), norm_final_.weight, norm_final_.bias,
                                              c.norm_eps)
              : layer_norm(ctx, video, norm_final_.weight, norm_final_.bias, c.norm_eps);
  pending = {};
  const Tensor mod = norm_out_.linear(ctx, time).view({batch, 2, dim});  // shift, scale
  video = layer_norm_modulate(ctx, video, norm_out_.norm.weight, norm_out_.norm.bias, c.norm_eps, mod.select(1, 0),
                              mod.select(1, 1));
  return unpatchify(ctx, proj_out_(ctx, video), grid, patch, PatchFeatures::channel_major, VideoAxes::bfchw);
}

void CogVideoXModel::block(const ExecContext& ctx, const Block& b, Tensor& text, Tensor& video,
                           PendingResidual& pending, const Tensor& time, const RopeTable& rope,
                           AttentionPolicy& attention, const AttentionSite& site) const {
  const CogVideoXConfig& c = config_;
  const int64_t batch = video.size(0), dim = c.dim(), l = text.size(1), s = site.layout.tokens();
  // Both streams updated by their gated parts of the joint branch output y (gates: a [B, 6, D]
  // modulation, 2 gating the video and 5 the text), normed by n and modulated by mod, written into
  // their token ranges of one joint [text; video] tensor (no concatenation pass).
  auto gated_joint_norm = [&](const Tensor& y, const Tensor& gates, const NormLayer& n, const Tensor& mod) {
    Tensor joint = Tensor::empty({batch, s, dim}, video.dtype(), video.device());
    gated_residual_add_layer_norm_into(ctx, joint.slice(1, 0, l), text, y.slice(1, 0, l), gates.select(1, 5),
                                       n.weight, n.bias, c.norm_eps, mod.select(1, 3), mod.select(1, 4));
    gated_residual_add_layer_norm_into(ctx, joint.slice(1, l, s), video, y.slice(1, l, s), gates.select(1, 2),
                                       n.weight, n.bias, c.norm_eps, mod.select(1, 0), mod.select(1, 1));
    return joint;
  };
  // The joint sequence of both streams, each first updated by the gated parts of `pending` (if any),
  // normed and modulated by `norm`.
  auto joint_input = [&](const AdaNorm& norm, const Tensor& mod) {
    const NormLayer& n = norm.norm;
    if (!pending.y.defined())
      return concat_tokens(
          ctx, layer_norm_modulate(ctx, text, n.weight, n.bias, c.norm_eps, mod.select(1, 3), mod.select(1, 4)),
          layer_norm_modulate(ctx, video, n.weight, n.bias, c.norm_eps, mod.select(1, 0), mod.select(1, 1)));
    return gated_joint_norm(pending.y, pending.mod, n, mod);
  };

  // Attention in its own scope, so that its activations are freed before the feed-forward (whose
  // hidden layer is the forward's peak). Its gated residual add runs fused with the feed-forward's
  // norm, one pass per stream.
  const Tensor mod1 = b.norm1.linear(ctx, time).view({batch, 6, dim});
  const Tensor mod2 = b.norm2.linear(ctx, time).view({batch, 6, dim});
  Tensor ff_input;
  {
    const Tensor x = joint_input(b.norm1, mod1);
    pending = {};
    const Tensor q = layer_norm_rope(ctx, split_heads(b.to_q(ctx, x), c.heads), b.norm_q.weight, b.norm_q.bias,
                                     kQkNormEps, rope, l);
    const Tensor k = layer_norm_rope(ctx, split_heads(b.to_k(ctx, x), c.heads), b.norm_k.weight, b.norm_k.bias,
                                     kQkNormEps, rope, l);
    const Tensor v = split_heads(b.to_v(ctx, x), c.heads);
    const Tensor out = b.to_out(ctx, merge_heads(attention.attend(ctx, q, k, v, site)));
    ff_input = gated_joint_norm(out, mod1, b.norm2.norm, mod2);
  }
  pending = {b.ff_out(ctx, b.ff_in(ctx, ff_input, Activation::gelu_tanh)), mod2};
}

}  // namespace vdit
