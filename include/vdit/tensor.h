// Tensor: a typed, strided view (up to 6-D) of a buffer on the CPU or a CUDA device.
// Buffers are shared: copying a Tensor copies the view, not the data.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "vdit/error.h"

namespace vdit {

enum class DType : uint8_t { f32, f16, bf16, i32, i64, u8, boolean };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);                    // "f32", "bf16", ...
bool parse_dtype(std::string_view name, DType* dtype);  // accepts vdit names ("f32")

// A C++ type for each dtype, for typed access. f16 and bf16 are stored as raw 16-bit words.
struct f16_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };
template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<f16_t>() { return DType::f16; }
template <> constexpr DType dtype_of<bf16_t>() { return DType::bf16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<bool>() { return DType::boolean; }

enum class DeviceType : uint8_t { cpu, cuda };
struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  bool operator==(const Device&) const = default;
  std::string to_string() const;
};

constexpr int kMaxDims = 6;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  template <typename It> Shape(It begin, It end) {
    for (It it = begin; it != end; ++it) push_back(*it);
  }
  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t& operator[](int i) { return dims_[i]; }
  void push_back(int64_t dim);
  int64_t numel() const;
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }
  bool operator==(const Shape& other) const;
  std::string to_string() const;  // "[2, 3, 4]"

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int rank_ = 0;
};

// Memory that a tensor views. `owner` keeps the bytes alive (an aligned allocation, a CUDA
// allocation, an mmapped file); a borrowed buffer has an owner that frees nothing.
struct Buffer {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  std::shared_ptr<void> owner;
};

class Tensor {
 public:
  Tensor() = default;

  // New, uninitialised, contiguous (64-byte aligned on the CPU).
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  // A view of memory vdit does not own; `keep_alive` (may be null) is held as long as the view.
  static Tensor borrow(void* data, const Shape& shape, DType dtype,
                       std::shared_ptr<void> keep_alive = nullptr, Device device = Device::cpu());

  bool defined() const { return buffer_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return buffer_ ? buffer_->device : Device::cpu(); }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t size(int dim) const;  // negative dims count from the end
  int64_t stride(int dim) const;
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;

  void* raw_data() const;  // first element of the view
  template <typename T> T* data() const {
    VDIT_CHECK(dtype_of<T>() == dtype_, ErrorCode::invalid_argument,
               "tensor holds {}, accessed as {}", dtype_name(dtype_), dtype_name(dtype_of<T>()));
    return static_cast<T*>(raw_data());
  }

  // Views (no copy).
  Tensor view(const Shape& shape) const;                         // contiguous tensors only
  Tensor slice(int dim, int64_t begin, int64_t end) const;       // [begin, end) along dim
  Tensor select(int dim, int64_t index) const;                   // drops dim
  Tensor transpose(int dim0, int dim1) const;

  // Copies.
  Tensor contiguous() const;         // the same tensor if already contiguous
  Tensor clone() const;              // always a fresh contiguous copy
  Tensor to(DType dtype) const;      // CPU: converted copy (round-to-nearest-even to f16/bf16)
  Tensor to(Device device) const;    // copy to another device (contiguous)
  void copy_from(const Tensor& src); // same shape; converts dtype on the CPU

  std::string describe() const;      // "bf16[2, 3] cpu"

 private:
  std::shared_ptr<Buffer> buffer_;
  size_t offset_ = 0;  // bytes from buffer_->data
  Shape shape_;
  std::array<int64_t, kMaxDims> strides_{};  // in elements
  DType dtype_ = DType::f32;
};

}  // namespace vdit
