// Times the norm passes of the model forwards (bf16, the Wan2.1-1.3B and CogVideoX-5B video token
// shapes) against the device-to-device copy bandwidth measured in the same call: each pass's bytes
// that must cross HBM (rows read and written; the per-item modulation, weights and RoPE table are
// not counted) over its median time. CUDA events, warm-up, median of --runs. Prints a markdown table.
//
// Usage: bench_norms [--shapes wan,cogvideox] [--runs N]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "attention/attention_timing.h"
#include "ops/ops.h"

namespace {

using namespace vdit;

struct NormShape {
  std::string name;
  int64_t frames, height, width;  // the video's patch grid: tokens = frames * height * width
  int64_t dim, heads;
  std::array<int, 3> rope_axes;  // t, y, x: sum = dim / heads
};

const std::vector<NormShape> kShapes = {
    {"wan", 21, 30, 52, 1536, 12, {44, 42, 42}},       // Wan2.1-T2V-1.3B 480p 81 frames
    {"cogvideox", 13, 30, 45, 3072, 48, {16, 24, 24}},  // CogVideoX-5B 720x480 49 frames (video tokens)
};

struct Row {
  std::string shape, op;
  double ms = 0, bytes = 0;
};

Tensor random(const Shape& shape, uint64_t seed) { return random_device_tensor(shape, DType::bf16, seed); }

std::vector<double> positions(int64_t n) {
  std::vector<double> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = static_cast<double>(i);
  return p;
}

std::vector<Row> bench_shape(const ExecContext& ctx, const NormShape& s, int runs) {
  const int64_t tokens = s.frames * s.height * s.width, head_dim = s.dim / s.heads;
  const Shape rows{1, tokens, s.dim};
  const double row_bytes = 2.0 * static_cast<double>(tokens * s.dim);  // one bf16 tensor of the rows
  Tensor x = random(rows, 1), y = random(rows, 2), out = random(rows, 3);
  const Tensor gate = random(Shape{1, s.dim}, 4), shift = random(Shape{1, s.dim}, 5), scale = random(Shape{1, s.dim}, 6);
  const Tensor weight = random(Shape{s.dim}, 7), bias = random(Shape{s.dim}, 8);
  const Tensor head_weight = random(Shape{head_dim}, 9), head_bias = random(Shape{head_dim}, 10);
  const RopeTable rope = rope_table_3d(ctx, s.rope_axes, {positions(s.frames), positions(s.height), positions(s.width)});
  const float eps = 1e-6f;

  std::vector<Row> result;
  auto time = [&](const std::string& op, double bytes, const std::function<void()>& call) {
    result.push_back({s.name, op, median_gpu_ms(call, runs), bytes});
  };
  time("copy (device to device)", 2 * row_bytes, [&] {
    if (cudaMemcpyAsync(out.raw_data(), x.raw_data(), x.nbytes(), cudaMemcpyDeviceToDevice) != cudaSuccess)
      fail(ErrorCode::cuda, "bench_norms: copy failed");
  });
  // Read x and y, write x and the norm: four tensors of rows.
  time("gated_residual_add_layer_norm, modulated", 4 * row_bytes,
       [&] { gated_residual_add_layer_norm_into(ctx, out, x, y, gate, weight, bias, eps, shift, scale); });
  time("gated_residual_add_layer_norm, affine", 4 * row_bytes,
       [&] { gated_residual_add_layer_norm_into(ctx, out, x, y, gate, weight, bias, eps); });
  time("rms_norm", 2 * row_bytes, [&] { (void)rms_norm(ctx, x, weight, eps); });
  if (s.name == "wan") {
    time("rms_norm_rope", 2 * row_bytes, [&] { (void)rms_norm_rope(ctx, x, weight, eps, s.heads, rope); });
  } else {
    const Tensor heads = x.view(Shape{1, tokens, s.heads, head_dim});
    time("layer_norm_rope", 2 * row_bytes, [&] { (void)layer_norm_rope(ctx, heads, head_weight, head_bias, eps, rope); });
  }
  return result;
}

int run(int argc, char** argv) {
  std::vector<std::string> names = {"wan", "cogvideox"};
  int runs = 50;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(ErrorCode::invalid_argument, "bench_norms: {} needs a value", arg);
      return argv[++i];
    };
    if (arg == "--shapes") {
      names.clear();
      const std::string list = value();
      for (size_t at = 0; at <= list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        names.push_back(list.substr(at, comma - at));
        at = comma + 1;
      }
    } else if (arg == "--runs") {
      runs = std::stoi(value());
      if (runs < 1) fail(ErrorCode::invalid_argument, "bench_norms: --runs must be at least 1");
    } else {
      fail(ErrorCode::invalid_argument, "bench_norms: unknown argument {} (expected --shapes, --runs)", arg);
    }
  }
  const ExecContext ctx{Device::cuda()};
  std::vector<Row> rows;
  for (const std::string& name : names) {
    const NormShape* shape = nullptr;
    for (const NormShape& s : kShapes)
      if (s.name == name) shape = &s;
    if (!shape) fail(ErrorCode::invalid_argument, "bench_norms: unknown shape '{}' (expected wan, cogvideox)", name);
    for (Row& r : bench_shape(ctx, *shape, runs)) rows.push_back(r);
  }
  std::printf("\n| shape | op | us | GB/s (rows read + written) | %% of copy |\n| --- | --- | --- | --- | --- |\n");
  double copy_gbs = 0;
  for (const Row& r : rows) {
    const double gbs = r.bytes / r.ms * 1e-6;
    if (r.op.rfind("copy", 0) == 0) copy_gbs = gbs;
    std::printf("| %s | %s | %.1f | %.0f | %.0f%% |\n", r.shape.c_str(), r.op.c_str(), 1e3 * r.ms, gbs,
                100 * gbs / copy_gbs);
  }
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
