// The GEMMs of the model benchmark, alone: vdit's linear (cuBLASLt, algorithm picked by timing on
// first use, bias and GELU epilogues fused) at the product shapes of Wan2.1-1.3B (480p, 81 frames)
// and CogVideoX-5B (720x480, 49 frames); bench/gemm_peers.py times PyTorch's F.linear (cuBLAS) on
// the same shapes. Random bf16 inputs, CUDA events, median of --runs after --warmup.
//
// Usage: bench_gemm [--shapes M:K:N[:gelu][:nobias],...] [--runs 20] [--warmup 3] [--json FILE]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "attention/attention_timing.h"
#include "json_file.h"
#include "ops/ops.h"

namespace {

using namespace vdit;

struct Product {
  int64_t m, k, n;
  bool gelu = false, bias = true;
  std::string name() const {
    return std::to_string(m) + ":" + std::to_string(k) + ":" + std::to_string(n) + (gelu ? ":gelu" : "") +
           (bias ? "" : ":nobias");
  }
};

const char* kDefaultShapes =
    "32760:1536:1536,32760:1536:8960:gelu,32760:8960:1536,"    // Wan2.1-1.3B: attention, FFN in, FFN out
    "17776:3072:3072,17776:3072:12288:gelu,17776:12288:3072";  // CogVideoX-5B

std::vector<Product> parse_shapes(const std::string& text) {
  std::vector<Product> out;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) {
    std::stringstream fields(item);
    std::string f;
    std::vector<std::string> parts;
    while (std::getline(fields, f, ':')) parts.push_back(f);
    VDIT_CHECK(parts.size() >= 3, ErrorCode::invalid_argument, "bench_gemm: --shapes item '{}' is not M:K:N", item);
    Product p{std::stoll(parts[0]), std::stoll(parts[1]), std::stoll(parts[2])};
    for (size_t i = 3; i < parts.size(); ++i) {
      if (parts[i] == "gelu") p.gelu = true;
      else if (parts[i] == "nobias") p.bias = false;
      else fail(ErrorCode::invalid_argument, "bench_gemm: unknown flag '{}' in '{}'", parts[i], item);
    }
    out.push_back(p);
  }
  return out;
}

int run(int argc, char** argv) {
  std::string shapes = kDefaultShapes, json_path;
  int runs = 20, warmup = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    VDIT_CHECK(i + 1 < argc, ErrorCode::invalid_argument, "bench_gemm: {} needs a value", a);
    if (a == "--shapes") shapes = argv[++i];
    else if (a == "--runs") runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--warmup") warmup = std::max(0, std::atoi(argv[++i]));
    else if (a == "--json") json_path = argv[++i];
    else fail(ErrorCode::invalid_argument, "bench_gemm: unknown argument {}", a);
  }
  const Device gpu = Device::cuda(0);
  const BlasHandle blas(gpu);
  const ExecContext ctx{gpu, nullptr, 0, blas.get()};
  nlohmann::json report = nlohmann::json::array();
  for (const Product& p : parse_shapes(shapes)) {
    const Tensor x = random_device_tensor({p.m, p.k}, DType::bf16, 1, gpu);
    const Tensor w = random_device_tensor({p.n, p.k}, DType::bf16, 2, gpu);
    const Tensor b = p.bias ? random_device_tensor({p.n}, DType::bf16, 3, gpu) : Tensor();
    const Activation act = p.gelu ? Activation::gelu_tanh : Activation::none;
    const double median = median_gpu_ms([&] { (void)linear(ctx, x, w, b, act); }, runs, warmup);
    const double tflops = 2.0 * p.m * p.k * p.n / (median * 1e-3) / 1e12;
    std::printf("%-26s %8.3f ms  %6.1f TFLOP/s\n", p.name().c_str(), median, tflops);
    report.push_back({{"shape", p.name()}, {"ms", median}, {"tflops", tflops}});
  }
  if (!json_path.empty()) bench::write_json_file(report, json_path, 2, "bench_gemm");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm: %s\n", e.what());
    return 1;
  }
}
