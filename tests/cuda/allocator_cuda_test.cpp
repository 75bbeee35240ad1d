// The CUDA caching allocator behind Tensor::empty (core/allocator_cuda.h): freed memory is reused,
// memory goes back to the cache when the last tensor viewing it dies, the cache stays bounded in a
// loop, memory freed under pending work on another stream is not reused early, and running out of
// memory is an error that names the device. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <chrono>
#include <vector>

#include "core/allocator_cuda.h"
#include "ops/ops.h"

namespace vdit {
namespace {

const Device kGpu = Device::cuda(0);
constexpr size_t kMiB = size_t{1} << 20;

class AllocatorCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA GPU";
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
};

TEST_F(AllocatorCuda, FreedMemoryIsReused) {
  const void* first = nullptr;
  {
    const Tensor t = Tensor::empty({int64_t{64} << 20}, DType::u8, kGpu);
    first = t.raw_data();
  }
  const size_t reserved = cuda_memory_stats(kGpu).reserved;
  const Tensor again = Tensor::empty({int64_t{64} << 20}, DType::u8, kGpu);
  EXPECT_EQ(again.raw_data(), first);
  EXPECT_EQ(cuda_memory_stats(kGpu).reserved, reserved) << "nothing new reserved from the driver";
}

TEST_F(AllocatorCuda, MemoryReturnsWhenTheLastViewDies) {
  const size_t before = cuda_memory_stats(kGpu).used;
  Tensor t = Tensor::empty({32 * kMiB / 4}, DType::f32, kGpu);
  Tensor view = t.slice(0, 10, 20);
  const size_t with_tensor = cuda_memory_stats(kGpu).used;
  EXPECT_GE(with_tensor, before + 32 * kMiB);
  t = Tensor();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cuda_memory_stats(kGpu).used, with_tensor) << "a view keeps the buffer";
  view = Tensor();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cuda_memory_stats(kGpu).used, before);
}

TEST_F(AllocatorCuda, PeakStaysBoundedInALoop) {
  reset_cuda_memory_peaks(kGpu);
  const CudaMemoryStats start = cuda_memory_stats(kGpu);
  size_t free_before = 0, free_after = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
  const ExecContext ctx{kGpu};
  const auto begin = std::chrono::steady_clock::now();
  constexpr int kIterations = 500;
  for (int i = 0; i < kIterations; ++i) {
    // At most 48 MiB + 24 MiB + 48 MiB live at once, of sizes that change with i.
    const int64_t n = (int64_t{12} << 20) - (i % 7) * 4096;
    const Tensor a = Tensor::zeros({n}, DType::f32, kGpu);
    const Tensor b = Tensor::empty({n / 2}, DType::bf16, kGpu);
    const Tensor c = add(ctx, a, a);
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - begin).count();
  ASSERT_EQ(cudaMemGetInfo(&free_after, &total), cudaSuccess);
  const CudaMemoryStats end = cuda_memory_stats(kGpu);
  std::printf("[ allocator ] %d iterations of 3 tensors: %.1f us each; used peak %.1f MiB above the start, "
              "reserved peak %.1f MiB, device free memory %.1f MiB lower after\n",
              kIterations, us / kIterations, (end.used_peak - start.used) / double(kMiB),
              end.reserved_peak / double(kMiB), (double(free_before) - double(free_after)) / kMiB);
  EXPECT_LE(end.used_peak, start.used + 130 * kMiB);
  EXPECT_LE(end.reserved_peak, start.reserved + 256 * kMiB);
  EXPECT_EQ(end.used, start.used);
  EXPECT_LE(double(free_before) - double(free_after), 256.0 * kMiB);
}

// Inputs of an op on a blocking stream die before the op has run; new tensors that may reuse their
// memory are overwritten on the default stream at once. The op must still read its inputs.
TEST_F(AllocatorCuda, FreeIsOrderedAfterWorkOnABlockingStream) {
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  const ExecContext ctx{kGpu, stream};
  const int64_t n = int64_t{16} << 20;
  Tensor host = Tensor::empty({n}, DType::f32);
  for (int64_t i = 0; i < n; ++i) host.data<float>()[i] = static_cast<float>(i % 1000);
  std::vector<Tensor> outputs;
  for (int round = 0; round < 4; ++round) {
    Tensor a = host.to(kGpu), b = host.to(kGpu);
    outputs.push_back(add(ctx, add(ctx, a, b), a));  // 3 x input, queued on `stream`
    a = Tensor();
    b = Tensor();
    for (int k = 0; k < 4; ++k) {
      const Tensor scratch = Tensor::empty({n}, DType::f32, kGpu);
      ASSERT_EQ(cudaMemset(scratch.raw_data(), 0xff, scratch.nbytes()), cudaSuccess);  // NaNs
    }
  }
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  for (const Tensor& out : outputs) {
    const Tensor back = out.to(Device::cpu());
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) wrong += back.data<float>()[i] != 3.0f * static_cast<float>(i % 1000);
    EXPECT_EQ(wrong, 0);
  }
  outputs.clear();
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST_F(AllocatorCuda, OutOfMemoryNamesTheDeviceAndLeavesCudaUsable) {
  try {
    (void)Tensor::empty({int64_t{1} << 50}, DType::u8, kGpu);  // 1 PiB
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::cuda);
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("1125899906842624 bytes"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  const Tensor t = Tensor::zeros({1024}, DType::f32, kGpu);
  EXPECT_EQ(t.to(Device::cpu()).data<float>()[1023], 0.0f);
}

TEST_F(AllocatorCuda, ReleasingTheCacheKeepsLiveTensors) {
  const Tensor live = Tensor::zeros({kMiB}, DType::f32, kGpu);
  { const Tensor dead = Tensor::empty({int64_t{256} << 20}, DType::u8, kGpu); }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const size_t cached = cuda_memory_stats(kGpu).reserved;
  release_cuda_cache(kGpu);
  const CudaMemoryStats stats = cuda_memory_stats(kGpu);
  EXPECT_GE(stats.used, 4 * kMiB);
  EXPECT_LE(stats.reserved + 128 * kMiB, cached) << "the dead tensor's memory went back to the driver";
  EXPECT_EQ(live.to(Device::cpu()).data<float>()[7], 0.0f);
}

}  // namespace
}  // namespace vdit
