#include "models/weights.h"

#include <fmt/format.h>

namespace vdit {
namespace {

constexpr size_t kListed = 24;  // names listed per kind of problem; the rest are counted

std::string listing(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < std::min(names.size(), kListed); ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > kListed) out += fmt::format(" and {} more", names.size() - kListed);
  return out;
}

}  // namespace

WeightBinder::WeightBinder(const Checkpoint& checkpoint, std::string model, Device device, DType dtype)
    : checkpoint_(checkpoint), model_(std::move(model)), device_(device), dtype_(dtype) {
  VDIT_CHECK(!device.is_cpu() || dtype == DType::f32, ErrorCode::unsupported,
             "{}: CPU models run in f32, not {}", model_, dtype_name(dtype));
}

Tensor WeightBinder::take(const std::string& name, const Shape& shape) {
  taken_.insert(name);
  if (!checkpoint_.contains(name)) {
    missing_.push_back(name);
    return {};
  }
  const TensorInfo& info = checkpoint_.info(name);
  if (!(info.shape == shape)) {
    wrong_shapes_.push_back(
        fmt::format("{} is {} in the checkpoint, expected {}", name, info.shape.to_string(), shape.to_string()));
    return {};
  }
  VDIT_CHECK(info.dtype == DType::f32 || info.dtype == DType::f16 || info.dtype == DType::bf16,
             ErrorCode::unsupported, "checkpoint {}: tensor {} is {}, expected f32, f16 or bf16", checkpoint_.path(),
             name, dtype_name(info.dtype));
  return checkpoint_.tensor(name).to(dtype_).to(device_);
}

void WeightBinder::finish() const {
  std::vector<std::string> unexpected;
  for (const std::string& name : checkpoint_.names()) {
    if (taken_.count(name)) continue;
    bool ignored = false;
    for (const std::string& fragment : ignored_) ignored |= name.find(fragment) != std::string::npos;
    if (!ignored) unexpected.push_back(name);
  }
  if (missing_.empty() && wrong_shapes_.empty() && unexpected.empty()) return;
  std::string message = fmt::format("checkpoint {} does not match {}:", checkpoint_.path(), model_);
  if (!missing_.empty()) message += fmt::format(" missing tensors ({}): {};", missing_.size(), listing(missing_));
  if (!wrong_shapes_.empty())
    message += fmt::format(" wrong shapes ({}): {};", wrong_shapes_.size(), listing(wrong_shapes_));
  if (!unexpected.empty())
    message += fmt::format(" unexpected tensors ({}): {};", unexpected.size(), listing(unexpected));
  message.pop_back();
  fail(missing_.empty() ? ErrorCode::invalid_argument : ErrorCode::not_found, "{}", message);
}

}  // namespace vdit
