// Block masks (CSR of kept key blocks per head and query block) and their builders
// (DESIGN.md section 2). A tile is kept when any token pair inside it is allowed by
// token_pair_allowed; the builders derive each row's key blocks analytically as a few block
// intervals (text, own frame, global frames, band, sink), so the cost is O(kept tiles).
#include <algorithm>
#include <limits>

#include "vdit/attention.h"

namespace vdit {
namespace {

struct Interval {  // key blocks [begin, end)
  int64_t begin, end;
};

// The CSR rows of one head: row_lengths[q_block] and the key blocks, concatenated.
struct HeadRows {
  std::vector<int64_t> row_lengths;
  std::vector<int32_t> key_blocks;
};

class HeadBuilder {
 public:
  HeadBuilder(const VideoLayout& layout, const Pattern& pattern, int block_q, int block_k)
      : layout_(layout), pattern_(pattern), block_q_(block_q), block_k_(block_k),
        tokens_(layout.tokens()) {
    if (pattern.kind == Pattern::Kind::spatial || pattern.kind == Pattern::Kind::temporal) {
      band_ = band_width(layout, pattern, block_k);
    }
    if (pattern.kind == Pattern::Kind::tile) prepare_global_frames();
  }

  HeadRows build() {
    HeadRows rows;
    const int64_t q_blocks = (tokens_ + block_q_ - 1) / block_q_;
    rows.row_lengths.reserve(q_blocks);
    for (int64_t qb = 0; qb < q_blocks; ++qb) {
      const int64_t q0 = qb * block_q_, q1 = std::min(tokens_, q0 + block_q_);
      const size_t before = rows.key_blocks.size();
      collect_row(q0, q1);
      emit_merged(&rows.key_blocks);
      rows.row_lengths.push_back(static_cast<int64_t>(rows.key_blocks.size() - before));
    }
    return rows;
  }

 private:
  // Key blocks holding any of the tokens [t0, t1).
  void add_tokens(int64_t t0, int64_t t1) {
    if (t0 < t1) intervals_.push_back({t0 / block_k_, (t1 - 1) / block_k_ + 1});
  }

  void prepare_global_frames() {
    const int64_t frames = layout_.frames, g = pattern_.global_frames;
    VDIT_CHECK(g >= 0 && g <= frames, ErrorCode::invalid_argument,
               "pattern '{}': global frames must be in [0, {}] for {} frames", pattern_.to_string(),
               frames, frames);
    is_global_.assign(frames, false);
    const int64_t vb = layout_.video_begin(), frame_tokens = layout_.frame_tokens();
    for (int64_t i = 0; i < g; ++i) {
      const int64_t f = i * frames / g;
      is_global_[f] = true;
      add_tokens(vb + f * frame_tokens, vb + (f + 1) * frame_tokens);
    }
    global_key_intervals_ = intervals_;
    intervals_.clear();
  }

  // Fills intervals_ with the key blocks that some query in [q0, q1) may attend.
  void collect_row(int64_t q0, int64_t q1) {
    const int64_t vb = layout_.video_begin(), ve = layout_.video_end();
    const bool text_query = q0 < vb || q1 > ve;
    if (text_query || pattern_.kind == Pattern::Kind::dense) {
      add_tokens(0, tokens_);
      return;
    }
    add_tokens(0, vb);        // text keys first
    add_tokens(ve, tokens_);  // text keys last
    switch (pattern_.kind) {
      case Pattern::Kind::dense: break;
      case Pattern::Kind::tile: {
        const int64_t frame_tokens = layout_.frame_tokens();
        const int64_t first = (q0 - vb) / frame_tokens, last = (q1 - 1 - vb) / frame_tokens;
        for (int64_t f = first; f <= last; ++f) {
          if (is_global_[f]) {  // a global frame's queries see every key
            intervals_.clear();
            add_tokens(0, tokens_);
            return;
          }
          add_tokens(vb + f * frame_tokens, vb + (f + 1) * frame_tokens);
        }
        intervals_.insert(intervals_.end(), global_key_intervals_.begin(), global_key_intervals_.end());
        break;
      }
      case Pattern::Kind::spatial:
        if (pattern_.sink) add_tokens(vb, vb + layout_.frame_tokens());
        [[fallthrough]];
      case Pattern::Kind::temporal:
        add_tokens(std::max(vb, q0 - band_), std::min(ve, q1 + band_));
        break;
    }
  }

  // Sorts and merges intervals_ and appends their blocks (sorted, unique) to `out`.
  void emit_merged(std::vector<int32_t>* out) {
    std::sort(intervals_.begin(), intervals_.end(),
              [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
    int64_t next = 0;  // first block not yet emitted
    for (const Interval& iv : intervals_) {
      for (int64_t b = std::max(next, iv.begin); b < iv.end; ++b) out->push_back(static_cast<int32_t>(b));
      next = std::max(next, iv.end);
    }
    intervals_.clear();
  }

  const VideoLayout& layout_;
  const Pattern& pattern_;
  const int64_t block_q_, block_k_, tokens_;
  int64_t band_ = 0;
  std::vector<bool> is_global_;
  std::vector<Interval> global_key_intervals_;
  std::vector<Interval> intervals_;
};

int64_t block_extent(int64_t block, int64_t size, int64_t tokens) {
  return std::min(tokens, (block + 1) * size) - block * size;
}

}  // namespace

std::span<const int32_t> BlockMask::row(int head, int64_t q_block) const {
  VDIT_CHECK(head >= 0 && head < heads && q_block >= 0 && q_block < q_blocks(), ErrorCode::invalid_argument,
             "block mask row (head {}, query block {}) outside {} heads x {} blocks", head, q_block,
             heads, q_blocks());
  const int64_t r = head * q_blocks() + q_block;
  return {key_blocks.data() + row_offsets[r], static_cast<size_t>(row_offsets[r + 1] - row_offsets[r])};
}

int64_t BlockMask::kept_tiles(int head) const {
  VDIT_CHECK(head >= 0 && head < heads, ErrorCode::invalid_argument,
             "block mask head {} outside [0, {})", head, heads);
  return row_offsets[(head + 1) * q_blocks()] - row_offsets[head * q_blocks()];
}

double BlockMask::density(int head) const {
  VDIT_CHECK(head >= 0 && head < heads, ErrorCode::invalid_argument,
             "block mask head {} outside [0, {})", head, heads);
  int64_t area = 0;
  for (int64_t qb = 0; qb < q_blocks(); ++qb) {
    int64_t cols = 0;
    for (int32_t kb : row(head, qb)) cols += block_extent(kb, block_k, tokens);
    area += block_extent(qb, block_q, tokens) * cols;
  }
  return static_cast<double>(area) / (static_cast<double>(tokens) * static_cast<double>(tokens));
}

double BlockMask::density() const {
  if (heads == 0) return 0.0;
  double sum = 0.0;
  for (int h = 0; h < heads; ++h) sum += density(h);
  return sum / heads;
}

void BlockMask::validate() const {
  VDIT_CHECK(tokens >= 1 && block_q >= 1 && block_k >= 1 && heads >= 0, ErrorCode::invalid_argument,
             "block mask sizes: tokens {}, block_q {}, block_k {}, heads {}", tokens, block_q, block_k, heads);
  const int64_t rows = heads * q_blocks();
  VDIT_CHECK(static_cast<int64_t>(row_offsets.size()) == rows + 1, ErrorCode::invalid_argument,
             "block mask row_offsets has {} entries, expected {}", row_offsets.size(), rows + 1);
  VDIT_CHECK(row_offsets.front() == 0 && row_offsets.back() == static_cast<int64_t>(key_blocks.size()),
             ErrorCode::invalid_argument, "block mask row_offsets span [{}, {}], expected [0, {}]",
             row_offsets.front(), row_offsets.back(), key_blocks.size());
  for (int64_t r = 0; r < rows; ++r) {
    VDIT_CHECK(row_offsets[r] <= row_offsets[r + 1], ErrorCode::invalid_argument,
               "block mask row_offsets decrease at row {}", r);
    for (int64_t i = row_offsets[r]; i < row_offsets[r + 1]; ++i) {
      VDIT_CHECK(key_blocks[i] >= 0 && key_blocks[i] < k_blocks(), ErrorCode::invalid_argument,
                 "block mask row {}: key block {} outside [0, {})", r, key_blocks[i], k_blocks());
      VDIT_CHECK(i == row_offsets[r] || key_blocks[i - 1] < key_blocks[i], ErrorCode::invalid_argument,
                 "block mask row {}: key blocks not strictly increasing at {}", r, key_blocks[i]);
    }
  }
}

BlockMask build_block_mask(const VideoLayout& layout, std::span<const Pattern> head_patterns, int block_q,
                           int block_k) {
  layout.validate();
  VDIT_CHECK(block_q >= 1 && block_k >= 1, ErrorCode::invalid_argument,
             "block sizes must be >= 1, got block_q {} block_k {}", block_q, block_k);
  VDIT_CHECK(!head_patterns.empty() && head_patterns.size() <= static_cast<size_t>(std::numeric_limits<int>::max()),
             ErrorCode::invalid_argument, "block mask needs at least one head pattern, got {}",
             head_patterns.size());
  BlockMask mask;
  mask.tokens = layout.tokens();
  mask.block_q = block_q;
  mask.block_k = block_k;
  mask.heads = static_cast<int>(head_patterns.size());

  // Heads with the same pattern share one build.
  std::vector<Pattern> distinct;
  std::vector<HeadRows> built;
  std::vector<size_t> which(head_patterns.size());
  for (size_t h = 0; h < head_patterns.size(); ++h) {
    auto it = std::find(distinct.begin(), distinct.end(), head_patterns[h]);
    which[h] = static_cast<size_t>(it - distinct.begin());
    if (it == distinct.end()) {
      distinct.push_back(head_patterns[h]);
      built.push_back(HeadBuilder(layout, head_patterns[h], block_q, block_k).build());
    }
  }

  size_t total = 0;
  for (size_t h = 0; h < head_patterns.size(); ++h) total += built[which[h]].key_blocks.size();
  mask.key_blocks.reserve(total);
  mask.row_offsets.reserve(head_patterns.size() * mask.q_blocks() + 1);
  mask.row_offsets.push_back(0);
  for (size_t h = 0; h < head_patterns.size(); ++h) {
    const HeadRows& rows = built[which[h]];
    mask.key_blocks.insert(mask.key_blocks.end(), rows.key_blocks.begin(), rows.key_blocks.end());
    for (int64_t length : rows.row_lengths) mask.row_offsets.push_back(mask.row_offsets.back() + length);
  }
  return mask;
}

BlockMask build_block_mask(const VideoLayout& layout, const Pattern& pattern, int heads, int block_q,
                           int block_k) {
  VDIT_CHECK(heads >= 1, ErrorCode::invalid_argument, "block mask heads must be >= 1, got {}", heads);
  std::vector<Pattern> patterns(heads, pattern);
  return build_block_mask(layout, patterns, block_q, block_k);
}

}  // namespace vdit
