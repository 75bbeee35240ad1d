// One cuBLASLt matmul, column-major as cuBLASLt sees it, with optional batching (a constant stride
// between matrices), f32 compute, and an optional bias/GELU epilogue. CUDA builds only; shared by
// linear_cuda.cpp and cross_attention_cuda.cpp.
#pragma once

#include <cublasLt.h>

#include "ops/ops.h"

namespace vdit::ops::cuda {

cudaDataType_t blas_type(DType dtype, const char* op);

struct MatrixLayout {
  cudaDataType_t type = CUDA_R_32F;
  int64_t rows = 0, cols = 0, ld = 0;  // column-major: element (r, c) at r + c * ld
  int batch = 1;
  int64_t batch_stride = 0;  // elements between consecutive matrices of the batch
};

struct MatmulOptions {
  bool transpose_a = false;
  float alpha = 1.0f;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;  // for the BIAS epilogues: one value per row of D
};

// D = alpha * op(A) B (+ epilogue), on ctx.stream, with ctx.blas or a handle of its own. `op` names
// the calling op in errors.
void matmul(const ExecContext& ctx, const char* op, const void* a, const MatrixLayout& la, const void* b,
            const MatrixLayout& lb, void* d, const MatrixLayout& ld, const MatmulOptions& options);

}  // namespace vdit::ops::cuda
