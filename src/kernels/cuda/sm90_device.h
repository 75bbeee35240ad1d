// Whether a CUDA device runs the sm_90a paths (the flash forward's and the profiler's wgmma
// kernels): compute capability 9.0 exactly, since sm_90a code runs on no other. Host code.
#pragma once

namespace vdit::cuda {

bool is_sm90_device(int index);
bool current_device_is_sm90();  // false when there is no current device

}  // namespace vdit::cuda
