// Where a work item of the block-sparse grids of the sm_80 and f32 kernels lies: per mask row (slot
// * q_blocks + q_block, in FlashParams::schedule's order when given), the batch items when the mask
// is shared by them (mask_heads == heads), then the row's `sub_q` query tiles fastest; and how many
// key tiles a work item visits (all three flash kernels). CUDA only.
#pragma once

#include "kernels/cuda/flash_params.h"

namespace vdit::cuda {

struct MaskItem {
  int batch, head;
  int row;      // the CSR row: slot * q_blocks + q_block
  int q_block;  // the mask query block
  int sub;      // the query tile within the mask block
};

__device__ __forceinline__ MaskItem decode_mask_item(const FlashParams& p, int item, int sub_q) {
  const int mask_q_blocks = (p.seqlen + p.mask_block_q - 1) / p.mask_block_q;
  const bool shared = p.mask_heads == p.heads;
  const int batch_factor = shared ? p.batch : 1;
  MaskItem m;
  m.sub = item % sub_q;
  item /= sub_q;
  const int bb = item % batch_factor;
  item /= batch_factor;
  m.row = p.schedule != nullptr ? p.schedule[item] : item;
  const int slot = m.row / mask_q_blocks;
  m.q_block = m.row % mask_q_blocks;
  m.batch = shared ? bb : slot / p.heads;
  m.head = shared ? slot : slot % p.heads;
  return m;
}

// The key tiles of `block_k` keys a work item visits: dense (key_blocks null), every tile of the
// S_k keys; sparse, each of the `listed` mask blocks split into ceil(mask_block_k / block_k) tiles,
// those past S_k dropped (lists are sorted, so only the last block can be ragged).
__device__ __forceinline__ int key_tile_count(const int32_t* key_blocks, int listed, int keys, int mask_block_k,
                                              int block_k) {
  if (key_blocks == nullptr) return (keys + block_k - 1) / block_k;
  if (listed == 0) return 0;
  const int sub = (mask_block_k + block_k - 1) / block_k;
  const int last_start = key_blocks[listed - 1] * mask_block_k;
  return (listed - 1) * sub + (min(keys - last_start, mask_block_k) + block_k - 1) / block_k;
}

}  // namespace vdit::cuda
