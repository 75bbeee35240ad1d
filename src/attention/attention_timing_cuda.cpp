#include "attention/attention_timing.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>

#include "core/half.h"

namespace vdit {
namespace {

void cuda_ok(cudaError_t err, const char* what) {
  VDIT_CHECK(err == cudaSuccess, ErrorCode::cuda, "GPU timing: {}: {}", what, cudaGetErrorString(err));
}

}  // namespace

Tensor random_device_tensor(const Shape& shape, DType dtype, uint64_t seed, Device device) {
  VDIT_CHECK(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16, ErrorCode::invalid_argument,
             "random_device_tensor: {} is not a float dtype", dtype_name(dtype));
  Tensor t = Tensor::empty(shape, dtype, device);
  const int64_t n = t.numel(), block = std::min<int64_t>(n, int64_t{16} << 20);
  if (n == 0) return t;
  const size_t size = dtype_size(dtype);
  Tensor host = Tensor::empty({block}, dtype);
  uint64_t state = 0x5eed ^ (seed * 0x9e3779b97f4a7c15ull);
  for (int64_t i = 0; i < block; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const float x = (2.0f * static_cast<float>(state >> 40) * 0x1p-24f - 1.0f) * 1.7320508f;
    char* at = static_cast<char*>(host.raw_data()) + i * size;
    if (dtype == DType::f32) {
      std::memcpy(at, &x, 4);
    } else {
      const uint16_t bits = dtype == DType::bf16 ? f32_to_bf16(x) : f32_to_f16(x);
      std::memcpy(at, &bits, 2);
    }
  }
  const Tensor values = host.to(device);
  const char* src = static_cast<const char*>(values.raw_data());
  char* dst = static_cast<char*>(t.raw_data());
  const int64_t shift = static_cast<int64_t>(seed * 7919 % static_cast<uint64_t>(block));
  for (int64_t at = 0; at < n;) {
    const int64_t from = at == 0 ? shift : 0, count = std::min(block - from, n - at);
    cuda_ok(cudaMemcpy(dst + at * size, src + from * size, count * size, cudaMemcpyDeviceToDevice), "fill");
    at += count;
  }
  return t;
}

double median_gpu_ms(const std::function<void()>& call, int runs, int warmup) {
  VDIT_CHECK(runs >= 1 && warmup >= 0, ErrorCode::invalid_argument, "GPU timing: {} runs, {} warm-up calls", runs,
             warmup);
  for (int i = 0; i < warmup; ++i) call();
  cuda_ok(cudaDeviceSynchronize(), "warm-up");
  cudaEvent_t start, stop;
  cuda_ok(cudaEventCreate(&start), "cudaEventCreate");
  cuda_ok(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    cuda_ok(cudaEventRecord(start), "cudaEventRecord");
    call();
    cuda_ok(cudaEventRecord(stop), "cudaEventRecord");
    cuda_ok(cudaEventSynchronize(stop), "timed call");
    float ms = 0;
    cuda_ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

AttentionTiming time_attention_cuda(const std::vector<std::array<Tensor, 3>>& inputs, const Tensor& out,
                                    const GpuBlockMask* mask, FlashKernel kernel, int runs, int warmup,
                                    double warmup_ms) {
  return time_attention_cuda(inputs, out, std::vector<const GpuBlockMask*>{mask}, kernel, runs, warmup, warmup_ms)[0];
}

std::vector<AttentionTiming> time_attention_cuda(const std::vector<std::array<Tensor, 3>>& inputs, const Tensor& out,
                                                 const std::vector<const GpuBlockMask*>& masks, FlashKernel kernel,
                                                 int runs, int warmup, double warmup_ms) {
  VDIT_CHECK(!inputs.empty() && !masks.empty() && runs >= 1 && warmup >= 0, ErrorCode::invalid_argument,
             "attention timing: {} input sets, {} masks, {} runs, {} warm-up calls", inputs.size(), masks.size(), runs,
             warmup);
  const size_t n = masks.size();
  std::vector<cudaEvent_t> events(2 * runs * n);
  for (auto& e : events) cuda_ok(cudaEventCreate(&e), "cudaEventCreate");
  std::vector<AttentionTiming> timings(n);
  size_t calls = 0;
  auto call = [&](size_t m) {
    const auto& in = inputs[calls++ % inputs.size()];
    timings[m].kernel = attention_cuda(in[0], in[1], in[2], masks[m], 0.0f, out, nullptr, nullptr, kernel);
  };
  for (int i = 0; i < warmup; ++i)
    for (size_t m = 0; m < n; ++m) call(m);
  if (warmup_ms > 0.0) {  // one timed round sizes the rest of the warm-up
    cuda_ok(cudaEventRecord(events[0]), "cudaEventRecord");
    for (size_t m = 0; m < n; ++m) call(m);
    cuda_ok(cudaEventRecord(events[1]), "cudaEventRecord");
    cuda_ok(cudaEventSynchronize(events[1]), "attention warm-up");
    float once = 0;
    cuda_ok(cudaEventElapsedTime(&once, events[0], events[1]), "cudaEventElapsedTime");
    const int more = static_cast<int>(std::min(10000.0, warmup_ms / std::max(once, 1e-3f)));
    for (int i = 0; i < more; ++i)
      for (size_t m = 0; m < n; ++m) call(m);
  }
  for (int i = 0; i < runs; ++i)
    for (size_t m = 0; m < n; ++m) {
      cuda_ok(cudaEventRecord(events[2 * (i * n + m)]), "cudaEventRecord");
      call(m);
      cuda_ok(cudaEventRecord(events[2 * (i * n + m) + 1]), "cudaEventRecord");
    }
  cuda_ok(cudaDeviceSynchronize(), "attention run");
  for (size_t m = 0; m < n; ++m) {
    std::vector<double> ms(runs);
    for (int i = 0; i < runs; ++i) {
      float t = 0;
      cuda_ok(cudaEventElapsedTime(&t, events[2 * (i * n + m)], events[2 * (i * n + m) + 1]), "cudaEventElapsedTime");
      ms[i] = t;
    }
    std::sort(ms.begin(), ms.end());
    timings[m].ms = runs % 2 ? ms[runs / 2] : 0.5 * (ms[runs / 2 - 1] + ms[runs / 2]);
  }
  for (auto& e : events) cudaEventDestroy(e);
  return timings;
}

}  // namespace vdit
