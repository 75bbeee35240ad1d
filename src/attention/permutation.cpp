// Frame-major <-> token-major permutation of the video tokens for temporal heads
// (DESIGN.md section 3): a pure gather of rows of D elements.
#include <cstring>

#include "core/parallel.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

enum class Direction { gather, scatter };

Tensor permute_heads(const Tensor& x, const VideoLayout& layout, std::span<const uint8_t> permute_head,
                     Direction direction) {
  const char* what = direction == Direction::gather ? "gather_to_token_major" : "scatter_from_token_major";
  layout.validate();
  VDIT_CHECK(x.defined() && x.device().is_cpu() && x.rank() == 4, ErrorCode::invalid_argument,
             "{}: x must be a CPU tensor [B, S, H, D], got {}", what, x.defined() ? x.describe() : "undefined");
  const int64_t batch = x.size(0), tokens = x.size(1), heads = x.size(2), dim = x.size(3);
  VDIT_CHECK(tokens == layout.tokens(), ErrorCode::invalid_argument,
             "{}: x has {} tokens, layout {} has {}", what, tokens, layout.to_string(), layout.tokens());
  VDIT_CHECK(static_cast<int64_t>(permute_head.size()) == heads, ErrorCode::invalid_argument,
             "{}: permute_head has {} entries, x has {} heads", what, permute_head.size(), heads);

  const Tensor src = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const std::vector<int64_t> order = token_major_order(layout);
  const size_t row_bytes = static_cast<size_t>(dim) * dtype_size(x.dtype());
  const auto* in = static_cast<const uint8_t*>(src.raw_data());
  auto* o = static_cast<uint8_t*>(out.raw_data());
  // Row (b, t, h) starts at ((b*S + t)*H + h) * row_bytes.
  auto at = [&](int64_t b, int64_t t, int64_t h) { return ((b * tokens + t) * heads + h) * row_bytes; };

  const int64_t work = batch * tokens;
  const int threads = out.nbytes() < (size_t{1} << 20) ? 1 : 0;  // threads only pay off on big tensors
  parallel_for(work, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      const int64_t b = w / tokens, i = w % tokens;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t j = permute_head[h] ? order[i] : i;
        // gather: out[i] = x[order[i]]; scatter: out[order[i]] = x[i].
        if (direction == Direction::gather) std::memcpy(o + at(b, i, h), in + at(b, j, h), row_bytes);
        else std::memcpy(o + at(b, j, h), in + at(b, i, h), row_bytes);
      }
    }
  }, threads);
  return out;
}

}  // namespace

std::vector<int64_t> token_major_order(const VideoLayout& layout) {
  layout.validate();
  std::vector<int64_t> order(layout.tokens());
  for (int64_t i = 0; i < layout.tokens(); ++i) order[i] = i;
  const int64_t vb = layout.video_begin(), frames = layout.frames, frame_tokens = layout.frame_tokens();
  for (int64_t f = 0; f < frames; ++f) {
    for (int64_t p = 0; p < frame_tokens; ++p) order[vb + p * frames + f] = vb + f * frame_tokens + p;
  }
  return order;
}

Tensor gather_to_token_major(const Tensor& x, const VideoLayout& layout, std::span<const uint8_t> permute_head) {
  return permute_heads(x, layout, permute_head, Direction::gather);
}

Tensor scatter_from_token_major(const Tensor& x, const VideoLayout& layout,
                                std::span<const uint8_t> permute_head) {
  return permute_heads(x, layout, permute_head, Direction::scatter);
}

}  // namespace vdit
