// `vdit bench attention`: times vdit::attention on the GPU for one video layout, head count, head
// dim and per-head patterns (random inputs; CUDA events around each call after warm-up calls and
// --warmup-ms of them, median of --runs), and prints the kernel that ran, the time, the mask density, and the
// dense-equivalent (4 S^2 D H B / t) and effective (times the density) TFLOP/s.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "layout_options.h"
#include "vdit/attention.h"
#ifdef VDIT_HAVE_CUDA
#include "attention/attention_timing.h"
#endif

namespace vdit::cli {
namespace {

struct BenchAttentionOptions {
  LayoutOptions layout;
  int heads = 1, head_dim = 128, batch = 1, runs = 20, warmup = 3, block_q = 128;
  double warmup_ms = 1000.0;
  std::string pattern = "dense", dtype = "bf16", kernel = "auto";
  bool json = false;
};

int run_bench_attention(const BenchAttentionOptions& o, bool heads_given) {
  [[maybe_unused]] const VideoLayout layout = layout_from(o.layout);
  const std::vector<Pattern> patterns = head_patterns_from(o.pattern, o.heads, heads_given);
  VDIT_CHECK(o.head_dim >= 1, ErrorCode::invalid_argument, "--head-dim must be >= 1, got {}", o.head_dim);
  VDIT_CHECK(o.batch >= 1, ErrorCode::invalid_argument, "--batch must be >= 1, got {}", o.batch);
  VDIT_CHECK(o.runs >= 1 && o.warmup >= 0, ErrorCode::invalid_argument,
             "--runs must be >= 1 and --warmup >= 0, got {} and {}", o.runs, o.warmup);
#ifndef VDIT_HAVE_CUDA
  fail(ErrorCode::unsupported, "vdit bench attention: this vdit was built without CUDA (-DVDIT_CUDA=ON to build it)");
#else
  const int64_t heads = static_cast<int64_t>(patterns.size()), S = layout.tokens();
  const DType dtype = o.dtype == "f32" ? DType::f32 : o.dtype == "f16" ? DType::f16 : DType::bf16;
  const bool dense = std::all_of(patterns.begin(), patterns.end(),
                                 [](const Pattern& p) { return p.kind == Pattern::Kind::dense; });
  const FlashKernel kernel = o.kernel == "sm80"   ? FlashKernel::sm80
                             : o.kernel == "sm90" ? FlashKernel::sm90
                             : o.kernel == "f32"  ? FlashKernel::f32
                                                  : FlashKernel::automatic;
  VDIT_CHECK(flash_kernel_available(FlashKernel::automatic, Device::cuda()), ErrorCode::unsupported,
             "vdit bench attention: no CUDA GPU is visible");
  VDIT_CHECK(flash_kernel_available(kernel, Device::cuda()), ErrorCode::unsupported,
             "vdit bench attention: --kernel {} cannot run on this GPU", o.kernel);
  double density = 1.0;
  GpuBlockMask mask;
  if (!dense) {
    const BlockMask host = build_block_mask(layout, patterns, o.block_q);
    density = host.density();
    mask = upload_block_mask(host);
  }
  const Shape shape{o.batch, S, heads, o.head_dim};
  std::vector<std::array<Tensor, 3>> inputs(1);
  for (int i = 0; i < 3; ++i) inputs[0][i] = random_device_tensor(shape, dtype, i + 1);
  const Tensor out = Tensor::empty(shape, dtype, Device::cuda());
  const AttentionTiming t = time_attention_cuda(inputs, out, dense ? nullptr : &mask, kernel, o.runs, o.warmup,
                                                o.warmup_ms);
  const double dense_tflops = 4.0 * double(S) * double(S) * o.head_dim * heads * o.batch / (t.ms * 1e-3) / 1e12;
  if (o.json) {
    const nlohmann::json j = {{"kernel", flash_kernel_name(t.kernel)}, {"tokens", S},           {"heads", heads},
                              {"head_dim", o.head_dim},                {"batch", o.batch},      {"dtype", o.dtype},
                              {"pattern", o.pattern},                  {"density", density},    {"ms", t.ms},
                              {"dense_tflops", dense_tflops},          {"effective_tflops", dense_tflops * density},
                              {"block_q", o.block_q},                  {"runs", o.runs},
                              {"warmup_ms", o.warmup_ms}};
    fmt::print("{}\n", j.dump());
  } else {
    fmt::print("kernel {}, {} x {} tokens x {} heads x {}, {}, {}: density {:.3f}, {:.3f} ms (median of {}), "
               "{:.0f} TFLOP/s dense-equivalent, {:.0f} effective\n",
               flash_kernel_name(t.kernel), o.batch, S, heads, o.head_dim, o.dtype, o.pattern, density, t.ms, o.runs,
               dense_tflops, dense_tflops * density);
  }
  return 0;
#endif
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, Runner* runner) {
  CLI::App* bench = app.add_subcommand("bench", "Time a part of the engine on the GPU");
  bench->require_subcommand(1);
  auto o = std::make_shared<BenchAttentionOptions>();
  CLI::App* cmd = bench->add_subcommand(
      "attention", "Time vdit::attention (dense or block-sparse) on random inputs of one video layout");
  add_layout_options(cmd, o->layout);
  CLI::Option* heads = cmd->add_option("--heads", o->heads, "Attention heads (default 1, or one per listed pattern)");
  cmd->add_option("--head-dim", o->head_dim, "Head dimension (default 128)");
  cmd->add_option("--batch", o->batch, "Batch size (default 1)");
  cmd->add_option("--pattern", o->pattern,
                  "dense (default), tile:G, spatial:D, spatial:D+sink, temporal:D, or a comma-separated list with "
                  "one pattern per head");
  cmd->add_option("--block-q", o->block_q,
                  "Query rows a mask block (default 128; keys 128). At head dim 64 the sm90 kernel's work items are "
                  "192 rows: 192 makes each one mask row")
      ->check(CLI::Range(64, 1 << 20));
  cmd->add_option("--dtype", o->dtype, "bf16 (default), f16 or f32")->check(CLI::IsMember({"bf16", "f16", "f32"}));
  cmd->add_option("--kernel", o->kernel, "auto (default), sm80, sm90 or f32")
      ->check(CLI::IsMember({"auto", "sm80", "sm90", "f32"}));
  cmd->add_option("--runs", o->runs, "Timed calls; the median is reported (default 20)");
  cmd->add_option("--warmup", o->warmup, "Calls before timing (default 3)");
  cmd->add_option("--warmup-ms", o->warmup_ms,
                  "Then calls for this much GPU time before timing (default 1000; at most 10,000 calls), so that the "
                  "GPU runs at the clock it holds under sustained load (at its power cap, lower than a short burst's)")
      ->check(CLI::Range(0.0, 600000.0));
  cmd->add_flag("--json", o->json, "Print one JSON object");
  cmd->callback([=] { *runner = [=] { return run_bench_attention(*o, heads->count() > 0); }; });
  return bench;
}

}  // namespace vdit::cli
