// Times the flash-attention kernels on the four shapes of ../shared/ANCHORS.md (bf16, batch 1):
// dense, tile:1/2/4, spatial and temporal at 0.25, 0.15 and 0.10 (issue 3's lowest density), and a
// mixed per-head pattern (half spatial, half temporal at 0.25). CUDA events, warm-up (1 s of calls,
// 5 s before a shape's first row: kSettleMs), median of --runs (5x on the short shapes). Each sparse
// row is timed alone (back to back, as the peers are), then with the dense call in turn
// (time_attention_cuda of two masks) for its effective throughput as a fraction of that dense
// call's, which the clock's drift between rows does not move. Prints time, dense-equivalent TFLOP/s
// (4 S^2 D H / t), effective TFLOP/s (kept tiles only), that fraction and density; then the dense
// row again (its drift over the shape), and writes for
// bench/attention_peers.py: <dir>/<shape>.masks.safetensors (each mask's CSR) and
// <dir>/ours_<kernel>.json (the timings).
//
// Usage: bench_attention [--kernel sm80|sm90|auto] [--shapes cogvideox,wan,opensora,hunyuan]
//                        [--runs N] [--dir DIR] [--no-masks] [--block-q 128,192]
//                        [--warmup-ms 1000] [--settle-ms 5000]
// --block-q: the masks' query blocks, each size its own rows. Masks are built in blocks of 128 x 128
// (DESIGN's default); another size N adds rows named "<pattern>@N" on the shapes of head dim 64, whose
// sm90 work items are 192 rows (three warpgroups): with N = 192 each item is one query block, one CSR
// row, instead of spanning two. Other head dims run 128-row items and keep 128.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "attention/attention_timing.h"
#include "io/safetensors.h"
#include "json_file.h"
#include "split.h"
#include "vdit/attention.h"

namespace {

using namespace vdit;

struct BenchShape {
  std::string name;
  int64_t frames, height, width, heads, dim;
};

// GPU time of calls before each row is timed, so that every row (and the peers, attention_peers.py)
// is timed at the clock the GPU settles at under that load (see time_attention_cuda). The H100 at its
// power cap takes ~0.7 s of load to fall from its 1,980 MHz to the ~1,600-1,700 it holds (nvidia-smi
// every 100 ms; RESULTS): after 300 ms a row timed after an idle gap, the first dense row of each
// shape above all, still ran at a higher clock than the rows after it.
constexpr double kWarmupMs = 1000.0;
// Each shape's first row (dense) is timed after 5 s of calls instead: the GPU then holds the clock it
// keeps through the shape's rows. After the host's set-up of a shape's inputs, 1 s was not enough:
// the dense row ran 4-4.5% faster than the same call timed again after the shape's rows (CogVideoX,
// Wan; with 4 s, 0.0%; RESULTS), which took that much off every sparse row's fraction of dense timed
// alone. The dense call timed again at the end ("dense again") shows the drift in every run.
constexpr double kSettleMs = 5000.0;
constexpr int kShortShapeRuns = 5;

const std::vector<BenchShape> kShapes = {
    {"cogvideox", 13, 30, 45, 48, 64},   // 17,550 tokens
    {"wan", 21, 30, 52, 12, 128},        // 32,760
    {"opensora", 24, 45, 80, 24, 96},    // 86,400
    {"hunyuan", 33, 45, 80, 24, 128},    // 118,800
};

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail(ErrorCode::cuda, "bench_attention: {}: {}", what, cudaGetErrorString(err));
}

struct Result {
  std::string shape, pattern, kernel;
  int64_t tokens, heads, dim;
  double density, ms, dense_tflops, effective_tflops;
  double turn_dense_ms = 0, turn_ms = 0;  // the dense call's and the row's times in turn (0: the dense row)
  double ms_again = 0;                    // the dense row: timed again after the shape's other rows
  // effective / dense throughput, dense timed in turn with the row (1: the dense row)
  double of_dense() const { return turn_ms > 0 ? density * turn_dense_ms / turn_ms : 1.0; }
};

std::vector<std::pair<std::string, std::vector<Pattern>>> bench_patterns(int64_t heads) {
  std::vector<std::pair<std::string, std::vector<Pattern>>> list;
  auto all = [&](Pattern p) { return std::vector<Pattern>(heads, p); };
  list.push_back({"dense", {}});
  for (int g : {1, 2, 4}) list.push_back({Pattern::tile(g).to_string(), all(Pattern::tile(g))});
  for (double d : {0.25, 0.15, 0.10}) list.push_back({Pattern::spatial(d).to_string(), all(Pattern::spatial(d))});
  for (double d : {0.25, 0.15, 0.10}) list.push_back({Pattern::temporal(d).to_string(), all(Pattern::temporal(d))});
  std::vector<Pattern> mix(heads, Pattern::temporal(0.25));
  std::fill(mix.begin(), mix.begin() + heads / 2, Pattern::spatial(0.25));
  list.push_back({"mix:spatial+temporal:0.25", mix});
  return list;
}

Tensor csr_tensor(const std::vector<int64_t>& values) {
  Tensor t = Tensor::empty({static_cast<int64_t>(values.size())}, DType::i32);
  std::transform(values.begin(), values.end(), t.data<int32_t>(), [](int64_t x) { return static_cast<int32_t>(x); });
  return t;
}

// `text` read whole as a number, or nothing.
std::optional<double> whole_text_number(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return used == text.size() ? std::optional<double>(v) : std::nullopt;
}

// "128,192" -> {128, 192}: query block sizes, multiples of 64 from 128 (see the usage above).
std::vector<int> parse_block_qs(const std::string& list) {
  const std::vector<std::string> items = bench::split(list, ',');
  const auto bad = [&] {
    fail(ErrorCode::invalid_argument,
         "bench_attention: --block-q {}: expected sizes of query blocks, multiples of 64 from 128, as 128,192", list);
  };
  if (items.size() != static_cast<size_t>(std::count(list.begin(), list.end(), ',')) + 1) bad();  // an empty item
  std::vector<int> sizes;
  for (const std::string& item : items) {
    const std::optional<double> v = whole_text_number(item);
    if (!v || *v < 128 || *v > (1 << 20) || std::fmod(*v, 64.0) != 0) bad();
    const int size = static_cast<int>(*v);
    if (std::find(sizes.begin(), sizes.end(), size) == sizes.end()) sizes.push_back(size);
  }
  return sizes;
}

// A numeric argument's value, at least `least` (and whole if `whole`), or an error naming the argument.
double number(const std::string& arg, const std::string& text, double least, bool whole = false) {
  const std::optional<double> v = whole_text_number(text);
  if (!v || !(*v >= least) || (whole && (*v != std::floor(*v) || *v > 1e9)))
    fail(ErrorCode::invalid_argument, "bench_attention: {} {}: expected a {}number, at least {}", arg, text,
         whole ? "whole " : "", least);
  return *v;
}

int run(int argc, char** argv) {
  std::string kernel_name = "auto", dir = "bench_attention_out", shapes_arg = "cogvideox,wan,opensora,hunyuan";
  int runs = 10;
  double warmup_ms = kWarmupMs, settle_ms = kSettleMs;
  bool write_masks = true;
  std::vector<int> block_qs = {128};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(ErrorCode::invalid_argument, "bench_attention: {} needs a value", a);
      return argv[++i];
    };
    if (a == "--kernel") kernel_name = value();
    else if (a == "--dir") dir = value();
    else if (a == "--shapes") shapes_arg = value();
    else if (a == "--runs") runs = static_cast<int>(number(a, value(), 1, true));
    else if (a == "--warmup-ms") warmup_ms = number(a, value(), 0);
    else if (a == "--settle-ms") settle_ms = number(a, value(), 0);
    else if (a == "--no-masks") write_masks = false;
    else if (a == "--block-q") block_qs = parse_block_qs(value());
    else fail(ErrorCode::invalid_argument, "bench_attention: unknown argument {}", a);
  }
  const FlashKernel kernel = kernel_name == "sm80" ? FlashKernel::sm80
                             : kernel_name == "sm90" ? FlashKernel::sm90
                                                     : FlashKernel::automatic;
  VDIT_CHECK(flash_kernel_available(kernel, Device::cuda()), ErrorCode::unsupported,
             "bench_attention: kernel {} is not available here", kernel_name);
  cudaDeviceProp prop{};
  cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s, %d SMs, L2 %d MB; kernel %s; median of %d runs\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, kernel_name.c_str(), runs);

  std::filesystem::create_directories(dir);
  std::vector<Result> results;
  for (const BenchShape& shape : kShapes) {
    if (("," + shapes_arg + ",").find("," + shape.name + ",") == std::string::npos) continue;
    VideoLayout layout;
    layout.frames = shape.frames;
    layout.height = shape.height;
    layout.width = shape.width;
    const int64_t S = layout.tokens(), H = shape.heads, D = shape.dim;
    const Shape qkv_shape{1, S, H, D};
    const size_t set_bytes = 3 * static_cast<size_t>(S * H * D) * 2;
    // Rotate input sets when one set would stay in L2 between runs.
    const int sets = set_bytes < 2 * static_cast<size_t>(prop.l2CacheSize) ? 3 : 1;
    std::vector<std::array<Tensor, 3>> inputs(sets);
    for (int s = 0; s < sets; ++s)
      for (int i = 0; i < 3; ++i) inputs[s][i] = random_device_tensor(qkv_shape, DType::bf16, 3 * s + i + 1);
    const Tensor out = Tensor::empty(qkv_shape, DType::bf16, Device::cuda());
    const double dense_flop = 4.0 * S * S * D * H;
    const int warmup = dense_flop > 5e13 ? 1 : 3;
    // Short shapes (calls of a few ms) take kShortShapeRuns x the runs: over 10 runs, one CSR timed
    // as three rows of one call spread 2.68-3.07 ms; over 50, 2.75-2.86.
    const int shape_runs = dense_flop > 5e13 ? runs : kShortShapeRuns * runs;

    std::vector<std::pair<std::string, Tensor>> mask_tensors;
    std::vector<std::tuple<std::string, std::vector<Pattern>, int>> rows;  // name, patterns, query block
    for (const int block_q : block_qs) {
      if (block_q != 128 && D != 64) continue;
      for (const auto& [pattern, patterns] : bench_patterns(H))
        if (block_q == 128) rows.emplace_back(pattern, patterns, block_q);
        else if (!patterns.empty()) rows.emplace_back(pattern + "@" + std::to_string(block_q), patterns, block_q);
    }
    const size_t first_row = results.size();  // the shape's dense row
    for (const auto& [name, patterns, block_q] : rows) {
      BlockMask mask;
      GpuBlockMask gpu_mask;
      double density = 1.0;
      if (!patterns.empty()) {
        mask = build_block_mask(layout, patterns, block_q);
        density = mask.density();
        gpu_mask = upload_block_mask(mask);
        if (write_masks) {
          mask_tensors.push_back({name + ".row_offsets", csr_tensor(mask.row_offsets)});
          mask_tensors.push_back({name + ".key_blocks",
                                  csr_tensor(std::vector<int64_t>(mask.key_blocks.begin(), mask.key_blocks.end()))});
        }
      }
      // The row alone, back to back as a user runs it and as the peers are timed; then a sparse row
      // in turn with the dense call, for the fraction of dense at one moment's clock.
      const GpuBlockMask* row_mask = patterns.empty() ? nullptr : &gpu_mask;
      // (The shape's first row, dense, after --settle-ms of calls: see kSettleMs.)
      const double ms = time_attention_cuda(inputs, out, row_mask, kernel, shape_runs, warmup,
                                            results.size() == first_row ? settle_ms : warmup_ms)
                            .ms;
      double turn_dense_ms = 0, turn_ms = 0;
      if (row_mask) {
        const std::vector<AttentionTiming> t = time_attention_cuda(
            inputs, out, std::vector<const GpuBlockMask*>{nullptr, row_mask}, kernel, shape_runs, warmup, warmup_ms);
        turn_dense_ms = t.front().ms;
        turn_ms = t.back().ms;
      }
      const double dense_tflops = dense_flop / (ms * 1e-3) / 1e12;
      results.push_back({shape.name, name, kernel_name, S, H, D, density, ms, dense_tflops, dense_tflops * density,
                         turn_dense_ms, turn_ms});
      const Result& r = results.back();
      std::printf("%-10s %-26s density %.3f  %9.3f ms  dense-eq %7.1f  effective %6.1f TFLOP/s  %5.1f%% of dense "
                  "in turn (dense %.3f ms, row %.3f ms)\n",
                  r.shape.c_str(), r.pattern.c_str(), r.density, r.ms, r.dense_tflops, r.effective_tflops,
                  100.0 * r.of_dense(), r.turn_dense_ms, r.turn_ms);
      std::fflush(stdout);
    }
    if (first_row < results.size() && results[first_row].pattern == "dense") {
      // The dense call alone again, after the shape's rows: how far the clock drifted since its first timing.
      Result& dense = results[first_row];
      dense.ms_again = time_attention_cuda(inputs, out, nullptr, kernel, shape_runs, warmup, warmup_ms).ms;
      std::printf("%-10s dense again, after the rows: %.3f ms (%.1f%% of the first timing's time)\n",
                  shape.name.c_str(), dense.ms_again, 100.0 * dense.ms_again / dense.ms);
      std::fflush(stdout);
    }
    if (write_masks) {
      const std::map<std::string, std::string> meta = {
          {"tokens", std::to_string(S)}, {"heads", std::to_string(H)}, {"head_dim", std::to_string(D)},
          {"frames", std::to_string(shape.frames)}, {"height", std::to_string(shape.height)},
          {"width", std::to_string(shape.width)}, {"block", "128"}};  // (a row's "@N": N x 128)
      write_safetensors(dir + "/" + shape.name + ".masks.safetensors", mask_tensors, meta, true);
    }
  }

  nlohmann::json doc = nlohmann::json::array();
  for (const Result& r : results) {
    doc.push_back({{"shape", r.shape}, {"pattern", r.pattern}, {"kernel", r.kernel}, {"tokens", r.tokens},
                   {"heads", r.heads}, {"head_dim", r.dim}, {"density", r.density}, {"ms", r.ms},
                   {"dense_tflops", r.dense_tflops}, {"effective_tflops", r.effective_tflops},
                   {"of_dense", r.of_dense()}, {"in_turn_ms", {r.turn_dense_ms, r.turn_ms}}});
    if (r.pattern == "dense") doc.back()["ms_again"] = r.ms_again;
  }
  bench::write_json_file(doc, dir + "/ours_" + kernel_name + ".json", 1, "bench_attention");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
