// Timing of GPU work for benchmarks (CUDA builds only: attention_timing_cuda.cpp), shared by
// `vdit bench attention` and the programs of bench/.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "attention/attention_cuda.h"

namespace vdit {

// Values of unit variance (uniform in [-sqrt(3), sqrt(3))) on `device`, deterministic in `seed`:
// a block of at most 16 Mi random values is made on the host and repeated from a seed-dependent
// offset, so that filling a large tensor costs device copies, not host random numbers.
Tensor random_device_tensor(const Shape& shape, DType dtype, uint64_t seed, Device device = Device::cuda());

// Median milliseconds of `runs` calls of `call`, each between two CUDA events on the default stream
// and waited for, after `warmup` untimed calls (the upper of the two middle times for even runs).
double median_gpu_ms(const std::function<void()>& call, int runs, int warmup = 3);

struct AttentionTiming {
  double ms = 0;       // median of the runs
  FlashKernel kernel;  // the kernel that ran
};

// attention_cuda timed with CUDA events around each of `runs` calls, after `warmup` calls and then as
// many more as fill `warmup_ms` of GPU time: these kernels run at the GPU's power limit, and the
// clock a short burst gets depends on what ran before it (one CSR timed twice in one call, as
// spatial and as temporal, read 2.62 and 2.94 ms), so timings settle first. The input sets (Q, K, V)
// rotate from call to call; several sets keep a small shape from being timed out of L2.
AttentionTiming time_attention_cuda(const std::vector<std::array<Tensor, 3>>& inputs, const Tensor& out,
                                    const GpuBlockMask* mask, FlashKernel kernel, int runs, int warmup,
                                    double warmup_ms = 0.0);

// The same for several masks (null: dense), one timing each, called in turn: run i of every mask
// lies within one short window, so that the ratios between them do not move with the clock the GPU
// drifts to from row to row (Wan spatial:0.15 read 1.70-1.94 ms over a day's calls, its dense row 10.07-10.42).
std::vector<AttentionTiming> time_attention_cuda(const std::vector<std::array<Tensor, 3>>& inputs, const Tensor& out,
                                                 const std::vector<const GpuBlockMask*>& masks, FlashKernel kernel,
                                                 int runs, int warmup, double warmup_ms = 0.0);

}  // namespace vdit
