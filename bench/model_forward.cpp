// One transformer forward of a real-size video DiT on the GPU (bf16), the vdit side of the model
// benchmark; bench/model_forward_peers.py writes the checkpoint and inputs and times diffusers on them.
// Per attention policy: time per forward (CUDA events around model->forward, warm-up, median of
// --runs), the caching allocator's peak memory, the density the policy used, and the output's
// relative L2 error against diffusers' bf16 output (`expected` in the inputs file, when present).
//
// --breakdown: the forward again with an OpTimeline (src/ops/op_timeline.h): a CUDA event after
// every op, the time between events summed per op category (GEMMs per product shape, each norm and
// elementwise op, attention and the profiled policy's profiler, mask builder and gather), median of
// 3 forwards after one untimed.
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
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/allocator_cuda.h"
#include "io/safetensors.h"
#include "json_file.h"
#include "split.h"
#include "models/cogvideox/cogvideox_model.h"
#include "models/model.h"
#include "models/wan/wan_model.h"
#include "ops/op_timeline.h"

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
  if (!path.empty()) bench::write_json_file(report, path, 2, "bench_model_forward");
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
    else if (a == "--policies") o.policies = bench::split(value(), ',');
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

  if (o.breakdown) {
    // The real forward, with an event after every op (ops and attention policy mark themselves).
    OpTimeline timeline(ctx);
    ExecContext timed = ctx;
    timed.timeline = &timeline;
    for (const std::string& name : o.policies) {
      AttentionPolicy policy = make_policy(name, layers);
      std::map<std::string, std::vector<double>> samples;
      std::map<std::string, int> calls;
      std::vector<std::string> order;
      constexpr int kTimed = 3;
      for (int i = 0; i < 1 + kTimed; ++i) {
        policy.clear_records();
        timeline.begin();
        (void)model->forward(timed, inputs, policy);
        const auto totals = timeline.finish();
        if (i == 0) continue;
        for (const OpTime& t : totals) {
          if (!samples.count(t.category)) order.push_back(t.category);
          samples[t.category].push_back(t.ms);
          calls[t.category] = t.calls;
        }
      }
      std::stable_sort(order.begin(), order.end(),
                       [&](const std::string& a, const std::string& b) { return median(samples[a]) > median(samples[b]); });
      double sum = 0.0;
      for (const std::string& category : order) sum += median(samples[category]);
      std::printf("  breakdown (%s, forward with an event after every op, median of %d): %.2f ms in all\n",
                  name.c_str(), kTimed, sum);
      for (const std::string& category : order) {
        const double ms = median(samples[category]);
        std::printf("    %-44s %9.2f ms  %5.1f%%  %5d calls\n", category.c_str(), ms, 100.0 * ms / sum,
                    calls[category]);
        report["policies"][name]["breakdown_ms"][category] = ms;
        report["policies"][name]["breakdown_calls"][category] = calls[category];
      }
      report["policies"][name]["breakdown_total_ms"] = sum;
      std::fflush(stdout);
    }
    write_json(report, o.json);
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
