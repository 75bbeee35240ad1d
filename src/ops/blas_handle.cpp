#include "ops/common.h"

#ifdef VDIT_HAVE_CUDA
#include "ops/ops_cuda.h"
#endif

namespace vdit {

BlasHandle::BlasHandle(Device device) {
  if (device.is_cpu()) return;
#ifdef VDIT_HAVE_CUDA
  handle_ = ops::cuda::create_blas_handle(device);
#else
  ops::require_cpu(ExecContext{device}, "BlasHandle");
#endif
}

BlasHandle::~BlasHandle() {
#ifdef VDIT_HAVE_CUDA
  if (handle_) ops::cuda::destroy_blas_handle(handle_);
#endif
}

}  // namespace vdit
