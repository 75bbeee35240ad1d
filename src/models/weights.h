// Binds a model's tensors by their checkpoint names. Each tensor is checked against the shape the
// model expects and converted to the model's dtype and device; everything that does not match is
// collected and reported at once by finish(), by name.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace vdit {

class WeightBinder {
 public:
  // `model` names the architecture in messages. On the CPU, dtype must be f32.
  WeightBinder(const Checkpoint& checkpoint, std::string model, Device device, DType dtype);

  // The tensor `name` of shape `shape`, or an undefined tensor when it is missing or mis-shaped
  // (recorded for finish()).
  Tensor take(const std::string& name, const Shape& shape);

  // Checkpoint tensors the model does not use but that are not an error (diffusers'
  // _keys_to_ignore_on_load_unexpected): names containing `fragment`.
  void ignore_unused(const std::string& fragment) { ignored_.push_back(fragment); }

  // Throws if any tensor was missing or mis-shaped (not_found / invalid_argument), or if the
  // checkpoint holds tensors the model never took (invalid_argument); the message lists them all.
  void finish() const;

 private:
  const Checkpoint& checkpoint_;
  std::string model_;
  Device device_;
  DType dtype_;
  std::set<std::string> taken_;
  std::vector<std::string> missing_, wrong_shapes_, ignored_;
};

}  // namespace vdit
