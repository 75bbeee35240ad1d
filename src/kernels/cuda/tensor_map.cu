#include "kernels/cuda/tensor_map.h"

#include <cuda_runtime.h>

namespace vdit::cuda {
namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiled encode_tiled() {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
          cudaSuccess ||
      found != cudaDriverEntryPointSuccess)
    return nullptr;
  return reinterpret_cast<EncodeTiled>(fn);
}

}  // namespace

CUresult make_head_tensor_map(CUtensorMap* map, const HeadMajorTensor& t, int rows, int chunk,
                              CUtensorMapL2promotion l2_promotion) {
  static const EncodeTiled encode = encode_tiled();
  if (!encode) return CUDA_ERROR_NOT_FOUND;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(t.head_dim), static_cast<cuuint64_t>(t.heads),
                              static_cast<cuuint64_t>(t.tokens), static_cast<cuuint64_t>(t.batch)};
  const int64_t batch_bytes = t.batch > 1 ? t.batch_stride * 2 : int64_t{t.tokens} * t.row_stride * 2;
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(t.head_stride * 2), static_cast<cuuint64_t>(t.row_stride * 2),
                                 static_cast<cuuint64_t>(batch_bytes)};
  const cuuint32_t box[4] = {static_cast<cuuint32_t>(chunk), 1, static_cast<cuuint32_t>(rows), 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  return encode(map, t.bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                const_cast<void*>(t.data), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                chunk == 64 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B, l2_promotion,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

}  // namespace vdit::cuda
