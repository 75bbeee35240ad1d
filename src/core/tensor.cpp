#include "vdit/tensor.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/half.h"

#ifdef VDIT_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "core/allocator_cuda.h"
#endif

namespace vdit {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: return 2;
    case DType::i64: return 8;
    case DType::u8: case DType::boolean: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
    case DType::boolean: return "bool";
  }
  return "?";
}

bool parse_dtype(std::string_view name, DType* dtype) {
  for (DType d : {DType::f32, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::boolean}) {
    if (name == dtype_name(d)) { *dtype = d; return true; }
  }
  return false;
}

std::string Device::to_string() const {
  return is_cpu() ? std::string("cpu") : fmt::format("cuda:{}", index);
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  for (int64_t d : dims) push_back(d);
}

void Shape::push_back(int64_t dim) {
  VDIT_CHECK(rank_ < kMaxDims, ErrorCode::invalid_argument, "shapes have at most {} dimensions", kMaxDims);
  VDIT_CHECK(dim >= 0, ErrorCode::invalid_argument, "negative dimension {}", dim);
  dims_[rank_++] = dim;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

bool Shape::operator==(const Shape& other) const {
  if (rank_ != other.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (dims_[i] != other.dims_[i]) return false;
  return true;
}

std::string Shape::to_string() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
  return s + "]";
}

namespace {

std::array<int64_t, kMaxDims> contiguous_strides(const Shape& shape) {
  std::array<int64_t, kMaxDims> strides{};
  int64_t s = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

std::shared_ptr<Buffer> allocate(size_t bytes, Device device) {
  auto buffer = std::make_shared<Buffer>();
  buffer->bytes = bytes;
  buffer->device = device;
  if (device.is_cpu()) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded ? rounded : 64);
    VDIT_CHECK(p != nullptr, ErrorCode::io, "out of host memory allocating {} bytes", bytes);
    buffer->data = p;
    buffer->owner = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
    return buffer;
  }
#ifdef VDIT_HAVE_CUDA
  buffer->owner = cuda_allocate(bytes, device);  // the device's caching arena (core/allocator_cuda.h)
  buffer->data = buffer->owner.get();
  return buffer;
#else
  fail(ErrorCode::unsupported, "{} tensors need a build with CUDA (-DVDIT_CUDA=ON)", device.to_string());
#endif
}

// Copies `bytes` between any two devices.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef VDIT_HAVE_CUDA
  cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyDefault);
  VDIT_CHECK(err == cudaSuccess, ErrorCode::cuda, "cudaMemcpy {} -> {}: {}", src_device.to_string(),
             dst_device.to_string(), cudaGetErrorString(err));
#else
  fail(ErrorCode::unsupported, "copy between {} and {} needs a build with CUDA", src_device.to_string(),
       dst_device.to_string());
#endif
}

float load_as_f32(const void* p, DType dtype) {
  switch (dtype) {
    case DType::f32: return *static_cast<const float*>(p);
    case DType::f16: return f16_to_f32(*static_cast<const uint16_t*>(p));
    case DType::bf16: return bf16_to_f32(*static_cast<const uint16_t*>(p));
    case DType::i32: return static_cast<float>(*static_cast<const int32_t*>(p));
    case DType::i64: return static_cast<float>(*static_cast<const int64_t*>(p));
    case DType::u8: return static_cast<float>(*static_cast<const uint8_t*>(p));
    case DType::boolean: return *static_cast<const uint8_t*>(p) ? 1.0f : 0.0f;
  }
  return 0.0f;
}

void store_from_f32(void* p, DType dtype, float v) {
  switch (dtype) {
    case DType::f32: *static_cast<float*>(p) = v; break;
    case DType::f16: *static_cast<uint16_t*>(p) = f32_to_f16(v); break;
    case DType::bf16: *static_cast<uint16_t*>(p) = f32_to_bf16(v); break;
    case DType::i32: *static_cast<int32_t*>(p) = static_cast<int32_t>(v); break;
    case DType::i64: *static_cast<int64_t*>(p) = static_cast<int64_t>(v); break;
    case DType::u8: *static_cast<uint8_t*>(p) = static_cast<uint8_t>(v); break;
    case DType::boolean: *static_cast<uint8_t*>(p) = v != 0.0f; break;
  }
}

// Calls f(dst_offset_elems, src_offset_elems) for every element, in row-major order of `shape`.
template <typename F>
void for_each_index(const Shape& shape, const std::array<int64_t, kMaxDims>& dst_strides,
                    const std::array<int64_t, kMaxDims>& src_strides, F f) {
  const int rank = shape.rank();
  if (shape.numel() == 0) return;
  std::array<int64_t, kMaxDims> idx{};
  int64_t dst = 0, src = 0;
  while (true) {
    f(dst, src);
    int d = rank - 1;
    for (; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        dst += dst_strides[d];
        src += src_strides[d];
        break;
      }
      dst -= dst_strides[d] * (shape[d] - 1);
      src -= src_strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.buffer_ = allocate(static_cast<size_t>(shape.numel()) * dtype_size(dtype), device);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device.is_cpu()) {
    std::memset(t.buffer_->data, 0, t.buffer_->bytes);
  } else {
#ifdef VDIT_HAVE_CUDA
    cudaError_t err = cudaMemset(t.buffer_->data, 0, t.buffer_->bytes);
    VDIT_CHECK(err == cudaSuccess, ErrorCode::cuda, "cudaMemset: {}", cudaGetErrorString(err));
#endif
  }
  return t;
}

Tensor Tensor::borrow(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> keep_alive,
                      Device device) {
  Tensor t;
  t.buffer_ = std::make_shared<Buffer>();
  t.buffer_->data = data;
  t.buffer_->bytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  t.buffer_->device = device;
  t.buffer_->owner = std::move(keep_alive);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

int64_t Tensor::size(int dim) const {
  int d = dim < 0 ? dim + rank() : dim;
  VDIT_CHECK(d >= 0 && d < rank(), ErrorCode::invalid_argument, "dimension {} out of range for {}", dim,
             describe());
  return shape_[d];
}

int64_t Tensor::stride(int dim) const {
  int d = dim < 0 ? dim + rank() : dim;
  VDIT_CHECK(d >= 0 && d < rank(), ErrorCode::invalid_argument, "dimension {} out of range for {}", dim,
             describe());
  return strides_[d];
}

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = rank() - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != s) return false;
    s *= shape_[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  VDIT_CHECK(buffer_ != nullptr, ErrorCode::invalid_argument, "access to an undefined tensor");
  return static_cast<char*>(buffer_->data) + offset_;
}

Tensor Tensor::view(const Shape& shape) const {
  VDIT_CHECK(is_contiguous(), ErrorCode::invalid_argument, "view of a non-contiguous tensor {}", describe());
  VDIT_CHECK(shape.numel() == numel(), ErrorCode::invalid_argument, "cannot view {} as {}", describe(),
             shape.to_string());
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::slice(int dim, int64_t begin, int64_t end) const {
  int d = dim < 0 ? dim + rank() : dim;
  VDIT_CHECK(d >= 0 && d < rank() && 0 <= begin && begin <= end && end <= shape_[d],
             ErrorCode::invalid_argument, "slice [{}, {}) of dimension {} out of range for {}", begin, end,
             dim, describe());
  Tensor t = *this;
  t.offset_ += static_cast<size_t>(begin * strides_[d]) * dtype_size(dtype_);
  t.shape_[d] = end - begin;
  return t;
}

Tensor Tensor::select(int dim, int64_t index) const {
  int d = dim < 0 ? dim + rank() : dim;
  Tensor t = slice(d, index, index + 1);
  Shape shape;
  std::array<int64_t, kMaxDims> strides{};
  for (int i = 0, j = 0; i < rank(); ++i) {
    if (i == d) continue;
    shape.push_back(t.shape_[i]);
    strides[j++] = t.strides_[i];
  }
  t.shape_ = shape;
  t.strides_ = strides;
  return t;
}

Tensor Tensor::transpose(int dim0, int dim1) const {
  int a = dim0 < 0 ? dim0 + rank() : dim0, b = dim1 < 0 ? dim1 + rank() : dim1;
  VDIT_CHECK(a >= 0 && a < rank() && b >= 0 && b < rank(), ErrorCode::invalid_argument,
             "transpose({}, {}) out of range for {}", dim0, dim1, describe());
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::contiguous() const {
  return is_contiguous() ? *this : clone();
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor t = empty(shape_, dtype, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor src = this->device().is_cpu() ? contiguous() : *this;
  VDIT_CHECK(src.is_contiguous(), ErrorCode::unsupported, "device copy of a non-contiguous {}", describe());
  Tensor t = empty(shape_, dtype_, device);
  copy_bytes(t.raw_data(), device, src.raw_data(), src.device(), nbytes());
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  VDIT_CHECK(src.shape_ == shape_, ErrorCode::invalid_argument, "copy from {} into {}: shapes differ",
             src.describe(), describe());
  if (!(device().is_cpu() && src.device().is_cpu())) {
    VDIT_CHECK(src.dtype_ == dtype_ && src.is_contiguous() && is_contiguous(), ErrorCode::unsupported,
               "device copy {} -> {} needs equal dtypes and contiguous tensors", src.describe(), describe());
    copy_bytes(raw_data(), device(), src.raw_data(), src.device(), nbytes());
    return;
  }
  char* dst = static_cast<char*>(raw_data());
  const char* from = static_cast<const char*>(src.raw_data());
  const size_t ds = dtype_size(dtype_), ss = dtype_size(src.dtype_);
  if (src.dtype_ == dtype_ && is_contiguous() && src.is_contiguous()) {
    std::memmove(dst, from, nbytes());
    return;
  }
  if (src.dtype_ == dtype_) {
    for_each_index(shape_, strides_, src.strides_,
                   [&](int64_t d, int64_t s) { std::memcpy(dst + d * ds, from + s * ss, ds); });
    return;
  }
  for_each_index(shape_, strides_, src.strides_, [&](int64_t d, int64_t s) {
    store_from_f32(dst + d * ds, dtype_, load_as_f32(from + s * ss, src.dtype_));
  });
}

std::string Tensor::describe() const {
  return fmt::format("{}{} {}", dtype_name(dtype_), shape_.to_string(), device().to_string());
}

}  // namespace vdit
