// The online profiler (DESIGN.md section 4): per (batch item, head), the candidate pattern whose
// attention output on a few sampled query rows is closest to the dense output.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "attention/head_rows.h"
#include "core/parallel.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t splitmix64(uint64_t& state) { return mix64(state += kGolden); }

// Uniform in [0, n): the high half of a 64 x 64-bit product (bias below n / 2^64).
uint64_t uniform_below(uint64_t& state, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(splitmix64(state)) * n) >> 64);
}

void check_input(const Tensor& t, const char* name, const Tensor& q, const VideoLayout& layout) {
  VDIT_CHECK(t.defined(), ErrorCode::invalid_argument, "profile_heads: {} is undefined", name);
  VDIT_CHECK(t.device().is_cpu(), ErrorCode::unsupported,
             "profile_heads: {} is on {}; this profiler runs on the CPU", name, t.device().to_string());
  VDIT_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f16 || t.dtype() == DType::bf16,
             ErrorCode::unsupported, "profile_heads: {} is {}, expected f32, f16 or bf16", name,
             shape_text(t));
  const bool positive = t.rank() == 4 && t.size(0) > 0 && t.size(2) > 0 && t.size(3) > 0;
  VDIT_CHECK(positive && t.size(1) == layout.tokens(), ErrorCode::invalid_argument,
             "profile_heads: {} is {}, expected [B, S, H, D] with S = {} ({})", name, shape_text(t),
             layout.tokens(), layout.to_string());
  VDIT_CHECK(t.shape() == q.shape(), ErrorCode::invalid_argument,
             "profile_heads: {} is {}, expected the shape of q {}", name, shape_text(t),
             q.shape().to_string());
}

// One candidate, resolved for the layout: its one-slot block mask, in its own token order.
struct Candidate {
  BlockMask mask;
  bool permuted = false;
};

// Frame-major keys that frame-major query `token` visits under a candidate; `order` and `position`
// map token-major positions to tokens and back (used by permuted candidates only).
void kept_keys(const Candidate& c, const std::vector<int64_t>& order,
               const std::vector<int64_t>& position, int64_t token, std::vector<int64_t>& keys) {
  keys.clear();
  const int64_t at = c.permuted ? position[token] : token;
  for (int32_t kb : c.mask.row(0, at / c.mask.block_q)) {
    const int64_t begin = int64_t{kb} * c.mask.block_k;
    const int64_t end = std::min(c.mask.tokens, begin + c.mask.block_k);
    for (int64_t p = begin; p < end; ++p) keys.push_back(c.permuted ? order[p] : p);
  }
}

constexpr int64_t kRowGroup = 16;   // sampled rows scored together, sharing each key chunk
constexpr int64_t kKeyChunk = 512;  // keys per chunk: D x 512 floats of K stay in cache

// s[g * keys + j] = scale * (q_g . k_j) for `rows` query rows q [rows, D] and every key; k_t is
// K transposed [D, keys], so the inner loop runs over keys and vectorises.
void row_scores(const float* q, int64_t rows, const float* k_t, int64_t keys, int64_t dim,
                float scale, float* s) {
  for (int64_t j0 = 0; j0 < keys; j0 += kKeyChunk) {
    const int64_t nj = std::min(kKeyChunk, keys - j0);
    for (int64_t g = 0; g < rows; ++g) {
      float* sg = s + g * keys + j0;
      std::fill(sg, sg + nj, 0.0f);
      for (int64_t d = 0; d < dim; ++d) {
        const float qd = q[g * dim + d];
        const float* kd = k_t + d * keys + j0;
        for (int64_t j = 0; j < nj; ++j) sg[j] += qd * kd[j];
      }
      for (int64_t j = 0; j < nj; ++j) sg[j] *= scale;
    }
  }
}

// out = softmax over `keys` of the scores s, applied to the value rows v [S, D]; p is scratch.
void masked_output(const float* s, const std::vector<int64_t>& keys, const float* v, int64_t dim,
                   std::vector<float>& p, float* out) {
  std::fill(out, out + dim, 0.0f);
  const int64_t n = static_cast<int64_t>(keys.size());
  if (n == 0) return;
  float max = s[keys[0]];
  for (int64_t key : keys) max = std::max(max, s[key]);
  p.resize(n);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    p[i] = std::exp(s[keys[i]] - max);
    sum += p[i];
  }
  add_weighted_rows(p.data(), n, [&](int64_t i) { return v + keys[i] * dim; }, dim, out);
  for (int64_t d = 0; d < dim; ++d) out[d] /= sum;
}

// What profile_heads needs of every (batch item, head).
struct ProfileSetup {
  std::vector<Candidate> candidates;
  std::vector<int64_t> order, position;     // token-major order and its inverse
  std::vector<int64_t> all_keys;            // 0 .. S-1: the dense "candidate"
  std::vector<std::vector<int64_t>> rows;   // sampled rows per batch item
};

// Sum of squared errors of each candidate's output against dense on (b, h)'s sampled rows, and
// the sum of squares of the dense output.
void profile_head(const Tensor& q, const Tensor& k, const Tensor& v, int64_t b, int64_t h,
                  const ProfileSetup& setup, double* squared_error, double* dense_squares) {
  const int64_t keys = k.size(1), dim = k.size(3);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
  HeadKeys head;
  head.load(k, v, b, h, "profile_heads");
  const std::vector<int64_t>& rows = setup.rows[b];
  const int64_t candidates = static_cast<int64_t>(setup.candidates.size());

  std::vector<float> q_group(kRowGroup * dim), scores(kRowGroup * keys), dense(dim), out(dim), p;
  std::vector<int64_t> kept;
  std::fill(squared_error, squared_error + candidates, 0.0);
  *dense_squares = 0.0;
  for (size_t r0 = 0; r0 < rows.size(); r0 += kRowGroup) {
    const int64_t group = std::min<int64_t>(kRowGroup, static_cast<int64_t>(rows.size() - r0));
    for (int64_t g = 0; g < group; ++g) {
      load_row(q, b, rows[r0 + g], h, q_group.data() + g * dim, "profile_heads");
    }
    row_scores(q_group.data(), group, head.k_t.data(), keys, dim, scale, scores.data());
    for (int64_t g = 0; g < group; ++g) {
      const float* s = scores.data() + g * keys;
      masked_output(s, setup.all_keys, head.v.data(), dim, p, dense.data());
      for (int64_t d = 0; d < dim; ++d) *dense_squares += double{dense[d]} * dense[d];
      for (int64_t c = 0; c < candidates; ++c) {
        kept_keys(setup.candidates[c], setup.order, setup.position, rows[r0 + g], kept);
        masked_output(s, kept, head.v.data(), dim, p, out.data());
        for (int64_t d = 0; d < dim; ++d) {
          const double e = double{out[d]} - dense[d];
          squared_error[c] += e * e;
        }
      }
    }
  }
}

}  // namespace

std::vector<int64_t> profile_sample_rows(const VideoLayout& layout, const ProfileOptions& options,
                                         int64_t batch_item) {
  layout.validate();
  VDIT_CHECK(options.sample_rows > 0, ErrorCode::invalid_argument,
             "profile_heads: sample_rows is {}, expected > 0", options.sample_rows);
  VDIT_CHECK(batch_item >= 0, ErrorCode::invalid_argument, "profile_heads: batch item {} is negative",
             batch_item);
  const int64_t video = layout.video_tokens();
  const int64_t count = std::min<int64_t>(options.sample_rows, video);
  // The item's stream starts from output batch_item + 1 of the stream seeded with `seed`.
  uint64_t state = mix64(options.seed + (static_cast<uint64_t>(batch_item) + 1) * kGolden);
  // Floyd: for j = N-count .. N-1 take a uniform t in [0, j], or j itself when t is taken.
  std::vector<uint8_t> taken(video, 0);
  std::vector<int64_t> rows;
  rows.reserve(count);
  for (int64_t j = video - count; j < video; ++j) {
    int64_t t = static_cast<int64_t>(uniform_below(state, static_cast<uint64_t>(j) + 1));
    if (taken[t]) t = j;
    taken[t] = 1;
    rows.push_back(layout.video_begin() + t);
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

ProfileResult profile_heads(const Tensor& q, const Tensor& k, const Tensor& v,
                            const VideoLayout& layout, std::span<const Pattern> candidates,
                            const ProfileOptions& options) {
  layout.validate();
  check_input(q, "q", q, layout);
  check_input(k, "k", q, layout);
  check_input(v, "v", q, layout);
  VDIT_CHECK(!candidates.empty(), ErrorCode::invalid_argument, "profile_heads: no candidate patterns");
  VDIT_CHECK(options.block_q > 0 && options.block_k > 0, ErrorCode::invalid_argument,
             "profile_heads: block sizes {} x {}, expected positive", options.block_q, options.block_k);
  VDIT_CHECK(std::isfinite(options.dense_fallback) && options.dense_fallback >= 0.0,
             ErrorCode::invalid_argument, "profile_heads: dense_fallback is {}, expected a finite value >= 0",
             options.dense_fallback);
  const int64_t batch = q.size(0), heads = q.size(2);

  ProfileSetup setup;
  for (const Pattern& pattern : candidates) {
    setup.candidates.push_back({build_block_mask(layout, pattern, 1, options.block_q, options.block_k),
                                pattern.permuted()});
  }
  setup.order = token_major_order(layout);
  setup.position.resize(setup.order.size());
  for (size_t i = 0; i < setup.order.size(); ++i) {
    setup.position[setup.order[i]] = static_cast<int64_t>(i);
  }
  setup.all_keys.resize(layout.tokens());
  std::iota(setup.all_keys.begin(), setup.all_keys.end(), int64_t{0});
  for (int64_t b = 0; b < batch; ++b) setup.rows.push_back(profile_sample_rows(layout, options, b));

  ProfileResult result;
  result.batch = static_cast<int>(batch);
  result.heads = static_cast<int>(heads);
  result.candidates = static_cast<int>(candidates.size());
  const int64_t count = static_cast<int64_t>(candidates.size());
  std::vector<double> squared_error(batch * heads * count), dense_squares(batch * heads);
  parallel_for(batch * heads, [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) {
      profile_head(q, k, v, slot / heads, slot % heads, setup, &squared_error[slot * count],
                   &dense_squares[slot]);
    }
  });

  const double elements = static_cast<double>(setup.rows[0].size()) * static_cast<double>(q.size(3));
  result.choice.resize(batch * heads);
  result.mse.resize(squared_error.size());
  result.relative_error.resize(squared_error.size());
  for (int64_t slot = 0; slot < batch * heads; ++slot) {
    int best = 0;
    for (int64_t c = 0; c < count; ++c) {
      const double e = squared_error[slot * count + c];
      result.mse[slot * count + c] = e / elements;
      result.relative_error[slot * count + c] =
          dense_squares[slot] > 0.0 ? e / dense_squares[slot] : (e > 0.0 ? INFINITY : 0.0);
      if (e < squared_error[slot * count + best]) best = static_cast<int>(c);
    }
    const double best_error = result.relative_error[slot * count + best];
    result.choice[slot] = options.dense_fallback > 0.0 && best_error > options.dense_fallback ? -1 : best;
  }
  return result;
}

std::vector<Pattern> ProfileResult::patterns(std::span<const Pattern> candidate_patterns) const {
  VDIT_CHECK(static_cast<int>(candidate_patterns.size()) == candidates, ErrorCode::invalid_argument,
             "ProfileResult::patterns: {} candidates given, the profile has {}", candidate_patterns.size(),
             candidates);
  std::vector<Pattern> out;
  out.reserve(choice.size());
  for (int c : choice) {
    VDIT_CHECK(c >= -1 && c < candidates, ErrorCode::invalid_argument,
               "ProfileResult::patterns: choice {} out of range [-1, {})", c, candidates);
    out.push_back(c < 0 ? Pattern::dense() : candidate_patterns[c]);
  }
  return out;
}

}  // namespace vdit
