#include "ops/blas_cuda.h"

#include <cuda_runtime_api.h>

namespace vdit::ops::cuda {
namespace {

constexpr size_t kMaxWorkspaceBytes = size_t{32} << 20;

// A cuBLASLt object that frees itself.
template <typename T, cublasStatus_t (*Destroy)(T)>
struct Owned {
  T value = nullptr;
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() {
    if (value) Destroy(value);
  }
};

struct Checker {
  const char* op;
  void operator()(cublasStatus_t status, const char* call) const {
    VDIT_CHECK(status == CUBLAS_STATUS_SUCCESS, ErrorCode::cuda, "{} on CUDA: {} failed: {}", op, call,
               cublasLtGetStatusString(status));
  }
};
#define VDIT_CUBLASLT(call) check((call), #call)

void make_layout(const Checker& check, Owned<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>& out,
                 const MatrixLayout& l) {
  VDIT_CUBLASLT(cublasLtMatrixLayoutCreate(&out.value, l.type, l.rows, l.cols, l.ld));
  if (l.batch > 1) {
    VDIT_CUBLASLT(cublasLtMatrixLayoutSetAttribute(out.value, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &l.batch,
                                                   sizeof(l.batch)));
    VDIT_CUBLASLT(cublasLtMatrixLayoutSetAttribute(out.value, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                   &l.batch_stride, sizeof(l.batch_stride)));
  }
}

// The alignment cuBLASLt may rely on for a matrix: the largest power of two up to 256 that divides
// its address (and, batched, its batch stride in bytes). Its heuristic assumes 256 unless told, which
// an operand at an offset into a tensor (a batch item, a token slice) need not have.
uint32_t alignment(const void* p, const MatrixLayout& l) {
  uint64_t bytes = reinterpret_cast<uintptr_t>(p) | 256;
  if (l.batch > 1) bytes |= static_cast<uint64_t>(l.batch_stride) * (l.type == CUDA_R_32F ? 4 : 2);
  return static_cast<uint32_t>(bytes & (~bytes + 1));
}

}  // namespace

void* create_blas_handle(Device device) {
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device.index);
  cublasLtHandle_t handle = nullptr;
  const cublasStatus_t status = cublasLtCreate(&handle);
  cudaSetDevice(previous);
  Checker{"BlasHandle"}(status, "cublasLtCreate");
  return handle;
}

void destroy_blas_handle(void* handle) { cublasLtDestroy(static_cast<cublasLtHandle_t>(handle)); }

cudaDataType_t blas_type(DType dtype, const char* op) {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: fail(ErrorCode::unsupported, "{} on CUDA: {} tensors are not supported", op, dtype_name(dtype));
  }
}

void matmul(const ExecContext& ctx, const char* op, const void* a, const MatrixLayout& la, const void* b,
            const MatrixLayout& lb, void* d, const MatrixLayout& ld, const MatmulOptions& options) {
  const Checker check{op};
  Owned<cublasLtHandle_t, cublasLtDestroy> own_handle;
  cublasLtHandle_t handle = static_cast<cublasLtHandle_t>(ctx.blas);
  if (!handle) {
    VDIT_CUBLASLT(cublasLtCreate(&own_handle.value));
    handle = own_handle.value;
  }
  Owned<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy> desc;
  VDIT_CUBLASLT(cublasLtMatmulDescCreate(&desc.value, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = options.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, trans_b = CUBLAS_OP_N;
  VDIT_CUBLASLT(cublasLtMatmulDescSetAttribute(desc.value, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)));
  VDIT_CUBLASLT(cublasLtMatmulDescSetAttribute(desc.value, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)));
  VDIT_CUBLASLT(cublasLtMatmulDescSetAttribute(desc.value, CUBLASLT_MATMUL_DESC_EPILOGUE, &options.epilogue,
                                               sizeof(options.epilogue)));
  if (options.bias) {
    VDIT_CUBLASLT(cublasLtMatmulDescSetAttribute(desc.value, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &options.bias,
                                                 sizeof(options.bias)));
  }
  Owned<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy> a_layout, b_layout, d_layout;
  make_layout(check, a_layout, la);
  make_layout(check, b_layout, lb);
  make_layout(check, d_layout, ld);

  Owned<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy> preference;
  VDIT_CUBLASLT(cublasLtMatmulPreferenceCreate(&preference.value));
  VDIT_CUBLASLT(cublasLtMatmulPreferenceSetAttribute(preference.value, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &kMaxWorkspaceBytes, sizeof(kMaxWorkspaceBytes)));
  const uint32_t align_a = alignment(a, la), align_b = alignment(b, lb), align_d = alignment(d, ld);
  for (const auto& [attribute, value] : {std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a},
                                         std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b},
                                         std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d},
                                         std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d}}) {
    VDIT_CUBLASLT(cublasLtMatmulPreferenceSetAttribute(preference.value, attribute, value, sizeof(*value)));
  }
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  VDIT_CUBLASLT(cublasLtMatmulAlgoGetHeuristic(handle, desc.value, a_layout.value, b_layout.value, d_layout.value,
                                               d_layout.value, preference.value, 1, &heuristic, &found));
  VDIT_CHECK(found > 0, ErrorCode::cuda, "{} on CUDA: cuBLASLt has no algorithm for a {}x{} by {}x{} product", op,
             la.rows, la.cols, lb.rows, lb.cols);

  const cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  void* workspace = nullptr;
  if (heuristic.workspaceSize > 0) {
    const cudaError_t err = cudaMallocAsync(&workspace, heuristic.workspaceSize, stream);
    VDIT_CHECK(err == cudaSuccess, ErrorCode::cuda, "{} on CUDA: workspace of {} bytes: {}", op,
               heuristic.workspaceSize, cudaGetErrorString(err));
  }
  const float zero = 0.0f;
  const cublasStatus_t status =
      cublasLtMatmul(handle, desc.value, &options.alpha, a, a_layout.value, b, b_layout.value, &zero, d, d_layout.value,
                     d, d_layout.value, &heuristic.algo, workspace, heuristic.workspaceSize, stream);
  if (workspace) cudaFreeAsync(workspace, stream);
  check(status, "cublasLtMatmul");
}

}  // namespace vdit::ops::cuda
