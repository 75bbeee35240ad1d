#include "ops/blas_cuda.h"

#include <cuda_runtime_api.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace vdit::ops::cuda {
namespace {

constexpr size_t kMaxWorkspaceBytes = size_t{32} << 20;
constexpr int kCandidateAlgos = 8;  // heuristic results timed when a product is first seen
constexpr int kTimedRuns = 3;       // calls per candidate (the fastest counts)

// The cuBLASLt handle of a BlasHandle, and the algorithm picked for each product seen with it: of
// the heuristic's first kCandidateAlgos, the fastest on the product's own operands (once, when it
// is first seen; the heuristic's first pick is not always the fastest, e.g. with the GELU epilogue).
struct BlasContext {
  cublasLtHandle_t handle = nullptr;
  std::mutex mutex;
  std::map<std::string, cublasLtMatmulHeuristicResult_t> chosen;  // by product_key
};

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

// What makes cuBLASLt's choice of algorithm for a product valid and its speed comparable.
std::string product_key(const MatrixLayout& la, const MatrixLayout& lb, const MatrixLayout& ld,
                        const MatmulOptions& options, uint32_t align_a, uint32_t align_b, uint32_t align_d) {
  auto layout = [](const MatrixLayout& l) {
    return fmt::format("{}:{}x{}/{}*{}+{}", static_cast<int>(l.type), l.rows, l.cols, l.ld, l.batch, l.batch_stride);
  };
  return fmt::format("{} {} {} t{} e{} b{} a{},{},{}", layout(la), layout(lb), layout(ld), options.transpose_a,
                     static_cast<int>(options.epilogue), options.bias != nullptr, align_a, align_b, align_d);
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
  auto* context = new BlasContext;
  context->handle = handle;
  return context;
}

void destroy_blas_handle(void* handle) {
  auto* context = static_cast<BlasContext*>(handle);
  cublasLtDestroy(context->handle);
  delete context;
}

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
  auto* context = static_cast<BlasContext*>(ctx.blas);
  cublasLtHandle_t handle = context ? context->handle : nullptr;
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
  const cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const float zero = 0.0f;
  auto run = [&](const cublasLtMatmulHeuristicResult_t& h, void* workspace) {
    return cublasLtMatmul(handle, desc.value, &options.alpha, a, a_layout.value, b, b_layout.value, &zero, d,
                          d_layout.value, d, d_layout.value, &h.algo, workspace, h.workspaceSize, stream);
  };
  auto allocate = [&](size_t bytes) {
    void* workspace = nullptr;
    if (bytes == 0) return workspace;
    const cudaError_t err = cudaMallocAsync(&workspace, bytes, stream);
    VDIT_CHECK(err == cudaSuccess, ErrorCode::cuda, "{} on CUDA: workspace of {} bytes: {}", op, bytes,
               cudaGetErrorString(err));
    return workspace;
  };
  auto candidates = [&](int count) {
    std::vector<cublasLtMatmulHeuristicResult_t> results(count);
    int found = 0;
    VDIT_CUBLASLT(cublasLtMatmulAlgoGetHeuristic(handle, desc.value, a_layout.value, b_layout.value, d_layout.value,
                                                 d_layout.value, preference.value, count, results.data(), &found));
    VDIT_CHECK(found > 0, ErrorCode::cuda, "{} on CUDA: cuBLASLt has no algorithm for a {}x{} by {}x{} product", op,
               la.rows, la.cols, lb.rows, lb.cols);
    results.resize(found);
    return results;
  };
  // The fastest of the candidates on these operands (D is written by every trial; the call below
  // writes it again). Waits for the GPU: once per product and handle.
  auto fastest = [&](const std::vector<cublasLtMatmulHeuristicResult_t>& list) {
    size_t bytes = 0;
    for (const auto& h : list) bytes = std::max(bytes, h.workspaceSize);
    void* workspace = allocate(bytes);
    cudaEvent_t start = nullptr, stop = nullptr;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    size_t best = 0;
    float best_ms = -1.0f;
    for (size_t i = 0; i < list.size(); ++i) {
      if (run(list[i], workspace) != CUBLAS_STATUS_SUCCESS) continue;  // warm-up; a refusal drops it
      float ms = 0.0f;
      cudaEventRecord(start, stream);
      for (int r = 0; r < kTimedRuns; ++r) run(list[i], workspace);
      cudaEventRecord(stop, stream);
      if (cudaEventSynchronize(stop) != cudaSuccess || cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) continue;
      if (best_ms < 0.0f || ms < best_ms) {
        best = i;
        best_ms = ms;
      }
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    if (workspace) cudaFreeAsync(workspace, stream);
    return list[best];
  };

  cublasLtMatmulHeuristicResult_t heuristic{};
  if (context) {
    const std::string key = product_key(la, lb, ld, options, align_a, align_b, align_d);
    const std::lock_guard<std::mutex> lock(context->mutex);
    const auto it = context->chosen.find(key);
    if (it != context->chosen.end()) {
      heuristic = it->second;
    } else {
      const auto list = candidates(kCandidateAlgos);
      heuristic = list.size() == 1 ? list[0] : fastest(list);
      context->chosen.emplace(key, heuristic);
    }
  } else {
    heuristic = candidates(1)[0];
  }

  void* workspace = allocate(heuristic.workspaceSize);
  const cublasStatus_t status = run(heuristic, workspace);
  if (workspace) cudaFreeAsync(workspace, stream);
  check(status, "cublasLtMatmul");
}

}  // namespace vdit::ops::cuda
