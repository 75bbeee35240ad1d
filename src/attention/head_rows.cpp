#include "attention/head_rows.h"

#include "core/half.h"

namespace vdit {

std::string shape_text(const Tensor& t) {
  return fmt::format("{}{}", dtype_name(t.dtype()), t.shape().to_string());
}

void load_row(const Tensor& x, int64_t b, int64_t s, int64_t h, float* out, const char* caller) {
  const int64_t first = b * x.stride(0) + s * x.stride(1) + h * x.stride(2);
  const int64_t step = x.stride(3);
  const int64_t dim = x.size(3);
  switch (x.dtype()) {
    case DType::f32: {
      const float* p = static_cast<const float*>(x.raw_data()) + first;
      for (int64_t d = 0; d < dim; ++d) out[d] = p[d * step];
      return;
    }
    case DType::f16: {
      const uint16_t* p = static_cast<const uint16_t*>(x.raw_data()) + first;
      for (int64_t d = 0; d < dim; ++d) out[d] = f16_to_f32(p[d * step]);
      return;
    }
    case DType::bf16: {
      const uint16_t* p = static_cast<const uint16_t*>(x.raw_data()) + first;
      for (int64_t d = 0; d < dim; ++d) out[d] = bf16_to_f32(p[d * step]);
      return;
    }
    default:
      fail(ErrorCode::internal, "{}: load_row of {}", caller, shape_text(x));
  }
}

void HeadKeys::load(const Tensor& k, const Tensor& v_in, int64_t b, int64_t h, const char* caller) {
  const int64_t keys = k.size(1), dim = k.size(3);
  k_t.resize(keys * dim);
  v.resize(keys * dim);
  std::vector<float> row(dim);
  for (int64_t s = 0; s < keys; ++s) {
    load_row(k, b, s, h, row.data(), caller);
    for (int64_t d = 0; d < dim; ++d) k_t[d * keys + s] = row[d];
    load_row(v_in, b, s, h, v.data() + s * dim, caller);
  }
  slot = b * k.size(2) + h;
}

}  // namespace vdit
