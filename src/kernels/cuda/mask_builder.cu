// The GPU mask builder: per (slot, query block) a count pass, one exclusive scan into the CSR row
// offsets, and a fill pass in which a warp writes each row's key blocks. Work is O(kept tiles);
// nothing is S x S. The slot codes are read on the device, so a profiler's choices feed it directly.
#include "kernels/cuda/mask_builder.h"

namespace vdit::cuda {
namespace {

constexpr int kScanThreads = 1024;
constexpr int kScanItems = 4;  // consecutive entries per thread and tile

__device__ MaskPattern row_pattern(const MaskBuildParams& p, int64_t row) {
  const int slot = static_cast<int>(row / p.geometry.q_blocks);
  return slot_pattern(p.patterns, p.num_patterns, p.slot_codes[slot]);
}

// row_offsets[row + 1] = tiles of row; the scan turns these into offsets.
__global__ void count_rows(MaskBuildParams p) {
  const int64_t rows = p.geometry.q_blocks * p.slots;
  for (int64_t row = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; row < rows;
       row += int64_t{gridDim.x} * blockDim.x) {
    const int64_t tiles = mask_row_tiles(p.geometry, row_pattern(p, row), row % p.geometry.q_blocks);
    p.row_offsets[row + 1] = static_cast<int32_t>(tiles);
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) p.row_offsets[0] = 0;
}

// In-place inclusive scan of row_offsets[1 .. rows] in one block, tile by tile.
__global__ void __launch_bounds__(kScanThreads) scan_rows(MaskBuildParams p) {
  __shared__ int32_t warp_totals[kScanThreads / 32];
  __shared__ int32_t carry;
  const int64_t rows = p.geometry.q_blocks * p.slots;
  int32_t* data = p.row_offsets + 1;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (int64_t base = 0; base < rows; base += int64_t{kScanThreads} * kScanItems) {
    int32_t items[kScanItems];
    const int64_t first = base + int64_t{threadIdx.x} * kScanItems;
    int32_t sum = 0;
#pragma unroll
    for (int i = 0; i < kScanItems; ++i) {
      items[i] = first + i < rows ? data[first + i] : 0;
      sum += items[i];
      items[i] = sum;  // inclusive within the thread
    }
    int32_t prefix = sum;  // inclusive across the warp
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
      int32_t other = __shfl_up_sync(0xffffffffu, prefix, offset);
      if (lane >= offset) prefix += other;
    }
    if (lane == 31) warp_totals[warp] = prefix;
    __syncthreads();
    if (warp == 0) {
      int32_t total = lane < kScanThreads / 32 ? warp_totals[lane] : 0;
#pragma unroll
      for (int offset = 1; offset < 32; offset *= 2) {
        int32_t other = __shfl_up_sync(0xffffffffu, total, offset);
        if (lane >= offset) total += other;
      }
      if (lane < kScanThreads / 32) warp_totals[lane] = total;  // inclusive warp totals
    }
    __syncthreads();
    const int32_t before = carry + (warp > 0 ? warp_totals[warp - 1] : 0) + prefix - sum;
#pragma unroll
    for (int i = 0; i < kScanItems; ++i)
      if (first + i < rows) data[first + i] = before + items[i];
    __syncthreads();
    if (threadIdx.x == 0) carry += warp_totals[kScanThreads / 32 - 1];
    __syncthreads();
  }
}

// One warp per row: the runs are warp-uniform, lanes write consecutive entries.
__global__ void fill_rows(MaskBuildParams p) {
  const int64_t rows = p.geometry.q_blocks * p.slots;
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t{gridDim.x} * (blockDim.x / 32);
  for (int64_t row = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32; row < rows; row += warps) {
    int64_t out = p.row_offsets[row];
    RowDedup dedup;
    walk_mask_row(p.geometry, row_pattern(p, row), row % p.geometry.q_blocks, [&](int64_t first, int64_t last) {
      if (!dedup.next(&first, &last)) return;
      for (int64_t j = lane; j <= last - first; j += 32)
        if (out + j < p.capacity) p.key_blocks[out + j] = static_cast<int32_t>(first + j);
      out += last - first + 1;
    });
  }
}

int grid_for(int64_t threads, int block) {
  const int64_t blocks = (threads + block - 1) / block;
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

}  // namespace

cudaError_t launch_build_block_mask(const MaskBuildParams& params, cudaStream_t stream) {
  const int64_t rows = params.geometry.q_blocks * params.slots;
  count_rows<<<grid_for(rows, 256), 256, 0, stream>>>(params);
  scan_rows<<<1, kScanThreads, 0, stream>>>(params);
  fill_rows<<<grid_for(rows * 32, 256), 256, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace vdit::cuda
