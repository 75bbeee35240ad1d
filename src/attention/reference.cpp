// The CPU reference attention: the oracle every attention kernel is tested against. Plain online
// softmax over the kept key blocks, f32 accumulation, threads over (batch, head, query block).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "attention/head_rows.h"
#include "core/parallel.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

constexpr int kDenseBlock = 128;  // query and key block size when no mask is given

void check_input(const Tensor& t, const char* name) {
  VDIT_CHECK(t.defined(), ErrorCode::invalid_argument, "attention: {} is undefined", name);
  VDIT_CHECK(t.device().is_cpu(), ErrorCode::unsupported,
             "attention: {} is on {}; the reference attention runs on the CPU", name,
             t.device().to_string());
  VDIT_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f16 || t.dtype() == DType::bf16,
             ErrorCode::unsupported, "attention: {} is {}, expected f32, f16 or bf16", name,
             shape_text(t));
  VDIT_CHECK(t.rank() == 4, ErrorCode::invalid_argument, "attention: {} is {}, expected [B, S, H, D]",
             name, shape_text(t));
  for (int i = 0; i < 4; ++i) {
    VDIT_CHECK(t.size(i) > 0, ErrorCode::invalid_argument,
               "attention: {} is {}, every dimension of [B, S, H, D] must be positive", name,
               shape_text(t));
  }
}

// Online-softmax state of a block of query rows.
struct RowsState {
  std::vector<float> max, sum, acc;  // [rows], [rows], [rows, D]
  std::vector<float> scores;         // one row's scores against a key block [block_k]
};

// s[j] = q . k_j for the nk keys whose transposed rows start at k_t (row stride `key_stride`).
void block_scores(const float* q, const float* k_t, int64_t key_stride, int64_t dim, int64_t nk, float* s) {
  std::fill(s, s + nk, 0.0f);
  add_weighted_rows(q, dim, [&](int64_t d) { return k_t + d * key_stride; }, nk, s);
}

// out[d] = out[d] * correction + sum_j p[j] * v[j][d], for nk value rows v [nk, D].
void accumulate_values(const float* p, const float* v, int64_t nk, int64_t dim, float correction,
                       float* out) {
  for (int64_t d = 0; d < dim; ++d) out[d] *= correction;
  add_weighted_rows(p, nk, [&](int64_t j) { return v + j * dim; }, dim, out);
}

// Folds key block [k0, k0 + nk) into the state of `rows` query rows q [rows, D].
void attend_key_block(const float* q, int64_t rows, const HeadKeys& keys, int64_t key_count,
                      int64_t dim, int64_t k0, int64_t nk, float scale, RowsState& st) {
  float* s = st.scores.data();
  for (int64_t i = 0; i < rows; ++i) {
    block_scores(q + i * dim, keys.k_t.data() + k0, key_count, dim, nk, s);
    float block_max = st.max[i];
    for (int64_t j = 0; j < nk; ++j) {
      s[j] *= scale;
      block_max = std::max(block_max, s[j]);
    }
    // exp(-inf) = 0 clears the (empty) state on the first block.
    const float correction = std::exp(st.max[i] - block_max);
    float sum = st.sum[i] * correction;
    for (int64_t j = 0; j < nk; ++j) {
      s[j] = std::exp(s[j] - block_max);
      sum += s[j];
    }
    accumulate_values(s, keys.v.data() + k0 * dim, nk, dim, correction, st.acc.data() + i * dim);
    st.sum[i] = sum;
    st.max[i] = block_max;
  }
}

void check_mask(const BlockMask& mask, const Tensor& q, const Tensor& k) {
  const int64_t batch = q.size(0), queries = q.size(1), heads = q.size(2);
  VDIT_CHECK(k.size(1) == queries, ErrorCode::invalid_argument,
             "attention: a block mask needs as many keys as queries; q is {}, k is {}", shape_text(q),
             shape_text(k));
  VDIT_CHECK(mask.tokens == queries, ErrorCode::invalid_argument,
             "attention: mask covers {} tokens, q is {} (S = {})", mask.tokens, shape_text(q), queries);
  VDIT_CHECK(mask.heads == heads || mask.heads == batch * heads, ErrorCode::invalid_argument,
             "attention: mask has {} head slots, expected H = {} or B*H = {} for q {}", mask.heads,
             heads, batch * heads, shape_text(q));
  mask.validate();
}

}  // namespace

Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionOptions& options, Tensor* lse) {
  check_input(q, "q");
  check_input(k, "k");
  check_input(v, "v");
  const int64_t batch = q.size(0), queries = q.size(1), heads = q.size(2), dim = q.size(3);
  const int64_t keys = k.size(1);
  VDIT_CHECK(k.size(0) == batch && k.size(2) == heads && k.size(3) == dim, ErrorCode::invalid_argument,
             "attention: k is {}, expected [B, S, H, D] = [{}, S, {}, {}] (q is {})", shape_text(k),
             batch, heads, dim, shape_text(q));
  VDIT_CHECK(v.shape() == k.shape(), ErrorCode::invalid_argument,
             "attention: v is {}, expected the shape of k {}", shape_text(v), k.shape().to_string());
  VDIT_CHECK(std::isfinite(options.scale), ErrorCode::invalid_argument,
             "attention: scale is {}, expected a finite value (0 for 1/sqrt(D))", options.scale);
  const BlockMask* mask = options.mask;
  if (mask) check_mask(*mask, q, k);

  const float scale = options.scale != 0.0f ? options.scale : 1.0f / std::sqrt(static_cast<float>(dim));
  const int64_t block_q = mask ? mask->block_q : kDenseBlock;
  const int64_t block_k = mask ? mask->block_k : kDenseBlock;
  const int64_t q_blocks = (queries + block_q - 1) / block_q;
  std::vector<int32_t> all_key_blocks((keys + block_k - 1) / block_k);
  std::iota(all_key_blocks.begin(), all_key_blocks.end(), 0);

  Tensor out = Tensor::empty({batch, queries, heads, dim}, DType::f32);
  float* out_data = out.data<float>();
  float* lse_data = nullptr;
  if (lse) {
    *lse = Tensor::empty({batch, heads, queries}, DType::f32);
    lse_data = lse->data<float>();
  }

  parallel_for(batch * heads * q_blocks, [&](int64_t begin, int64_t end) {
    HeadKeys head_keys;
    RowsState st;
    std::vector<float> q_rows(block_q * dim);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t slot = item / q_blocks, qb = item % q_blocks;
      const int64_t b = slot / heads, h = slot % heads;
      if (head_keys.slot != slot) head_keys.load(k, v, b, h, "attention");

      const int64_t q0 = qb * block_q, rows = std::min(block_q, queries - q0);
      for (int64_t i = 0; i < rows; ++i) load_row(q, b, q0 + i, h, q_rows.data() + i * dim, "attention");
      st.max.assign(rows, -std::numeric_limits<float>::infinity());
      st.sum.assign(rows, 0.0f);
      st.acc.assign(rows * dim, 0.0f);
      st.scores.resize(block_k);

      std::span<const int32_t> kept = all_key_blocks;
      if (mask) kept = mask->row(static_cast<int>(mask->heads == heads ? h : slot), qb);
      for (int32_t kb : kept) {
        const int64_t k0 = int64_t{kb} * block_k;
        attend_key_block(q_rows.data(), rows, head_keys, keys, dim, k0, std::min(block_k, keys - k0),
                         scale, st);
      }

      for (int64_t i = 0; i < rows; ++i) {
        float* o = out_data + ((b * queries + q0 + i) * heads + h) * dim;
        const float* acc = st.acc.data() + i * dim;
        // A row with no kept key block: output 0 and LSE -inf (the sum stays 0).
        const bool empty = st.sum[i] == 0.0f;
        for (int64_t d = 0; d < dim; ++d) o[d] = empty ? 0.0f : acc[d] / st.sum[i];
        if (lse_data) {
          lse_data[(b * heads + h) * queries + q0 + i] =
              empty ? -std::numeric_limits<float>::infinity() : st.max[i] + std::log(st.sum[i]);
        }
      }
    }
  });
  return out;
}

}  // namespace vdit
