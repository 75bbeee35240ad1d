// The GPU token-major permutation against the CPU gather_to_token_major / scatter_from_token_major:
// bit for bit, for Q, K and V in one launch, f32/f16/bf16, head dims whose rows allow 16-, 8-, 4-
// and 2-byte vectors, text first/last/none, permute flags per head or per (batch item, head).
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

// Random bytes: the permutation moves bits, so any pattern (NaNs included) must survive.
Tensor random_bytes(const Shape& shape, DType dtype, uint64_t seed) {
  Tensor x = Tensor::empty(shape, dtype);
  auto* bytes = static_cast<uint8_t*>(x.raw_data());
  for (size_t i = 0; i < x.nbytes(); ++i) bytes[i] = static_cast<uint8_t>(test::next_random(seed));
  return x;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

Tensor gpu_flags(const std::vector<uint8_t>& flags) {
  Tensor host = Tensor::empty(Shape{static_cast<int64_t>(flags.size())}, DType::u8);
  std::copy(flags.begin(), flags.end(), host.data<uint8_t>());
  return host.to(Device::cuda());
}

Tensor poisoned_like(const Tensor& x) {
  Tensor t = Tensor::empty(x.shape(), x.dtype(), Device::cuda());
  EXPECT_EQ(cudaMemset(t.raw_data(), 0xa5, t.nbytes()), cudaSuccess);
  return t;
}

// The CPU oracle with per-slot flags: each batch item permuted with its own flags.
Tensor cpu_permute(const Tensor& x, const VideoLayout& layout, const std::vector<uint8_t>& flags, bool gather) {
  const int64_t batch = x.size(0), heads = x.size(2);
  if (static_cast<int64_t>(flags.size()) == heads)
    return gather ? gather_to_token_major(x, layout, flags) : scatter_from_token_major(x, layout, flags);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const size_t item = x.nbytes() / batch;
  for (int64_t b = 0; b < batch; ++b) {
    std::span<const uint8_t> f(flags.data() + b * heads, heads);
    Tensor xb = x.slice(0, b, b + 1);
    Tensor yb = gather ? gather_to_token_major(xb, layout, f) : scatter_from_token_major(xb, layout, f);
    std::memcpy(static_cast<uint8_t*>(out.raw_data()) + b * item, yb.raw_data(), item);
  }
  return out;
}

struct Case {
  VideoLayout layout;
  int64_t batch, heads, dim;
  DType dtype;
};

const Case kCases[] = {
    {{1, 1, 1, 0, TextPosition::none}, 1, 1, 128, DType::bf16},
    {{3, 4, 5, 0, TextPosition::none}, 2, 3, 64, DType::bf16},
    {{5, 3, 7, 11, TextPosition::first}, 2, 4, 96, DType::f16},
    {{7, 6, 6, 100, TextPosition::last}, 1, 5, 128, DType::bf16},
    {{4, 9, 13, 29, TextPosition::first}, 3, 2, 64, DType::f32},
    {{6, 5, 11, 3, TextPosition::last}, 2, 3, 4, DType::bf16},   // 8-byte rows
    {{2, 3, 3, 1, TextPosition::first}, 2, 3, 6, DType::bf16},   // 12-byte rows: 4-byte vectors
    {{3, 2, 5, 2, TextPosition::last}, 2, 2, 3, DType::f16},     // 6-byte rows: 2-byte vectors
    {{13, 30, 45, 226, TextPosition::first}, 1, 3, 64, DType::bf16},
    {{21, 30, 52, 0, TextPosition::none}, 1, 2, 128, DType::bf16},
};

TEST(PermuteGpu, QkvGatherAndScatterEqualCpuBitForBit) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 11;
  for (const Case& c : kCases) {
    const Shape shape{c.batch, c.layout.tokens(), c.heads, c.dim};
    for (bool per_slot : {false, true}) {
      std::vector<uint8_t> flags(per_slot ? c.batch * c.heads : c.heads);
      for (auto& f : flags) f = static_cast<uint8_t>(test::next_random(seed) % 3);  // 0, 1 or 2 (non-zero)
      if (!per_slot) flags[0] = 1;
      const Tensor permute = gpu_flags(flags);
      const std::string what = c.layout.to_string() + " " + shape.to_string() + " " + dtype_name(c.dtype) +
                               (per_slot ? " per slot" : " per head");
      for (bool gather : {true, false}) {
        std::array<Tensor, 3> host, gpu, out;
        for (int i = 0; i < 3; ++i) {
          host[i] = random_bytes(shape, c.dtype, test::next_random(seed));
          gpu[i] = host[i].to(Device::cuda());
          out[i] = poisoned_like(host[i]);
        }
        if (gather) gather_to_token_major_gpu(gpu, out, c.layout, permute);
        else scatter_from_token_major_gpu(gpu, out, c.layout, permute);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
        for (int i = 0; i < 3; ++i) {
          EXPECT_TRUE(same_bytes(out[i].to(Device::cpu()), cpu_permute(host[i], c.layout, flags, gather)))
              << what << (gather ? " gather" : " scatter") << " tensor " << i;
        }
      }
    }
  }
}

TEST(PermuteGpu, ScatterUndoesGatherForOneTensor) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout{9, 7, 10, 33, TextPosition::last};
  const Tensor x = random_bytes(Shape{2, layout.tokens(), 4, 128}, DType::bf16, 5).to(Device::cuda());
  const Tensor permute = gpu_flags({1, 0, 1, 1, 0, 0, 1, 0});
  Tensor gathered = poisoned_like(x), back = poisoned_like(x);
  gather_to_token_major_gpu(std::span<const Tensor>(&x, 1), std::span<const Tensor>(&gathered, 1), layout, permute);
  scatter_from_token_major_gpu(std::span<const Tensor>(&gathered, 1), std::span<const Tensor>(&back, 1), layout,
                               permute);
  EXPECT_TRUE(same_bytes(back.to(Device::cpu()), x.to(Device::cpu())));
  EXPECT_FALSE(same_bytes(gathered.to(Device::cpu()), x.to(Device::cpu())));
}

// flagged_slots_only: the flagged slots as the full gather writes them, the others left untouched.
TEST(PermuteGpu, GatherOfFlaggedSlotsOnlyLeavesTheOthers) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout{6, 5, 11, 20, TextPosition::first};
  const int64_t batch = 2, heads = 3, dim = 64;
  const Tensor x = random_bytes(Shape{batch, layout.tokens(), heads, dim}, DType::bf16, 9).to(Device::cuda());
  const std::vector<uint8_t> flags = {1, 0, 0, 0, 1, 1};
  const Tensor permute = gpu_flags(flags);
  Tensor full = poisoned_like(x), partial = poisoned_like(x);
  gather_to_token_major_gpu(std::span<const Tensor>(&x, 1), std::span<const Tensor>(&full, 1), layout, permute);
  gather_to_token_major_gpu(std::span<const Tensor>(&x, 1), std::span<const Tensor>(&partial, 1), layout, permute,
                            nullptr, true);
  const Tensor a = full.to(Device::cpu()), b = partial.to(Device::cpu()), poison = poisoned_like(x).to(Device::cpu());
  const int64_t row = dim * 2;  // bytes of one (token, head) row
  int64_t wrong = 0;
  for (int64_t bt = 0; bt < batch * layout.tokens(); ++bt)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t at = (bt * heads + h) * row, slot = bt / layout.tokens() * heads + h;
      const Tensor& want = flags[slot] ? a : poison;
      wrong += std::memcmp(static_cast<const char*>(b.raw_data()) + at, static_cast<const char*>(want.raw_data()) + at,
                           row) != 0;
    }
  EXPECT_EQ(wrong, 0);
}

TEST(PermuteGpu, RejectsBadArguments) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const VideoLayout layout{2, 2, 2, 0, TextPosition::none};
  const Tensor x = Tensor::zeros(Shape{1, 8, 2, 64}, DType::bf16, Device::cuda());
  const Tensor y = Tensor::zeros(Shape{1, 8, 2, 64}, DType::bf16, Device::cuda());
  const Tensor wrong_tokens = Tensor::zeros(Shape{1, 9, 2, 64}, DType::bf16, Device::cuda());
  const Tensor flags = gpu_flags({1, 0});
  const Tensor three_flags = gpu_flags({1, 0, 1});
  auto one = [](const Tensor& t) { return std::span<const Tensor>(&t, 1); };
  EXPECT_THROW(gather_to_token_major_gpu(one(x), one(x), layout, flags), Error);             // in place
  EXPECT_THROW(gather_to_token_major_gpu(one(wrong_tokens), one(y), layout, flags), Error);  // S
  EXPECT_THROW(gather_to_token_major_gpu(one(x), one(y), layout, three_flags), Error);       // flags
  EXPECT_THROW(gather_to_token_major_gpu(one(x.to(Device::cpu())), one(y), layout, flags), Error);
}

}  // namespace
}  // namespace vdit
