#include <cuda_runtime_api.h>

#include "vdit/error.h"
#include "ops/ops_cuda.h"

namespace vdit::ops::cuda {
namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail(ErrorCode::cuda, "OpTimeline: {}: {}", what, cudaGetErrorString(err));
}

}  // namespace

void* create_event() {
  cudaEvent_t event = nullptr;
  check(cudaEventCreate(&event), "cudaEventCreate");
  return event;
}

void destroy_event(void* event) { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }

void record_event(void* event, void* stream) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)), "cudaEventRecord");
}

double event_elapsed_ms(void* start, void* stop) {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)), "cudaEventSynchronize");
  float ms = 0.0f;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)),
        "cudaEventElapsedTime");
  return ms;
}

}  // namespace vdit::ops::cuda
