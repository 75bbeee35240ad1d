// Inline-PTX wrappers of the wgmma instructions the sm_90a flash kernel uses (sm_90a only; include
// from code compiled under __CUDA_ARCH_FEAT_SM90_ALL). Accumulators are f32, operands bf16 or fp16.
//   wgmma_ss<N>: D[64 x N] (+)= A[64 x 16] B[16 x N], A and B K-major in shared memory (descriptors);
//                scale_d == 0 overwrites D.
//   wgmma_rs<N>: D[64 x N] += A[64 x 16] B[16 x N], A in registers (4 x 32-bit, the mma.sync
//                A-fragment layout), B MN-major in shared memory (N = 64, 72, 96, 128).
//   wgmma_rs_n8: D[64 x 8] += A[64 x 16] B[16 x 8], bf16, B K-major in shared memory.
// The operand lists are spelled out once, in macros (64 accumulators are 64 asm operands), and
// each wrapper's two element types share them.
#pragma once

#include <cstdint>

namespace vdit::cuda::sm90 {

// PTX's list of the first n accumulator operands (%0 ...) and the matching asm outputs, n = 32, 36,
// 48, 64; then one wgmma in both element types: `prefix`, the instruction of shape `shape`, `rest`
// (its operands and what follows them), with the asm outputs `outputs` and inputs after them.
#define VDIT_WGMMA_R32                                                     \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define VDIT_WGMMA_R36 VDIT_WGMMA_R32 ", %32, %33, %34, %35"
#define VDIT_WGMMA_R48 \
  VDIT_WGMMA_R32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define VDIT_WGMMA_R64 \
  VDIT_WGMMA_R48 ", %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define VDIT_WGMMA_D8(i)                                                                   \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])
#define VDIT_WGMMA_D32 VDIT_WGMMA_D8(0), VDIT_WGMMA_D8(8), VDIT_WGMMA_D8(16), VDIT_WGMMA_D8(24)
#define VDIT_WGMMA_D36 VDIT_WGMMA_D32, "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35])
#define VDIT_WGMMA_D48 VDIT_WGMMA_D32, VDIT_WGMMA_D8(32), VDIT_WGMMA_D8(40)
#define VDIT_WGMMA_D64 VDIT_WGMMA_D48, VDIT_WGMMA_D8(48), VDIT_WGMMA_D8(56)
#define VDIT_WGMMA(kBf16, prefix, shape, rest, outputs, ...)                                                       \
  do {                                                                                                             \
    if constexpr (kBf16)                                                                                           \
      asm volatile(prefix "wgmma.mma_async.sync.aligned." shape ".f32.bf16.bf16 " rest : outputs : __VA_ARGS__); \
    else                                                                                                           \
      asm volatile(prefix "wgmma.mma_async.sync.aligned." shape ".f32.f16.f16 " rest : outputs : __VA_ARGS__);   \
  } while (0)
// wgmma_ss opens a scope with its scale-d predicate p, from asm operand i (scale_d):
#define VDIT_WGMMA_SCALE_D(i) "{\n.reg .pred p;\nsetp.ne.b32 p, %" #i ", 0;\n"

template <int N, bool kBf16>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  static_assert(N == 64 || N == 128, "wgmma_ss: N = 64 or 128");
  if constexpr (N == 64)
    VDIT_WGMMA(kBf16, VDIT_WGMMA_SCALE_D(34), "m64n64k16", "{" VDIT_WGMMA_R32 "}, %32, %33, p, 1, 1, 0, 0;\n}\n",
               VDIT_WGMMA_D32, "l"(desc_a), "l"(desc_b), "r"(scale_d));
  else
    VDIT_WGMMA(kBf16, VDIT_WGMMA_SCALE_D(66), "m64n128k16", "{" VDIT_WGMMA_R64 "}, %64, %65, p, 1, 1, 0, 0;\n}\n",
               VDIT_WGMMA_D64, "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

template <int N, bool kBf16>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b) {
  static_assert(N == 64 || N == 72 || N == 96 || N == 128, "wgmma_rs: N = 64, 72, 96 or 128");
  if constexpr (N == 64)
    VDIT_WGMMA(kBf16, "", "m64n64k16", "{" VDIT_WGMMA_R32 "}, {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n",
               VDIT_WGMMA_D32, "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
  else if constexpr (N == 72)
    VDIT_WGMMA(kBf16, "", "m64n72k16", "{" VDIT_WGMMA_R36 "}, {%36, %37, %38, %39}, %40, 1, 1, 1, 1;\n",
               VDIT_WGMMA_D36, "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
  else if constexpr (N == 96)
    VDIT_WGMMA(kBf16, "", "m64n96k16", "{" VDIT_WGMMA_R48 "}, {%48, %49, %50, %51}, %52, 1, 1, 1, 1;\n",
               VDIT_WGMMA_D48, "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
  else
    VDIT_WGMMA(kBf16, "", "m64n128k16", "{" VDIT_WGMMA_R64 "}, {%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n",
               VDIT_WGMMA_D64, "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

#undef VDIT_WGMMA_SCALE_D
#undef VDIT_WGMMA
#undef VDIT_WGMMA_D64
#undef VDIT_WGMMA_D48
#undef VDIT_WGMMA_D36
#undef VDIT_WGMMA_D32
#undef VDIT_WGMMA_D8
#undef VDIT_WGMMA_R64
#undef VDIT_WGMMA_R48
#undef VDIT_WGMMA_R36
#undef VDIT_WGMMA_R32

__device__ __forceinline__ void wgmma_rs_n8(float (&d)[4], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, 1, 1, 1, 0;\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

}  // namespace vdit::cuda::sm90
