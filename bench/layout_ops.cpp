// Times the GPU layout ops at the shapes of DESIGN.md section 8 (bf16): the token-major gather of
// Q, K, V (one launch) and the scatter of O against the device-to-device copy bandwidth measured
// here (bytes read + written), the mask builder, and the profiler, with the profiled layer's own
// sparse attention (vdit's flash kernel on the profiled mask) for scale, and against the time to
// read K and V once at the copy bandwidth measured here (the profiler's floor). CUDA events,
// warm-up, median of --runs. Prints a markdown table last.
//
// Usage: bench_layout_ops [--shapes wan,wan-cfg,cogvideox,opensora,hunyuan] [--runs N] [--no-attention]
//                         [--blocks N]   (the profiler's partial-output blocks, instead of one an SM)
//                         [--batch N]    (batch items of every shape, instead of its own)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "attention/attention_timing.h"
#include "vdit/attention.h"

namespace {

using namespace vdit;

struct BenchShape {
  std::string name;
  VideoLayout layout;
  int batch, heads, dim;
};

const std::vector<BenchShape> kShapes = {
    {"wan", {21, 30, 52, 0, TextPosition::none}, 1, 12, 128},           // Wan2.1-1.3B 480p
    {"wan-cfg", {21, 30, 52, 0, TextPosition::none}, 2, 12, 128},       // with guidance: 2 items
    {"cogvideox", {13, 30, 45, 226, TextPosition::first}, 2, 48, 64},   // CogVideoX-5B
    {"opensora", {24, 45, 80, 0, TextPosition::none}, 1, 24, 96},       // Open-Sora-Plan 1.2
    {"hunyuan", {33, 45, 80, 256, TextPosition::last}, 1, 24, 128},     // HunyuanVideo 720p
};

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail(ErrorCode::cuda, "bench_layout_ops: {}: {}", what, cudaGetErrorString(err));
}

Tensor gpu_u8(const std::vector<uint8_t>& values) {
  Tensor host = Tensor::empty(Shape{static_cast<int64_t>(values.size())}, DType::u8);
  std::copy(values.begin(), values.end(), host.data<uint8_t>());
  return host.to(Device::cuda());
}

Tensor gpu_i32(const std::vector<int32_t>& values) {
  Tensor host = Tensor::empty(Shape{static_cast<int64_t>(values.size())}, DType::i32);
  std::copy(values.begin(), values.end(), host.data<int32_t>());
  return host.to(Device::cuda());
}

struct Row {
  std::string shape;
  double copy_gbs = 0, gather_ms = 0, gather_gbs = 0, scatter_ms = 0, scatter_gbs = 0;
  double mask_us = 0, density = 0, profile_us = 0, attention_ms = -1, token_major_ms = -1;
  int blocks = 0;
  std::string choices;
};

Row bench_shape(const BenchShape& s, int runs, bool attention, int blocks) {
  Row row;
  row.shape = s.name;
  const VideoLayout& layout = s.layout;
  const Shape shape{s.batch, layout.tokens(), s.heads, s.dim};
  std::array<Tensor, 3> x, y;
  for (int i = 0; i < 3; ++i) {  // random, never zeros
    x[i] = random_device_tensor(shape, DType::bf16, 11 + i);
    y[i] = random_device_tensor(shape, DType::bf16, 17 + i);
  }
  const double tensor_bytes = static_cast<double>(x[0].nbytes());

  // Copy bandwidth: the same bytes as the gather, as three device-to-device copies.
  const double copy_ms = median_gpu_ms([&] {
    for (int i = 0; i < 3; ++i) cuda_ok(cudaMemcpyAsync(y[i].raw_data(), x[i].raw_data(), x[i].nbytes(),
                                                        cudaMemcpyDeviceToDevice), "copy");
  }, runs);
  row.copy_gbs = 2 * 3 * tensor_bytes / copy_ms * 1e-6;

  // Half the heads temporal (permuted), per (batch item, head) as the profiler decides.
  std::vector<uint8_t> flags(int64_t{s.batch} * s.heads);
  for (size_t i = 0; i < flags.size(); ++i) flags[i] = i % 2;
  const Tensor permute = gpu_u8(flags);
  row.gather_ms = median_gpu_ms([&] { gather_to_token_major_gpu(x, y, layout, permute); }, runs);
  row.gather_gbs = 2 * 3 * tensor_bytes / row.gather_ms * 1e-6;
  row.scatter_ms = median_gpu_ms([&] {
    scatter_from_token_major_gpu(std::span<const Tensor>(&y[0], 1), std::span<const Tensor>(&x[0], 1), layout, permute);
  }, runs);
  row.scatter_gbs = 2 * tensor_bytes / row.scatter_ms * 1e-6;

  // Profiler, then the mask of its choices, then the layer's sparse attention on that mask.
  const std::vector<Pattern> candidates = {Pattern::spatial(0.15), Pattern::temporal(0.15)};
  const GpuPatterns patterns = make_gpu_patterns(layout, candidates);
  const ProfileOptions options;
  GpuProfile profile = allocate_gpu_profile(patterns, s.batch, s.heads, s.dim, x[0].dtype(), options);
  if (blocks > 0) set_gpu_profile_blocks(profile, blocks);
  row.blocks = profile.blocks;
  row.profile_us =
      1e3 * median_gpu_ms([&] { profile_heads_gpu(x[0], x[1], x[2], patterns, options, profile); }, runs);
  const ProfileResult chosen = profile.to_host();
  int spatial = 0, temporal = 0;
  for (int c : chosen.choice) (c == 1 ? temporal : spatial)++;
  row.choices = std::to_string(spatial) + "s/" + std::to_string(temporal) + "t";

  // Mask build from a fixed mix (half spatial, half temporal), so every shape builds the same work.
  std::vector<int32_t> codes(int64_t{s.batch} * s.heads);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<int32_t>(i % 2);
  const Tensor gpu_codes = gpu_i32(codes);
  const GpuBlockMask mask = allocate_gpu_block_mask(patterns, static_cast<int>(codes.size()));
  row.mask_us = 1e3 * median_gpu_ms([&] { build_block_mask_gpu(patterns, gpu_codes, mask); }, runs);
  row.density = mask.to_host().density();

  if (attention) {
    try {
      const float scale = 1.0f / std::sqrt(static_cast<float>(s.dim));
      row.attention_ms =
          median_gpu_ms([&] { attention_cuda(y[0], y[1], y[2], &mask, scale, x[0], nullptr, nullptr); },
                        std::max(3, runs / 10), 1);
      // As the model runs it on sm90: the temporal slots read from their token-major copies (y) and
      // stored back frame-major, the spatial slots read from the frame-major tensors (x).
      if (flash_kernel_available(FlashKernel::sm90, Device::cuda())) {
        const Tensor out = Tensor::empty(shape, DType::bf16, Device::cuda());
        const TokenMajorSlots slots{permute, layout, y.data()};
        row.token_major_ms = median_gpu_ms([&] {
          attention_cuda(x[0], x[1], x[2], &mask, scale, out, nullptr, nullptr, FlashKernel::sm90, &slots);
        }, std::max(3, runs / 10), 1);
      }
    } catch (const Error& e) {
      std::printf("%s: attention unavailable: %s\n", s.name.c_str(), e.what());
    }
  }
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 50;
  bool attention = true;
  int blocks = 0, batch = 0;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--shapes" && i + 1 < argc) only = "," + std::string(argv[++i]) + ",";
    else if (a == "--no-attention") attention = false;
    else if (a == "--blocks" && i + 1 < argc) blocks = std::max(1, std::atoi(argv[++i]));
    else if (a == "--batch" && i + 1 < argc) batch = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_layout_ops [--shapes a,b] [--runs N] [--no-attention] [--blocks N] [--batch N]\n");
      return 2;
    }
  }
  cudaDeviceProp prop{};
  cuda_ok(cudaGetDeviceProperties(&prop, 0), "device properties");
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  std::vector<Row> rows;
  std::vector<BenchShape> shapes = kShapes;
  for (BenchShape& s : shapes)
    if (batch > 0) s.batch = batch;
  for (const BenchShape& s : shapes) {
    if (!only.empty() && only.find("," + s.name + ",") == std::string::npos) continue;
    try {
      rows.push_back(bench_shape(s, runs, attention, blocks));
      const Row& r = rows.back();
      std::printf("%s done: gather %.3f ms, profile %.1f us (%d blocks), mask %.1f us\n", s.name.c_str(),
                  r.gather_ms, r.profile_us, r.blocks, r.mask_us);
      std::fflush(stdout);
    } catch (const Error& e) {
      std::printf("%s failed: %s\n", s.name.c_str(), e.what());
    }
  }
  std::printf("\n| shape | B x S x H x D | copy GB/s | gather QKV ms | GB/s | %% copy | scatter O ms | GB/s | %% copy "
              "| mask build us | density | profile us | K+V read us | choices | sparse attn ms | profile %% attn | attn ms, temporal slots token-major |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const BenchShape& s = *std::find_if(shapes.begin(), shapes.end(), [&](const BenchShape& b) { return b.name == r.shape; });
    char attention_ms[32] = "n/a", share[32] = "n/a", token_major_ms[32] = "n/a";
    if (r.token_major_ms > 0) std::snprintf(token_major_ms, sizeof token_major_ms, "%.3f", r.token_major_ms);
    if (r.attention_ms > 0) {
      std::snprintf(attention_ms, sizeof attention_ms, "%.3f", r.attention_ms);
      std::snprintf(share, sizeof share, "%.1f%%", 100 * r.profile_us * 1e-3 / r.attention_ms);
    }
    // K and V bytes once, at the copy rate (which counts bytes read plus written).
    const double read_us = 2.0 * 2 * s.batch * static_cast<double>(s.layout.tokens()) * s.heads * s.dim / r.copy_gbs * 1e-3;
    std::printf("| %s | %d x %lld x %d x %d | %.0f | %.3f | %.0f | %.0f%% | %.3f | %.0f | %.0f%% | %.1f | %.3f | %.1f | %.1f "
                "| %s | %s | %s | %s |\n",
                r.shape.c_str(), s.batch, static_cast<long long>(s.layout.tokens()), s.heads, s.dim, r.copy_gbs,
                r.gather_ms, r.gather_gbs, 100 * r.gather_gbs / r.copy_gbs, r.scatter_ms, r.scatter_gbs,
                100 * r.scatter_gbs / r.copy_gbs, r.mask_us, r.density, r.profile_us, read_us, r.choices.c_str(),
                attention_ms, share, token_major_ms);
  }
  return 0;
}
