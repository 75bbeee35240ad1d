#include "models/attention_policy.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ops/op_timeline.h"

#ifdef VDIT_HAVE_CUDA
#include "models/attention_policy_cuda.h"
#endif

namespace vdit {
namespace {

// One attention call (the CPU reference or the GPU kernel, by the tensors' device), dense when `mask`
// is null.
Tensor run_attention(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask* mask) {
  VDIT_CHECK(q.device() == ctx.device, ErrorCode::invalid_argument, "attention policy: q is {}, the context is {}",
             q.describe(), ctx.device.to_string());
  return attention(q, k, v, AttentionOptions{0.0f, mask}, nullptr, ctx.stream);
}

void check_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionSite& site) {
  for (const Tensor* t : {&q, &k, &v}) {
    VDIT_CHECK(t->defined() && t->rank() == 4 && t->shape() == q.shape() && q.size(1) == site.layout.tokens(),
               ErrorCode::invalid_argument,
               "attention policy (step {}, layer {}): q {}, k {}, v {} must be one [B, S, H, D] with S = {} ({})",
               site.step, site.layer, q.shape().to_string(), k.shape().to_string(), v.shape().to_string(),
               site.layout.tokens(), site.layout.to_string());
  }
}

// Attention under per-slot `patterns`: H of them (shared by the batch) or B*H (slot b*H + h), the
// temporal slots permuted to token-major order around the call, the mask from `masks`. Returns O and
// the mask's density.
Tensor attend_patterns(const ExecContext& ctx, MaskCache& masks, const Tensor& q, const Tensor& k, const Tensor& v,
                       const VideoLayout& layout, std::span<const Pattern> patterns, int block_q, int block_k,
                       double* density) {
  const std::shared_ptr<const MaskCache::Entry> cached = masks.get(ctx, layout, patterns, block_q, block_k);
  const MaskCache::Entry& entry = *cached;
  *density = entry.density;
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda()) return policy_cuda::attend_masked(ctx, q, k, v, layout, entry.gpu_mask, entry.gpu_permute);
#endif
  if (!entry.any_permuted) return run_attention(ctx, q, k, v, &entry.mask);
  const int64_t batch = q.size(0), heads = q.size(2);
  if (static_cast<int64_t>(patterns.size()) == heads) {
    const std::span<const uint8_t> permute = entry.permute;
    const Tensor o =
        run_attention(ctx, gather_to_token_major(q, layout, permute), gather_to_token_major(k, layout, permute),
                      gather_to_token_major(v, layout, permute), &entry.mask);
    return scatter_from_token_major(o, layout, permute);
  }
  // Per-item patterns with permuted slots: one item at a time (the CPU permutation takes H flags).
  Tensor out;
  for (int64_t b = 0; b < batch; ++b) {
    double item_density = 0.0;
    const Tensor ob = attend_patterns(ctx, masks, q.slice(0, b, b + 1), k.slice(0, b, b + 1), v.slice(0, b, b + 1),
                                      layout, patterns.subspan(b * heads, heads), block_q, block_k, &item_density);
    if (!out.defined()) out = Tensor::empty(q.shape(), ob.dtype(), ob.device());
    out.slice(0, b, b + 1).copy_from(ob);
  }
  return out;
}

}  // namespace

std::shared_ptr<const MaskCache::Entry> MaskCache::get(const ExecContext& ctx, const VideoLayout& layout,
                                                       std::span<const Pattern> patterns, int block_q, int block_k) {
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    const Entry& e = **it;
    if (e.block_q == block_q && e.block_k == block_k && e.device == ctx.device && e.layout == layout &&
        std::equal(e.patterns.begin(), e.patterns.end(), patterns.begin(), patterns.end()))
      return *it;
  }
  auto entry = std::make_shared<Entry>();
  entry->layout = layout;
  entry->patterns.assign(patterns.begin(), patterns.end());
  entry->block_q = block_q;
  entry->block_k = block_k;
  entry->device = ctx.device;
  entry->mask = build_block_mask(layout, patterns, block_q, block_k);
  entry->density = entry->mask.density();
  entry->permute.resize(patterns.size());
  for (size_t slot = 0; slot < patterns.size(); ++slot)
    entry->any_permuted |= (entry->permute[slot] = patterns[slot].permuted()) != 0;
  if (ctx.device.is_cuda()) {
    entry->gpu_mask = upload_block_mask(entry->mask, ctx.device);
    if (entry->any_permuted) {
      Tensor flags = Tensor::empty(Shape{static_cast<int64_t>(patterns.size())}, DType::u8);
      std::copy(entry->permute.begin(), entry->permute.end(), flags.data<uint8_t>());
      entry->gpu_permute = flags.to(ctx.device);
    }
  }
  if (entries_.size() >= capacity_ && !entries_.empty()) entries_.erase(entries_.begin());
  entries_.push_back(entry);
  return entry;
}

const Pattern& LayerPlan::at(int layer) const {
  auto it = layers.find(layer);
  return it == layers.end() ? fallback : it->second;
}

LayerPlan parse_layer_plan(const std::string& json_text, const std::string& source) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::corrupt_file, "attention plan {}: not JSON: {}", source, e.what());
  }
  VDIT_CHECK(json.is_object() && json.contains("layers") && json["layers"].is_object(), ErrorCode::corrupt_file,
             "attention plan {}: expected {{\"layers\": {{\"0\": \"dense\", ...}}}}", source);
  LayerPlan plan;
  auto pattern_of = [&](const nlohmann::json& value, const std::string& key) {
    VDIT_CHECK(value.is_string(), ErrorCode::corrupt_file, "attention plan {}: {} is {}, expected a pattern string",
               source, key, value.dump());
    try {
      return parse_pattern(value.get<std::string>());
    } catch (const Error& e) {
      fail(ErrorCode::corrupt_file, "attention plan {}: {}: {}", source, key, e.what());
    }
  };
  for (const auto& [key, value] : json["layers"].items()) {
    size_t used = 0;
    int layer = -1;
    try {
      layer = std::stoi(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    VDIT_CHECK(used == key.size() && layer >= 0, ErrorCode::corrupt_file,
               "attention plan {}: layer key \"{}\" is not a layer index", source, key);
    plan.layers[layer] = pattern_of(value, fmt::format("layer {}", key));
  }
  if (json.contains("default")) plan.fallback = pattern_of(json["default"], "default");
  return plan;
}

LayerPlan load_layer_plan(const std::string& path) {
  std::ifstream in(path);
  VDIT_CHECK(in.good(), ErrorCode::io, "attention plan {}: cannot open", path);
  std::stringstream text;
  text << in.rdbuf();
  return parse_layer_plan(text.str(), path);
}

AttentionPolicy AttentionPolicy::dense() { return AttentionPolicy(); }

AttentionPolicy AttentionPolicy::fixed(const Pattern& pattern, int block_q, int block_k) {
  AttentionPolicy p;
  p.kind_ = Kind::fixed;
  p.pattern_ = pattern;
  p.block_q_ = block_q;
  p.block_k_ = block_k;
  return p;
}

AttentionPolicy AttentionPolicy::plan(LayerPlan plan, int block_q, int block_k) {
  AttentionPolicy p;
  p.kind_ = Kind::plan;
  p.plan_ = std::move(plan);
  p.block_q_ = block_q;
  p.block_k_ = block_k;
  return p;
}

AttentionPolicy AttentionPolicy::profiled(ProfiledOptions options) {
  VDIT_CHECK(!options.candidates.empty(), ErrorCode::invalid_argument, "profiled attention policy: no candidates");
  AttentionPolicy p;
  p.kind_ = Kind::profiled;
  p.block_q_ = options.profile.block_q;
  p.block_k_ = options.profile.block_k;
  p.profiled_ = std::move(options);
  return p;
}

Tensor AttentionPolicy::attend(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                               const AttentionSite& site) {
  OpMark mark(ctx, "attention");  // the kernel; the profiled policy marks its profiler and masks apart
  check_qkv(q, k, v, site);
  switch (kind_) {
    case Kind::dense: return attend_uniform(ctx, q, k, v, site, Pattern::dense());
    case Kind::fixed: return attend_uniform(ctx, q, k, v, site, pattern_);
    case Kind::plan: return attend_uniform(ctx, q, k, v, site, plan_.at(site.layer));
    case Kind::profiled: {
      const int warmup_steps = static_cast<int>(std::floor(profiled_.warmup_fraction * site.steps));
      if (site.step < warmup_steps || site.layer < profiled_.warmup_layers)
        return attend_uniform(ctx, q, k, v, site, Pattern::dense());
      return attend_profiled(ctx, q, k, v, site);
    }
  }
  fail(ErrorCode::internal, "attention policy: unknown kind");
}

Tensor AttentionPolicy::attend_uniform(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                                       const AttentionSite& site, const Pattern& pattern) {
  const int64_t batch = q.size(0), heads = q.size(2);
  AttentionRecord record{site.step, site.layer, std::vector<Pattern>(batch * heads, pattern), 1.0};
  const std::vector<Pattern> patterns(heads, pattern);
  Tensor o = pattern == Pattern::dense()
                 ? run_attention(ctx, q, k, v, nullptr)
                 : attend_patterns(ctx, masks_, q, k, v, site.layout, patterns, block_q_, block_k_, &record.density);
  records_.push_back(std::move(record));
  return o;
}

const std::vector<AttentionRecord>& AttentionPolicy::records() const {
  resolve_pending();
  return records_;
}

void AttentionPolicy::clear_records() {
  records_.clear();
  pending_.clear();
}

void AttentionPolicy::resolve_pending() const {
  if (pending_.empty()) return;
#ifdef VDIT_HAVE_CUDA
  policy_cuda::synchronize();
#endif
  const int count = static_cast<int>(profiled_.candidates.size());
  for (const PendingRecord& p : pending_) {
    const Tensor codes = p.choice.to(Device::cpu());
    const int32_t* c = codes.data<int32_t>();
    AttentionRecord& record = records_.at(p.index);
    record.heads.clear();
    double sum = 0.0;
    for (int64_t slot = 0; slot < codes.numel(); ++slot) {
      VDIT_CHECK(c[slot] >= -1 && c[slot] < count, ErrorCode::internal,
                 "profiled policy (step {}, layer {}): GPU slot code {} outside [-1, {})", record.step,
                 record.layer, c[slot], count);
      record.heads.push_back(c[slot] < 0 ? Pattern::dense() : profiled_.candidates[c[slot]]);
      sum += p.code_density.at(c[slot] + 1);
    }
    record.density = codes.numel() > 0 ? sum / static_cast<double>(codes.numel()) : 1.0;
  }
  pending_.clear();
}

// Each batch item profiles and decides for itself (e.g. the two halves of classifier-free guidance).
// On a GPU the profiler, mask builder and permutation run there (policy_cuda::ProfiledGpu) when they
// take the call; the record's patterns and density are filled in from the GPU's slot codes when the
// records are read (resolve_pending), so the per-layer path neither copies Q, K, V nor waits. Otherwise
// the profiler runs on the CPU, on host copies of GPU tensors.
Tensor AttentionPolicy::attend_profiled(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                                        const AttentionSite& site) {
#ifdef VDIT_HAVE_CUDA
  if (ctx.device.is_cuda() && policy_cuda::ProfiledGpu::supports(q, profiled_.candidates)) {
    if (!gpu_profiled_) gpu_profiled_ = std::make_shared<policy_cuda::ProfiledGpu>();
    PendingRecord pending;
    pending.index = records_.size();
    Tensor o = gpu_profiled_->attend(ctx, q, k, v, site.layout, profiled_, &pending.choice, &pending.code_density);
    records_.push_back(AttentionRecord{site.step, site.layer, {}, 1.0});
    pending_.push_back(std::move(pending));
    return o;
  }
#endif
  auto host = [](const Tensor& t) { return t.device().is_cpu() ? t : t.contiguous().to(Device::cpu()); };
  const ProfileResult result =
      profile_heads(host(q), host(k), host(v), site.layout, profiled_.candidates, profiled_.profile);
  AttentionRecord record{site.step, site.layer, result.patterns(profiled_.candidates), 1.0};
  Tensor o = attend_patterns(ctx, masks_, q, k, v, site.layout, record.heads, block_q_, block_k_, &record.density);
  records_.push_back(std::move(record));
  return o;
}

}  // namespace vdit
