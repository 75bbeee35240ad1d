// The block-mask rule in a form both the host and the GPU run: per (pattern, query block), the
// sorted key blocks a query block visits, produced as ascending runs of blocks. The GPU mask
// builder (count, scan, fill) and the GPU profiler's candidate masks both walk rows with it, and
// the host uses it to size masks, so all three agree with each other by construction (and with the
// CPU build_block_mask by test). Semantics: ../shared/DESIGN.md section 2.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "ops/host_device.h"

namespace vdit::cuda {

// A layout and block size, reduced to the numbers the rule needs.
struct MaskGeometry {
  int64_t tokens = 0;        // S
  int64_t video_begin = 0;   // first video token
  int64_t video_tokens = 0;  // V = T*L
  int64_t frames = 0;        // T
  int64_t frame_tokens = 0;  // L
  int64_t block_q = 128;
  int64_t block_k = 128;
  int64_t q_blocks = 0;
  int64_t k_blocks = 0;
};

// One pattern resolved for a geometry (the band width already computed).
struct MaskPattern {
  enum Kind : int32_t { dense = 0, tile = 1, spatial = 2, temporal = 3 };
  int32_t kind = dense;
  int32_t global_frames = 0;  // tile: g
  int32_t sink = 0;           // spatial: keep the keys of frame 0
  int32_t permuted = 0;       // temporal: positions are token-major
  int64_t band = 0;           // spatial/temporal: half-width W in tokens
};

// Calls run(first_block, last_block) for runs of key blocks in ascending order of first_block;
// runs may overlap or repeat blocks (RowDedup removes those). Positions are the pattern's own
// order (token-major for temporal patterns); text tokens keep their places in both orders.
template <typename Run>
VDIT_HOST_DEVICE void walk_mask_row(const MaskGeometry& g, const MaskPattern& p, int64_t q_block, Run&& run) {
  const int64_t q0 = q_block * g.block_q;
  const int64_t q1 = (q0 + g.block_q < g.tokens ? q0 + g.block_q : g.tokens) - 1;
  const int64_t vb = g.video_begin, ve = g.video_begin + g.video_tokens;
  // Text queries see everything, and so does a block holding one.
  if (p.kind == MaskPattern::dense || q0 < vb || q1 >= ve) {
    run(int64_t{0}, g.k_blocks - 1);
    return;
  }
  if (vb > 0) run(int64_t{0}, (vb - 1) / g.block_k);  // text first: always kept
  auto video_run = [&](int64_t first, int64_t last) {  // video-relative key positions, inclusive
    run((first + vb) / g.block_k, (last + vb) / g.block_k);
  };
  const int64_t a = q0 - vb, b = q1 - vb, v = g.video_tokens, l = g.frame_tokens, t = g.frames;
  if (p.kind == MaskPattern::tile) {
    const int64_t n = p.global_frames;
    const int64_t fa = a / l, fb = b / l;
    // The first global frame at or after fa: floor(i*T/n) >= fa  <=>  i >= ceil(fa*n/T).
    const int64_t first_global = n > 0 ? (fa * n + t - 1) / t : 0;
    if (first_global < n && first_global * t / n <= fb) {
      video_run(0, v - 1);  // a global query frame: its rows are full
    } else {
      bool diagonal_done = false;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t frame = i * t / n;
        if (!diagonal_done && frame > fb) {
          video_run(fa * l, (fb + 1) * l - 1);
          diagonal_done = true;
        }
        video_run(frame * l, (frame + 1) * l - 1);
      }
      if (!diagonal_done) video_run(fa * l, (fb + 1) * l - 1);
    }
  } else {
    if (p.sink) video_run(0, l - 1);
    const int64_t first = a - p.band > 0 ? a - p.band : 0;
    const int64_t last = b + p.band < v - 1 ? b + p.band : v - 1;
    video_run(first, last);
  }
  if (ve < g.tokens) run(ve / g.block_k, g.k_blocks - 1);  // text last: always kept
}

// Turns ascending, possibly overlapping runs into disjoint ones: next(first, last) returns the
// part of the run not yet covered as [*first, *last], or false if nothing is left.
struct RowDedup {
  int64_t covered = -1;  // the last block already produced
  VDIT_HOST_DEVICE bool next(int64_t* first, int64_t* last) {
    if (*first <= covered) *first = covered + 1;
    if (*last < *first) return false;
    covered = *last;
    return true;
  }
};

// Number of key blocks a query block visits.
VDIT_HOST_DEVICE inline int64_t mask_row_tiles(const MaskGeometry& g, const MaskPattern& p, int64_t q_block) {
  RowDedup dedup;
  int64_t count = 0;
  walk_mask_row(g, p, q_block, [&](int64_t first, int64_t last) {
    if (dedup.next(&first, &last)) count += last - first + 1;
  });
  return count;
}

// A dense, spatial or temporal row as at most three runs of key blocks: [0, prefix_last] (text
// first, sink), [first, last] (the band, or every block for a text row or a dense pattern) and
// [suffix_first, k_blocks) (text last). Empty runs: prefix_last = -1, suffix_first = k_blocks.
// The same blocks as walk_mask_row, in a form a kernel can test a key block against cheaply.
struct BandRow {
  int64_t prefix_last = -1, first = 0, last = -1, suffix_first = 0;
  VDIT_HOST_DEVICE bool keeps(int64_t block) const {
    return block <= prefix_last || (block >= first && block <= last) || block >= suffix_first;
  }
};

VDIT_HOST_DEVICE inline BandRow band_mask_row(const MaskGeometry& g, const MaskPattern& p, int64_t q_block) {
  BandRow row;
  row.suffix_first = g.k_blocks;
  const int64_t q0 = q_block * g.block_q;
  const int64_t q1 = (q0 + g.block_q < g.tokens ? q0 + g.block_q : g.tokens) - 1;
  const int64_t vb = g.video_begin, ve = g.video_begin + g.video_tokens;
  if (p.kind == MaskPattern::dense || q0 < vb || q1 >= ve) {
    row.last = g.k_blocks - 1;
    return row;
  }
  if (vb > 0) row.prefix_last = (vb - 1) / g.block_k;
  if (p.sink) row.prefix_last = (vb + g.frame_tokens - 1) / g.block_k;  // text first and sink touch
  const int64_t a = q0 - vb - p.band, b = q1 - vb + p.band;
  row.first = ((a > 0 ? a : 0) + vb) / g.block_k;
  row.last = ((b < g.video_tokens - 1 ? b : g.video_tokens - 1) + vb) / g.block_k;
  if (ve < g.tokens) row.suffix_first = ve / g.block_k;
  return row;
}

// Position of frame-major token t in token-major order (text tokens stay in place).
VDIT_HOST_DEVICE inline int64_t token_major_position(const MaskGeometry& g, int64_t t) {
  const int64_t vi = t - g.video_begin;
  if (vi < 0 || vi >= g.video_tokens) return t;
  const int64_t frame = vi / g.frame_tokens, place = vi - frame * g.frame_tokens;
  return g.video_begin + place * g.frames + frame;
}

// Pattern of a slot: code -1 (or out of range) is dense, else patterns[code].
VDIT_HOST_DEVICE inline MaskPattern slot_pattern(const MaskPattern* patterns, int num_patterns, int32_t code) {
  return code >= 0 && code < num_patterns ? patterns[code] : MaskPattern{};
}

struct MaskBuildParams {
  MaskGeometry geometry;
  const MaskPattern* patterns = nullptr;  // device, num_patterns entries
  int num_patterns = 0;
  const int32_t* slot_codes = nullptr;    // device, slots entries
  int slots = 0;
  int32_t* row_offsets = nullptr;         // device, slots * q_blocks + 1 entries
  int32_t* key_blocks = nullptr;          // device, capacity entries
  int64_t capacity = 0;
};

// Count pass, exclusive scan and fill pass: three launches on `stream`, no host wait.
cudaError_t launch_build_block_mask(const MaskBuildParams& params, cudaStream_t stream);

}  // namespace vdit::cuda
