// vdit::attention's dispatch on the CPU: CPU tensors run the reference; without CUDA, asking for
// the GPU says `unsupported` (the GPU path itself is tested in tests/cuda/attention_cuda_test.cpp).
#include <gtest/gtest.h>

#include <cstring>

#include "vdit/attention.h"

namespace vdit {
namespace {

Tensor ramp(const Shape& shape, float step) {
  Tensor t = Tensor::empty(shape, DType::f32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(i % 17) * step - 0.5f;
  return t;
}

TEST(AttentionDispatch, CpuTensorsRunTheReference) {
  VideoLayout layout;
  layout.frames = 3;
  layout.height = 5;
  layout.width = 7;
  const int64_t S = layout.tokens(), H = 2, D = 8;
  const Tensor q = ramp({1, S, H, D}, 0.05f), k = ramp({1, S, H, D}, 0.03f), v = ramp({1, S, H, D}, 0.07f);
  const BlockMask mask = build_block_mask(layout, Pattern::tile(0), static_cast<int>(H), 32, 32);
  AttentionOptions options;
  options.mask = &mask;
  Tensor lse, ref_lse;
  const Tensor out = attention(q, k, v, options, &lse);
  const Tensor ref = attention_reference(q, k, v, options, &ref_lse);
  ASSERT_EQ(out.shape(), ref.shape());
  EXPECT_EQ(std::memcmp(out.data<float>(), ref.data<float>(), out.nbytes()), 0);
  EXPECT_EQ(std::memcmp(lse.data<float>(), ref_lse.data<float>(), lse.nbytes()), 0);
}

#ifndef VDIT_HAVE_CUDA
TEST(AttentionDispatch, GpuNeedsACudaBuild) {
  BlockMask mask;
  mask.tokens = 4;
  mask.block_q = mask.block_k = 128;
  mask.heads = 1;
  mask.row_offsets = {0, 1};
  mask.key_blocks = {0};
  try {
    upload_block_mask(mask, Device::cuda());
    FAIL() << "upload_block_mask succeeded without CUDA";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::unsupported) << e.what();
  }
}
#endif

}  // namespace
}  // namespace vdit
