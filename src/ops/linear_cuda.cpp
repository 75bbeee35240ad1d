// linear on CUDA: one cuBLASLt matmul with f32 compute and the bias and GELU (tanh) epilogues fused;
// SiLU, which cuBLASLt does not offer, runs as a separate pass.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "ops/common.h"
#include "ops/ops_cuda.h"

namespace vdit::ops::cuda {
namespace {

constexpr size_t kMaxWorkspaceBytes = size_t{32} << 20;

void check_blas(cublasStatus_t status, const char* call) {
  VDIT_CHECK(status == CUBLAS_STATUS_SUCCESS, ErrorCode::cuda, "linear on CUDA: {} failed: {}", call,
             cublasLtGetStatusString(status));
}
#define VDIT_CUBLASLT(call) check_blas((call), #call)

cudaDataType_t blas_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: fail(ErrorCode::unsupported, "linear on CUDA: {} tensors are not supported", dtype_name(dtype));
  }
}

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

cublasLtEpilogue_t epilogue_for(bool bias, Activation activation) {
  if (activation == Activation::gelu_tanh) return bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  return bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
}

}  // namespace

// Row-major y [M, N] = x [M, K] W^T with W [N, K] is, column-major, y^T (N x M) = op(W) x^T: A = W
// stored K x N and transposed, B = x stored K x M, D = y stored N x M.
Tensor linear(const ExecContext& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias, Activation activation) {
  const DType dtype = x.dtype();
  for (const auto& [t, arg] : {std::pair{&x, "x"}, std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    VDIT_CHECK(!t->defined() || (t->dtype() == dtype && t->is_contiguous()), ErrorCode::invalid_argument,
               "linear on CUDA: {} is {}, expected a contiguous {} tensor", arg, t->describe(), dtype_name(dtype));
  }
  const int64_t k = weight.size(1), n = weight.size(0), m = k ? x.numel() / k : 0;
  Tensor y = Tensor::empty(with_last_dim(x.shape(), n), dtype, ctx.device);
  if (m == 0 || n == 0) return y;
  VDIT_CHECK(k > 0, ErrorCode::unsupported, "linear on CUDA: weight {} has no input features", weight.describe());

  Owned<cublasLtHandle_t, cublasLtDestroy> own_handle;
  cublasLtHandle_t handle = static_cast<cublasLtHandle_t>(ctx.blas);
  if (!handle) {
    VDIT_CUBLASLT(cublasLtCreate(&own_handle.value));
    handle = own_handle.value;
  }
  const cudaDataType_t type = blas_type(dtype);
  Owned<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy> op;
  VDIT_CUBLASLT(cublasLtMatmulDescCreate(&op.value, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T, no_transpose = CUBLAS_OP_N;
  VDIT_CUBLASLT(cublasLtMatmulDescSetAttribute(op.value, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
  VDIT_CUBLASLT(cublasLtMatmulDescSetAttribute(op.value, CUBLASLT_MATMUL_DESC_TRANSB, &no_transpose, sizeof(no_transpose)));
  const cublasLtEpilogue_t epilogue = epilogue_for(bias.defined(), activation);
  VDIT_CUBLASLT(cublasLtMatmulDescSetAttribute(op.value, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  if (bias.defined()) {
    const void* bias_data = bias.raw_data();
    VDIT_CUBLASLT(cublasLtMatmulDescSetAttribute(op.value, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_data,
                                                 sizeof(bias_data)));
  }
  Owned<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy> a, b, d;
  VDIT_CUBLASLT(cublasLtMatrixLayoutCreate(&a.value, type, k, n, k));
  VDIT_CUBLASLT(cublasLtMatrixLayoutCreate(&b.value, type, k, m, k));
  VDIT_CUBLASLT(cublasLtMatrixLayoutCreate(&d.value, type, n, m, n));

  Owned<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy> preference;
  VDIT_CUBLASLT(cublasLtMatmulPreferenceCreate(&preference.value));
  VDIT_CUBLASLT(cublasLtMatmulPreferenceSetAttribute(preference.value, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &kMaxWorkspaceBytes, sizeof(kMaxWorkspaceBytes)));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  VDIT_CUBLASLT(cublasLtMatmulAlgoGetHeuristic(handle, op.value, a.value, b.value, d.value, d.value, preference.value, 1,
                                               &heuristic, &found));
  VDIT_CHECK(found > 0, ErrorCode::cuda, "linear on CUDA: cuBLASLt has no algorithm for {} x {}^T", x.describe(),
             weight.describe());

  const cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  void* workspace = nullptr;
  if (heuristic.workspaceSize > 0) {
    const cudaError_t err = cudaMallocAsync(&workspace, heuristic.workspaceSize, stream);
    VDIT_CHECK(err == cudaSuccess, ErrorCode::cuda, "linear on CUDA: workspace of {} bytes: {}",
               heuristic.workspaceSize, cudaGetErrorString(err));
  }
  const float one = 1.0f, zero = 0.0f;
  const cublasStatus_t status = cublasLtMatmul(handle, op.value, &one, weight.raw_data(), a.value, x.raw_data(), b.value,
                                               &zero, y.raw_data(), d.value, y.raw_data(), d.value, &heuristic.algo,
                                               workspace, heuristic.workspaceSize, stream);
  if (workspace) cudaFreeAsync(workspace, stream);
  check_blas(status, "cublasLtMatmul");
  return activation == Activation::silu ? ops::cuda::activation(ctx, y, Activation::silu) : y;
}

}  // namespace vdit::ops::cuda
