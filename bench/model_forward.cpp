// One transformer forward of a real-size video DiT on the GPU (bf16), the vdit side of the model
// benchmark; bench/model_forward_peers.py writes the checkpoint and inputs and times diffusers on them.
// Per attention policy: time per forward (CUDA events around model->forward, warm-up, median of
// --runs), the caching allocator's peak memory, the density the policy used, and the output's
// relative L2 error against diffusers' bf16 output (`expected` in the inputs file, when present).
//
// --breakdown: the forward's op sequence replayed at the model's shapes with random weights of the
// same sizes and a CUDA event after every op, the time between events summed per op category
// (median of 3 replays). WanTransformer3DModel only; the replay mirrors WanModel::forward and block.
//
// Policies: dense; mix[:D] (layer 0 dense as a profiled policy's warm-up layer, then spatial:D and
// temporal:D on alternate layers; D 0.25 by default); profiled[:D] (the profiled policy: each
// (batch item, head) of every layer after the first picks spatial:D or temporal:D online, on the GPU;
// layer 0 runs dense as its warm-up layer; warm-up steps do not apply to a single forward, so none
// run dense; D 0.25 by default); plan:FILE (a layer plan); or any pattern string (spatial:0.25,
// temporal:0.25, tile:2), used by every layer.
//
// Usage: bench_model_forward --model DIR --inputs FILE [--policies dense,mix] [--runs 5] [--warmup 2]
//                            [--breakdown] [--label NAME] [--json FILE]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "core/allocator_cuda.h"
#include "core/half.h"
#include "io/safetensors.h"
#include "models/cogvideox/cogvideox_model.h"
#include "models/model.h"
#include "models/wan/wan_model.h"

namespace {

using namespace vdit;

const Device kGpu = Device::cuda(0);

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail(ErrorCode::cuda, "bench_model_forward: {}: {}", what, cudaGetErrorString(err));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

double gib(size_t bytes) { return static_cast<double>(bytes) / double(size_t{1} << 30); }

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find(sep, at), text.size());
    if (end > at) parts.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return parts;
}

AttentionPolicy make_policy(const std::string& name, int layers) {
  if (name == "dense") return AttentionPolicy::dense();
  if (name.rfind("plan:", 0) == 0) return AttentionPolicy::plan(load_layer_plan(name.substr(5)));
  if (name == "mix" || name.rfind("mix:", 0) == 0) {
    const double density = name == "mix" ? 0.25 : std::atof(name.c_str() + 4);
    VDIT_CHECK(density > 0.0 && density <= 1.0, ErrorCode::invalid_argument, "policy {}: density must be in (0, 1]",
               name);
    LayerPlan plan;
    for (int layer = 1; layer < layers; ++layer)
      plan.layers[layer] = layer % 2 ? Pattern::spatial(density) : Pattern::temporal(density);
    return AttentionPolicy::plan(std::move(plan));
  }
  if (name == "profiled" || name.rfind("profiled:", 0) == 0) {
    const double density = name == "profiled" ? 0.25 : std::atof(name.c_str() + 9);
    VDIT_CHECK(density > 0.0 && density <= 1.0, ErrorCode::invalid_argument, "policy {}: density must be in (0, 1]",
               name);
    ProfiledOptions options;
    options.candidates = {Pattern::spatial(density), Pattern::temporal(density)};
    options.warmup_fraction = 0.0;  // one forward: no warm-up steps
    options.warmup_layers = 1;      // layer 0 dense
    return AttentionPolicy::profiled(std::move(options));
  }
  return AttentionPolicy::fixed(parse_pattern(name));
}

// Uniform values in [-bound, bound), rounded to bf16, on the GPU: never zeros, so that GEMMs are
// timed on data like real weights.
Tensor random_bf16(const Shape& shape, float bound, uint64_t seed) {
  Tensor host = Tensor::empty(shape, DType::bf16);
  auto* h = static_cast<uint16_t*>(host.raw_data());
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int64_t i = 0; i < host.numel(); ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const float u = static_cast<float>(state >> 40) * 0x1p-24f;
    h[i] = f32_to_bf16((2.0f * u - 1.0f) * bound);
  }
  return host.to(kGpu);
}

// CUDA events after each op; the time from one mark to the next is added to the mark's category.
class OpTimeline {
 public:
  ~OpTimeline() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  void begin() {
    used_ = 0;
    categories_.clear();
    record();
  }
  void mark(const std::string& category) {
    categories_.push_back(category);
    record();
  }
  // Waits for the GPU; milliseconds per category, in order of first appearance.
  std::vector<std::pair<std::string, double>> finish() {
    cuda_ok(cudaEventSynchronize(events_[used_ - 1]), "cudaEventSynchronize");
    std::vector<std::pair<std::string, double>> totals;
    for (size_t i = 0; i < categories_.size(); ++i) {
      float ms = 0.0f;
      cuda_ok(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]), "cudaEventElapsedTime");
      auto it = std::find_if(totals.begin(), totals.end(), [&](const auto& t) { return t.first == categories_[i]; });
      if (it == totals.end()) {
        totals.emplace_back(categories_[i], ms);
      } else {
        it->second += ms;
      }
    }
    return totals;
  }

 private:
  void record() {
    if (used_ == events_.size()) {
      cudaEvent_t e = nullptr;
      cuda_ok(cudaEventCreate(&e), "cudaEventCreate");
      events_.push_back(e);
    }
    cuda_ok(cudaEventRecord(events_[used_++], nullptr), "cudaEventRecord");
  }

  std::vector<cudaEvent_t> events_;
  size_t used_ = 0;
  std::vector<std::string> categories_;
};

struct Linear {
  Tensor weight, bias;
  Tensor operator()(const ExecContext& ctx, const Tensor& x, Activation act = Activation::none) const {
    return linear(ctx, x, weight, bias, act);
  }
};

Linear random_linear(int64_t in, int64_t out, uint64_t seed) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(in));
  return {random_bf16({out, in}, bound, seed), random_bf16({out}, bound, seed + 1)};
}

// Random weights of the sizes of one Wan block and of the embedders and head; the replay runs every
// layer on the same block weights.
struct WanReplayWeights {
  Tensor patch_weight, patch_bias;
  Linear time_1, time_2, time_proj, text_1, text_2;
  Linear q, k, v, o, cross_q, cross_k, cross_v, cross_o, ffn_in, ffn_out;
  Tensor norm_q, norm_k, cross_norm_q, cross_norm_k, norm2_weight, norm2_bias, block_table, head_table;
  Linear proj_out;

  explicit WanReplayWeights(const WanConfig& c) {
    const int64_t dim = c.dim();
    uint64_t seed = 100;
    auto lin = [&](int64_t in, int64_t out) { return random_linear(in, out, seed += 2); };
    const int64_t patch_in = c.in_channels * c.patch.volume();
    patch_weight = random_bf16({dim, c.in_channels, c.patch.t, c.patch.h, c.patch.w},
                               1.0f / std::sqrt(static_cast<float>(patch_in)), ++seed);
    patch_bias = random_bf16({dim}, 0.1f, ++seed);
    time_1 = lin(c.freq_dim, dim);
    time_2 = lin(dim, dim);
    time_proj = lin(dim, 6 * dim);
    text_1 = lin(c.text_dim, dim);
    text_2 = lin(dim, dim);
    q = lin(dim, dim), k = lin(dim, dim), v = lin(dim, dim), o = lin(dim, dim);
    cross_q = lin(dim, dim), cross_k = lin(dim, dim), cross_v = lin(dim, dim), cross_o = lin(dim, dim);
    ffn_in = lin(dim, c.ffn_dim);
    ffn_out = lin(c.ffn_dim, dim);
    for (Tensor* t : {&norm_q, &norm_k, &cross_norm_q, &cross_norm_k, &norm2_weight})
      *t = random_bf16({dim}, 1.0f, ++seed);
    norm2_bias = random_bf16({dim}, 0.1f, ++seed);
    block_table = random_bf16({1, 6, dim}, 0.05f, ++seed);
    head_table = random_bf16({1, 2, dim}, 0.05f, ++seed);
    proj_out = lin(dim, c.out_channels * c.patch.volume());
  }
};

std::vector<double> iota_positions(int64_t n) {
  std::vector<double> p(n);
  std::iota(p.begin(), p.end(), 0.0);
  return p;
}

// WanModel::forward's ops in its order (see src/models/wan/wan_model.cpp), each followed by a mark.
void replay_wan(const ExecContext& ctx, const WanConfig& c, const WanReplayWeights& w, const Tensor& latents,
                const Tensor& timesteps, const Tensor& text_states, AttentionPolicy& policy, OpTimeline& timeline) {
  const int64_t batch = latents.size(0), dim = c.dim();
  auto heads = [&](const Tensor& x) { return x.contiguous().view({x.size(0), x.size(1), c.heads, c.head_dim}); };
  auto merge = [](const Tensor& x) { return x.contiguous().view({x.size(0), x.size(1), x.size(2) * x.size(3)}); };
  timeline.begin();
  const PatchGrid grid = patch_grid(latents, VideoAxes::bcfhw, c.patch);
  const RopeTable rope = rope_table_3d(ctx, c.rope_axis_dims(),
                                       {iota_positions(grid.frames), iota_positions(grid.height), iota_positions(grid.width)});
  timeline.mark("rope table");
  Tensor x = patch_embed(ctx, latents, VideoAxes::bcfhw, c.patch, w.patch_weight, w.patch_bias);
  const Tensor t = timestep_embedding(ctx, timesteps, static_cast<int>(c.freq_dim), {true, 0.0});
  const Tensor temb = w.time_2(ctx, w.time_1(ctx, cast(ctx, t, DType::bf16), Activation::silu));
  const Tensor modulation = w.time_proj(ctx, silu(ctx, temb)).view({batch, 6, dim});
  const Tensor text = w.text_2(ctx, w.text_1(ctx, text_states, Activation::gelu_tanh));
  timeline.mark("embeddings");

  AttentionSite site{0, 1, 0, static_cast<int>(c.layers),
                     VideoLayout{grid.frames, grid.height, grid.width, 0, TextPosition::none}};
  Tensor ffn, ffn_gate;  // the previous layer's feed-forward output, added by the next norm
  for (int layer = 0; layer < c.layers; ++layer) {
    site.layer = layer;
    const Tensor mod = add(ctx, modulation, w.block_table);
    auto chunk = [&](int i) { return mod.select(1, i); };
    const Tensor h = ffn.defined()
                         ? gated_residual_add_layer_norm(ctx, x, ffn, ffn_gate, {}, {}, c.eps, chunk(0), chunk(1))
                         : layer_norm_modulate(ctx, x, {}, {}, c.eps, chunk(0), chunk(1));
    timeline.mark(ffn.defined() ? "residual add + norm" : "norms + adaLN");
    Tensor q = w.q(ctx, h), k = w.k(ctx, h);
    const Tensor v = heads(w.v(ctx, h));
    timeline.mark("linear: self QKV");
    q = rms_norm_rope(ctx, q, w.norm_q, c.eps, c.heads, rope);
    k = rms_norm_rope(ctx, k, w.norm_k, c.eps, c.heads, rope);
    timeline.mark("RMSNorm + RoPE Q/K (self)");
    const Tensor o = policy.attend(ctx, q, k, v, site);
    timeline.mark("self-attention");
    const Tensor out = w.o(ctx, merge(o));
    timeline.mark("linear: self out");
    const Tensor n = gated_residual_add_layer_norm(ctx, x, out, chunk(2), w.norm2_weight, w.norm2_bias, c.eps);
    timeline.mark("residual add + norm");
    Tensor cq = w.cross_q(ctx, n), ck = w.cross_k(ctx, text);
    const Tensor cv = heads(w.cross_v(ctx, text));
    timeline.mark("linear: cross Q/K/V/out");
    cq = heads(rms_norm(ctx, cq, w.cross_norm_q, c.eps));
    ck = heads(rms_norm(ctx, ck, w.cross_norm_k, c.eps));
    timeline.mark("RMSNorm Q/K");
    const Tensor co = cross_attention(ctx, cq, ck, cv);
    timeline.mark("cross-attention");
    const Tensor cross_out = w.cross_o(ctx, merge(co));
    timeline.mark("linear: cross Q/K/V/out");
    const Tensor f = gated_residual_add_layer_norm(ctx, x, cross_out, {}, {}, {}, c.eps, chunk(3), chunk(4));
    timeline.mark("residual add + norm");
    const Tensor hidden = w.ffn_in(ctx, f, Activation::gelu_tanh);
    timeline.mark("linear: FFN in + GELU");
    ffn = w.ffn_out(ctx, hidden);
    ffn_gate = chunk(5);
    timeline.mark("linear: FFN out");
  }
  const Tensor table = w.head_table.select(0, 0);
  const Tensor shift = add(ctx, temb, table.select(0, 0)), scale = add(ctx, temb, table.select(0, 1));
  x = w.proj_out(ctx, ffn.defined()
                          ? gated_residual_add_layer_norm(ctx, x, ffn, ffn_gate, {}, {}, c.eps, shift, scale)
                          : layer_norm_modulate(ctx, x, {}, {}, c.eps, shift, scale));
  (void)unpatchify(ctx, x, grid, c.patch, PatchFeatures::channel_minor, VideoAxes::bcfhw);
  timeline.mark("output head");
}

struct Comparison {
  double relative_l2 = -1.0;  // -1: no reference
  int64_t non_finite = 0;
};

Comparison compare(const Tensor& out, const Tensor& expected) {
  Comparison c;
  const Tensor a = out.to(Device::cpu()).to(DType::f32).contiguous();
  for (int64_t i = 0; i < a.numel(); ++i) c.non_finite += !std::isfinite(a.data<float>()[i]);
  if (!expected.defined()) return c;
  const Tensor e = expected.to(DType::f32).contiguous();
  VDIT_CHECK(a.shape() == e.shape(), ErrorCode::invalid_argument, "output {} but expected {}", a.describe(),
             e.describe());
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = double(a.data<float>()[i]) - e.data<float>()[i];
    diff += d * d;
    norm += double(e.data<float>()[i]) * e.data<float>()[i];
  }
  c.relative_l2 = std::sqrt(diff / norm);
  return c;
}

double mean_density(const AttentionPolicy& policy) {
  const auto& records = policy.records();
  if (records.empty()) return 1.0;
  double sum = 0.0;
  for (const AttentionRecord& r : records) sum += r.density;
  return sum / static_cast<double>(records.size());
}

void write_json(const nlohmann::json& report, const std::string& path) {
  if (path.empty()) return;
  std::ofstream json(path);
  VDIT_CHECK(json.good(), ErrorCode::io, "bench_model_forward: cannot write {}", path);
  json << report.dump(2) << "\n";
}

struct Options {
  std::string model, inputs, label = "model", json;
  std::vector<std::string> policies = {"dense", "mix"};
  int runs = 5, warmup = 2;
  bool breakdown = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      VDIT_CHECK(i + 1 < argc, ErrorCode::invalid_argument, "bench_model_forward: {} needs a value", a);
      return argv[++i];
    };
    if (a == "--model") o.model = value();
    else if (a == "--inputs") o.inputs = value();
    else if (a == "--label") o.label = value();
    else if (a == "--json") o.json = value();
    else if (a == "--policies") o.policies = split(value(), ',');
    else if (a == "--runs") o.runs = std::max(1, std::atoi(value().c_str()));
    else if (a == "--warmup") o.warmup = std::max(0, std::atoi(value().c_str()));
    else if (a == "--breakdown") o.breakdown = true;
    else fail(ErrorCode::invalid_argument, "bench_model_forward: unknown argument {} (usage: see its source)", a);
  }
  VDIT_CHECK(!o.model.empty() && !o.inputs.empty(), ErrorCode::invalid_argument,
             "bench_model_forward: --model DIR and --inputs FILE are required");
  return o;
}

int run(const Options& o) {
  cudaDeviceProp prop{};
  cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  const BlasHandle blas(kGpu);
  const ExecContext ctx{kGpu, nullptr, 0, blas.get()};

  const SafetensorsFile file = SafetensorsFile::open(o.inputs);
  const auto load_start = std::chrono::steady_clock::now();
  const std::unique_ptr<VideoModel> model = load_model(o.model, ctx, DType::bf16);
  cuda_ok(cudaDeviceSynchronize(), "load");
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  const ModelInputs inputs{file.tensor("hidden_states").to(DType::bf16).contiguous().to(kGpu),
                           file.tensor("timestep").to(DType::f32).contiguous().to(kGpu),
                           file.tensor("encoder_hidden_states").to(DType::bf16).contiguous().to(kGpu)};
  const Tensor expected = file.contains("expected") ? file.tensor("expected") : Tensor();
  const auto* wan = dynamic_cast<const WanModel*>(model.get());
  const auto* cogvideox = dynamic_cast<const CogVideoXModel*>(model.get());
  const int layers = static_cast<int>(wan ? wan->config().layers : cogvideox ? cogvideox->config().layers : 0);
  std::printf("%s: %s on %s, latents %s, text %s; loaded in %.1f s\n", o.label.c_str(),
              std::string(model->class_name()).c_str(), prop.name, inputs.latents.shape().to_string().c_str(),
              inputs.text.shape().to_string().c_str(), load_s);

  nlohmann::json report = {{"label", o.label},           {"class", std::string(model->class_name())},
                           {"gpu", prop.name},           {"latents", inputs.latents.shape().to_string()},
                           {"text", inputs.text.shape().to_string()}, {"load_s", load_s},
                           {"runs", o.runs},             {"warmup", o.warmup}};
  cudaEvent_t start = nullptr, stop = nullptr;
  cuda_ok(cudaEventCreate(&start), "cudaEventCreate");
  cuda_ok(cudaEventCreate(&stop), "cudaEventCreate");
  for (const std::string& name : o.policies) {
    AttentionPolicy policy = make_policy(name, layers);
    cuda_ok(cudaDeviceSynchronize(), "sync");
    reset_cuda_memory_peaks(kGpu);
    Tensor out;
    std::vector<double> times;
    for (int i = 0; i < o.warmup + o.runs; ++i) {
      policy.clear_records();
      out = Tensor();
      cuda_ok(cudaEventRecord(start, nullptr), "cudaEventRecord");
      out = model->forward(ctx, inputs, policy);
      cuda_ok(cudaEventRecord(stop, nullptr), "cudaEventRecord");
      cuda_ok(cudaEventSynchronize(stop), "forward");
      float ms = 0.0f;
      cuda_ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
      if (i >= o.warmup) times.push_back(ms);
    }
    const CudaMemoryStats memory = cuda_memory_stats(kGpu);
    size_t free = 0, total = 0;
    cuda_ok(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    const Comparison cmp = compare(out, expected);
    const double ms = median(times), density = mean_density(policy);
    std::printf("  %-14s %9.2f ms/forward (median of %d; min %.2f, max %.2f)  density %.3f  peak used %.2f GiB, "
                "reserved %.2f GiB, device in use %.2f GiB  rel L2 vs diffusers %.2e  non-finite %lld\n",
                name.c_str(), ms, o.runs, *std::min_element(times.begin(), times.end()),
                *std::max_element(times.begin(), times.end()), density, gib(memory.used_peak),
                gib(memory.reserved_peak), gib(total - free), cmp.relative_l2, static_cast<long long>(cmp.non_finite));
    std::fflush(stdout);
    report["policies"][name] = {{"ms", ms},
                                {"times_ms", times},
                                {"density", density},
                                {"peak_used_bytes", memory.used_peak},
                                {"peak_reserved_bytes", memory.reserved_peak},
                                {"device_in_use_bytes", total - free},
                                {"relative_l2_vs_diffusers", cmp.relative_l2},
                                {"non_finite", cmp.non_finite}};
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  write_json(report, o.json);

  if (o.breakdown && wan) {
    const WanConfig& c = wan->config();
    const WanReplayWeights weights(c);
    OpTimeline timeline;
    for (const std::string& name : o.policies) {
      AttentionPolicy policy = make_policy(name, layers);
      std::map<std::string, std::vector<double>> samples;
      std::vector<std::string> order;
      constexpr int kReplays = 3;
      for (int i = 0; i < 1 + kReplays; ++i) {
        policy.clear_records();
        replay_wan(ctx, c, weights, inputs.latents, inputs.timesteps, inputs.text, policy, timeline);
        const auto totals = timeline.finish();
        if (i == 0) continue;
        for (const auto& [category, ms] : totals) {
          if (!samples.count(category)) order.push_back(category);
          samples[category].push_back(ms);
        }
      }
      double sum = 0.0;
      for (const std::string& category : order) sum += median(samples[category]);
      std::printf("  breakdown (%s, op replay, median of %d): %.2f ms in all\n", name.c_str(), kReplays, sum);
      for (const std::string& category : order) {
        const double ms = median(samples[category]);
        std::printf("    %-28s %9.2f ms  %5.1f%%\n", category.c_str(), ms, 100.0 * ms / sum);
        report["policies"][name]["breakdown_ms"][category] = ms;
      }
      report["policies"][name]["breakdown_total_ms"] = sum;
      std::fflush(stdout);
    }
    write_json(report, o.json);
  } else if (o.breakdown) {
    std::printf("  breakdown: only WanTransformer3DModel has an op replay\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model_forward: %s\n", e.what());
    return 1;
  }
}
