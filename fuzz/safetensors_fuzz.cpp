// libFuzzer target: any input must either parse, with every tensor then readable, or throw
// vdit::Error. Anything else (another exception, a crash, a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const vdit::SafetensorsFile file = vdit::SafetensorsFile::parse(data, size, "fuzz input");
    for (const vdit::TensorInfo& info : file.tensors()) {
      const vdit::Tensor t = file.tensor(info.name);
      // clone() reads every byte of the range; to(f32) reads every element as its dtype.
      t.clone();
      t.to(vdit::DType::f32);
      // The reader promises BOOL bytes are 0 or 1; UBSan checks each load as a C++ bool.
      if (t.dtype() == vdit::DType::boolean) {
        int64_t ones = 0;
        for (int64_t i = 0; i < t.numel(); ++i) ones += t.data<bool>()[i];
        if (ones > t.numel()) __builtin_trap();
      }
    }
  } catch (const vdit::Error&) {
  }
  return 0;
}
