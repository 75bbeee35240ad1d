#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/half.h"
#include "vdit/tensor.h"

namespace vdit {
namespace {

// Exact f32 value of a bf16/f16 neighbour pair, chosen by hand: the rounding must go to the nearer,
// and to the even one on a tie.
TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(bits_float(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(bits_float(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(bits_float(0x3f808001u)), 0x3f81);  // above the tie
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_f32(0x3f81), bits_float(0x3f810000u));
}

TEST(Half, F16KnownValues) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                  // rounds to infinity
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);     // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);     // tie to even (zero)
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);     // 1.5 ulp: tie, rounds to even 2
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);     // smallest normal
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie at 1 + half ulp -> even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
}

// Every f16 value converts to f32 and back unchanged (exhaustive), and every bf16 likewise.
TEST(Half, RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    bool nan16 = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    if (!nan16) { ASSERT_EQ(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), h) << std::hex << h; }
    bool nanb = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
    if (!nanb) { ASSERT_EQ(f32_to_bf16(bf16_to_f32(static_cast<uint16_t>(h))), h) << std::hex << h; }
  }
}

// f16 conversion of f32 values agrees with the nearest-value definition computed in double.
TEST(Half, F16MatchesNearestInDouble) {
  uint32_t state = 12345;
  for (int i = 0; i < 200000; ++i) {
    state = state * 1664525u + 1013904223u;
    float f = bits_float((state & 0x8fffffffu) | 0x30000000u);  // magnitudes ~1e-9 .. 1e9
    if (!std::isfinite(f) || std::fabs(f) >= 65504.0f) continue;
    uint16_t h = f32_to_f16(f);
    double got = f16_to_f32(h);
    double down = f16_to_f32(static_cast<uint16_t>(h - ((h & 0x7fff) ? 1 : 0)));
    double up = f16_to_f32(static_cast<uint16_t>(h + 1));
    ASSERT_LE(std::fabs(got - f), std::fabs(down - f)) << f;
    if ((h & 0x7c00) != 0x7c00) { ASSERT_LE(std::fabs(got - f), std::fabs(up - f)) << f; }
  }
}

TEST(Tensor, ShapesStridesAndViews) {
  Tensor t = Tensor::empty({2, 3, 4}, DType::f32);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(t.stride(0), 12);
  EXPECT_EQ(t.stride(-1), 1);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
  float* p = t.data<float>();
  for (int i = 0; i < 24; ++i) p[i] = static_cast<float>(i);
  Tensor s = t.slice(1, 1, 3);
  EXPECT_EQ(s.shape(), Shape({2, 2, 4}));
  EXPECT_FALSE(s.is_contiguous());
  Tensor c = s.contiguous();
  EXPECT_FLOAT_EQ(c.data<float>()[0], 4.0f);
  EXPECT_FLOAT_EQ(c.data<float>()[8], 16.0f);
  Tensor tr = t.transpose(0, 2).contiguous();  // [4, 3, 2]
  EXPECT_FLOAT_EQ(tr.data<float>()[1], 12.0f);
  EXPECT_EQ(t.select(0, 1).shape(), Shape({3, 4}));
  EXPECT_FLOAT_EQ(t.select(0, 1).data<float>()[0], 12.0f);
  EXPECT_THROW(t.view({5, 5}), Error);
  EXPECT_THROW(t.data<int32_t>(), Error);
  EXPECT_THROW(Tensor::empty({1, 1, 1, 1, 1, 1, 1}, DType::f32), Error);
}

TEST(Tensor, DtypeConversionRoundTrip) {
  Tensor t = Tensor::empty({5}, DType::f32);
  float values[5] = {1.0f, -0.5f, 3.140625f, 1e-3f, 65504.0f};
  for (int i = 0; i < 5; ++i) t.data<float>()[i] = values[i];
  Tensor b = t.to(DType::bf16), h = t.to(DType::f16);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(b.data<bf16_t>()[i].bits, f32_to_bf16(values[i]));
    EXPECT_EQ(h.data<f16_t>()[i].bits, f32_to_f16(values[i]));
  }
  Tensor back = h.to(DType::f32);
  EXPECT_FLOAT_EQ(back.data<float>()[0], 1.0f);
  EXPECT_FLOAT_EQ(back.data<float>()[4], 65504.0f);
}

}  // namespace
}  // namespace vdit
