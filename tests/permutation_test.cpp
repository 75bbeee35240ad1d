// Token-major permutation: the order, gather against its hand-written definition, and exact round
// trips on random data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "vdit/attention.h"

namespace vdit {
namespace {

Tensor random_tensor(const Shape& shape, DType dtype, uint32_t seed) {
  Tensor x = Tensor::empty(shape, dtype);
  std::mt19937 rng(seed);
  auto* bytes = static_cast<uint8_t*>(x.raw_data());
  for (size_t i = 0; i < x.nbytes(); ++i) bytes[i] = static_cast<uint8_t>(rng());
  return x;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.nbytes() == b.nbytes() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

const VideoLayout kLayouts[] = {{1, 1, 1, 0, TextPosition::none},  {3, 2, 5, 0, TextPosition::none},
                                {4, 3, 3, 6, TextPosition::first}, {5, 2, 3, 7, TextPosition::last},
                                {2, 1, 4, 1, TextPosition::first}};

TEST(Permutation, OrderMovesVideoTokenFLPlusPToPTPlusF) {
  for (const VideoLayout& layout : kLayouts) {
    std::vector<int64_t> order = token_major_order(layout);
    ASSERT_EQ(static_cast<int64_t>(order.size()), layout.tokens());
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < layout.tokens(); ++i) ASSERT_EQ(sorted[i], i) << layout.to_string();
    const int64_t vb = layout.video_begin(), t = layout.frames, l = layout.frame_tokens();
    for (int64_t i = 0; i < layout.tokens(); ++i) {
      if (layout.is_text(i)) {
        EXPECT_EQ(order[i], i) << layout.to_string();
      }
    }
    for (int64_t f = 0; f < t; ++f) {
      for (int64_t p = 0; p < l; ++p) EXPECT_EQ(order[vb + p * t + f], vb + f * l + p) << layout.to_string();
    }
  }
}

// gathered[b, vb + p*T + f, h] == x[b, vb + f*L + p, h] for permuted heads; everything else unchanged.
template <typename T>
void expect_gather_definition(const Tensor& x, const Tensor& y, const VideoLayout& layout,
                              const std::vector<uint8_t>& permute) {
  const int64_t batch = x.size(0), s = x.size(1), heads = x.size(2), dim = x.size(3);
  const T* in = x.data<T>();
  const T* out = y.data<T>();
  auto at = [&](int64_t b, int64_t t, int64_t h, int64_t d) { return ((b * s + t) * heads + h) * dim + d; };
  const int64_t vb = layout.video_begin(), frames = layout.frames, l = layout.frame_tokens();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t d = 0; d < dim; ++d) {
        for (int64_t t = 0; t < s; ++t) {
          if (layout.is_text(t) || !permute[h]) {
            ASSERT_EQ(std::memcmp(&out[at(b, t, h, d)], &in[at(b, t, h, d)], sizeof(T)), 0);
          }
        }
        if (!permute[h]) continue;
        for (int64_t f = 0; f < frames; ++f) {
          for (int64_t p = 0; p < l; ++p) {
            ASSERT_EQ(std::memcmp(&out[at(b, vb + p * frames + f, h, d)], &in[at(b, vb + f * l + p, h, d)], sizeof(T)), 0);
          }
        }
      }
    }
  }
}

TEST(Permutation, GatherMatchesDefinitionAndRoundTripsExactly) {
  uint32_t seed = 1;
  for (const VideoLayout& layout : kLayouts) {
    for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
      const std::vector<uint8_t> permute = {1, 0, 1, 1, 0};
      Tensor x = random_tensor({2, layout.tokens(), 5, 3}, dtype, seed++);
      Tensor y = gather_to_token_major(x, layout, permute);
      EXPECT_EQ(y.dtype(), dtype);
      EXPECT_TRUE(y.is_contiguous());
      if (dtype == DType::f32) expect_gather_definition<float>(x, y, layout, permute);
      if (dtype == DType::bf16) expect_gather_definition<bf16_t>(x, y, layout, permute);
      if (dtype == DType::f16) expect_gather_definition<f16_t>(x, y, layout, permute);
      EXPECT_TRUE(same_bytes(scatter_from_token_major(y, layout, permute), x)) << layout.to_string();
      EXPECT_TRUE(same_bytes(gather_to_token_major(scatter_from_token_major(x, layout, permute), layout, permute), x));
    }
  }
}

// Big enough to take the threaded path; a strided input is read through its strides.
TEST(Permutation, LargeAndStridedInputsRoundTrip) {
  VideoLayout layout{9, 12, 20, 13, TextPosition::last};
  Tensor wide = random_tensor({2, layout.tokens(), 8, 64}, DType::f32, 99);
  Tensor x = wide.slice(2, 1, 7);  // 6 heads, not contiguous
  const std::vector<uint8_t> permute = {0, 1, 1, 0, 1, 0};
  Tensor y = gather_to_token_major(x, layout, permute);
  expect_gather_definition<float>(x.contiguous(), y, layout, permute);
  EXPECT_TRUE(same_bytes(scatter_from_token_major(y, layout, permute), x.contiguous()));
}

TEST(Permutation, IdentityWhenNoHeadIsPermuted) {
  VideoLayout layout{3, 2, 2, 2, TextPosition::first};
  Tensor x = random_tensor({1, layout.tokens(), 2, 4}, DType::f32, 5);
  const std::vector<uint8_t> none = {0, 0};
  EXPECT_TRUE(same_bytes(gather_to_token_major(x, layout, none), x));
}

TEST(Permutation, BadInputsFail) {
  VideoLayout layout{3, 2, 2, 0, TextPosition::none};
  const std::vector<uint8_t> two = {1, 1};
  EXPECT_THROW(gather_to_token_major(Tensor::zeros({1, 13, 2, 4}, DType::f32), layout, two), Error);
  EXPECT_THROW(gather_to_token_major(Tensor::zeros({1, 12, 3, 4}, DType::f32), layout, two), Error);
  EXPECT_THROW(scatter_from_token_major(Tensor::zeros({12, 2, 4}, DType::f32), layout, two), Error);
  EXPECT_THROW(gather_to_token_major(Tensor(), layout, two), Error);
}

}  // namespace
}  // namespace vdit
