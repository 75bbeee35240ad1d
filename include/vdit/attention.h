// The sparse-attention library: token layout, block masks and their builders, the token-major
// permutation, the CPU reference attention (the oracle for every kernel) and the online profiler.
// Semantics: ../shared/DESIGN.md sections 1-4.
//
// Q, K, V and O tensors are [B, S, H, D] (batch, tokens, heads, head dim), contiguous.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vdit/tensor.h"

namespace vdit {

// ---- Token layout -------------------------------------------------------------------------

enum class TextPosition { none, first, last };

// T frames of h x w patches, frame-major (token = f*L + y*w + x, L = h*w), with `text` tokens
// before or after the video tokens.
struct VideoLayout {
  int64_t frames = 1;
  int64_t height = 1;
  int64_t width = 1;
  int64_t text = 0;
  TextPosition text_position = TextPosition::none;

  int64_t frame_tokens() const { return height * width; }            // L
  int64_t video_tokens() const { return frames * frame_tokens(); }   // T*L
  int64_t tokens() const { return video_tokens() + text; }           // S
  int64_t video_begin() const { return text_position == TextPosition::first ? text : 0; }
  int64_t video_end() const { return video_begin() + video_tokens(); }
  bool is_text(int64_t token) const { return token < video_begin() || token >= video_end(); }
  void validate() const;  // throws invalid_argument naming the bad field
  std::string to_string() const;
  bool operator==(const VideoLayout&) const = default;
};

const char* text_position_name(TextPosition position);
TextPosition parse_text_position(std::string_view name);  // "first", "last", "none"

// ---- Patterns -----------------------------------------------------------------------------

// One head's pattern. Spatial and temporal are bands of half-width W tokens; temporal heads see
// the video tokens in token-major order (see token_major_order). Text rows and columns are always
// kept.
struct Pattern {
  enum class Kind { dense, tile, spatial, temporal };
  Kind kind = Kind::dense;
  int global_frames = 0;   // tile: g
  double density = 1.0;    // spatial/temporal: target density in (0, 1]
  bool sink = false;       // spatial: also keep the keys of frame 0

  static Pattern dense() { return {}; }
  static Pattern tile(int g) { return {Kind::tile, g, 1.0, false}; }
  static Pattern spatial(double d, bool sink = false) { return {Kind::spatial, 0, d, sink}; }
  static Pattern temporal(double d) { return {Kind::temporal, 0, d, false}; }
  bool permuted() const { return kind == Kind::temporal; }
  std::string to_string() const;  // "dense", "tile:2", "spatial:0.25", "spatial:0.25+sink", ...
  bool operator==(const Pattern&) const = default;
};

// Parses "dense", "tile:G", "spatial:D", "spatial:D+sink", "temporal:D"; errors name the text.
Pattern parse_pattern(std::string_view text);

// Band half-width W (tokens) for a spatial/temporal head: the smallest W whose kept area (band plus
// text rows and columns, plus sink columns if any) reaches density * S^2, rounded up to a multiple
// of `block`.
int64_t band_width(const VideoLayout& layout, const Pattern& pattern, int block);

// ---- Block masks --------------------------------------------------------------------------

// Per mask slot (a head, or a (batch item, head) pair) and query block, the sorted list of key
// blocks to visit (CSR). Blocks are `block_q` x `block_k` tokens; the last ones may be ragged.
struct BlockMask {
  int64_t tokens = 0;     // S (queries and keys)
  int block_q = 128;
  int block_k = 128;
  int heads = 0;          // mask slots: H (shared by the batch) or B*H (slot = b*H + h)
  std::vector<int64_t> row_offsets;   // heads * q_blocks() + 1 entries
  std::vector<int32_t> key_blocks;    // sorted within each row

  int64_t q_blocks() const { return (tokens + block_q - 1) / block_q; }
  int64_t k_blocks() const { return (tokens + block_k - 1) / block_k; }
  std::span<const int32_t> row(int head, int64_t q_block) const;
  int64_t kept_tiles() const { return static_cast<int64_t>(key_blocks.size()); }
  int64_t kept_tiles(int head) const;
  // Kept fraction of the token pairs (ragged blocks weighted by their real size), in [0, 1].
  double density() const;
  double density(int head) const;
  void validate() const;  // CSR sorted, in range, sizes consistent
};

// Builds the mask of every head from its pattern (one Pattern per head). Cost O(kept tiles): never
// materialises an S x S token mask. Temporal heads' masks index token-major positions.
BlockMask build_block_mask(const VideoLayout& layout, std::span<const Pattern> head_patterns,
                           int block_q = 128, int block_k = 128);
BlockMask build_block_mask(const VideoLayout& layout, const Pattern& pattern, int heads,
                           int block_q = 128, int block_k = 128);

// The token-level rule the block masks are built from: may query token q attend key token k under
// `pattern`? Positions are in the head's own order (token-major for temporal heads). O(1); used by
// tests and tools, never to build masks.
bool token_pair_allowed(const VideoLayout& layout, const Pattern& pattern, int64_t band, int64_t q,
                        int64_t k);

// ---- Layout transformation ----------------------------------------------------------------

// order[i] = frame-major token placed at token-major position i (text tokens stay in place):
// the video token f*L + p moves to p*T + f.
std::vector<int64_t> token_major_order(const VideoLayout& layout);

// Gathers x [B, S, H, D] into token-major order for the heads with permute_head[h] != 0 (others
// are copied unchanged); scatter_from_token_major is its exact inverse.
Tensor gather_to_token_major(const Tensor& x, const VideoLayout& layout, std::span<const uint8_t> permute_head);
Tensor scatter_from_token_major(const Tensor& x, const VideoLayout& layout,
                                std::span<const uint8_t> permute_head);

// ---- Reference attention (CPU) ------------------------------------------------------------

struct AttentionOptions {
  float scale = 0.0f;             // 0: 1/sqrt(D)
  const BlockMask* mask = nullptr;  // null: dense
};

// O = softmax(Q K^T * scale) V per (batch, head), over the key blocks the mask keeps, accumulated
// in f32 (inputs of any float dtype are read as f32). Returns O as f32 [B, S, H, D]. If `lse` is
// non-null it receives the natural-log log-sum-exp of the scaled scores, f32 [B, H, S].
// Q, K, V may be strided; K and V may have another S than Q when there is no mask. A mask needs
// tokens == S and heads == H (shared by the batch) or B*H (slot b*H + h). A query row whose CSR row
// keeps no key block gets output 0 and LSE -inf. CPU only. Threads over (batch, head, query block).
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionOptions& options = {}, Tensor* lse = nullptr);

// ---- Online profiler ----------------------------------------------------------------------

struct ProfileOptions {
  int sample_rows = 64;          // video query rows sampled uniformly per batch item
  uint64_t seed = 0;
  double dense_fallback = 0.0;   // > 0: run a head dense when its best relative error exceeds this
  int block_q = 128;
  int block_k = 128;
};

struct ProfileResult {
  int batch = 0, heads = 0, candidates = 0;
  std::vector<int> choice;     // [B*H]: index into candidates, or -1 for dense
  std::vector<double> mse;     // [B*H*candidates]: mean squared error against dense
  std::vector<double> relative_error;  // [B*H*candidates]: sum sq error / sum sq of dense output
  // The per-(batch item, head) patterns chosen, ready for build_block_mask (B*H slots).
  std::vector<Pattern> patterns(std::span<const Pattern> candidates) const;
};

// The video query rows profile_heads samples for `batch_item`: min(sample_rows, T*L) distinct
// frame-major video tokens, uniform without replacement (Floyd's algorithm on a splitmix64 stream
// seeded from (seed, batch_item)), sorted ascending. A fixed function of its arguments on every
// platform.
std::vector<int64_t> profile_sample_rows(const VideoLayout& layout, const ProfileOptions& options,
                                         int64_t batch_item);

// Samples query rows, computes their dense attention output and their outputs under each
// candidate pattern, and picks the candidate of least MSE per (batch item, head). Deterministic
// for a seed. Q, K, V: [B, S, H, D] on the CPU, any float dtype, S = layout.tokens(); scale
// 1/sqrt(D). Each candidate's mask is built once (one slot, options' block sizes); a temporal
// candidate's rows and keys are mapped through token_major_order, the tensors are not permuted.
// Ties go to the earlier candidate. Threads over (batch item, head).
ProfileResult profile_heads(const Tensor& q, const Tensor& k, const Tensor& v, const VideoLayout& layout,
                            std::span<const Pattern> candidates, const ProfileOptions& options = {});

// ---- GPU layout, masks and profiler -------------------------------------------------------
// CUDA builds only (VDIT_HAVE_CUDA); the tensors below live on the GPU. `stream` is a cudaStream_t
// (null: the default stream). Nothing here waits for the GPU unless it says so: the profiler's
// choices reach the mask builder and the permutation through GPU memory, with no host round trip.
//
// Slot codes: one i32 per mask slot (slot = b*H + h, or h when the batch shares masks), an index
// into a list of candidate patterns, or -1 for dense. Permute flags: one u8 per slot ([H] or
// [B*H]), non-zero where the slot's pattern is permuted (temporal).

// Candidate patterns resolved once for a layout and block size (band widths from band_width), with
// a copy on the GPU.
struct GpuPatterns {
  VideoLayout layout;
  std::vector<Pattern> candidates;
  int block_q = 128;
  int block_k = 128;
  Tensor table;  // u8 on the GPU: the resolved candidates
  int64_t kept_tiles(int code) const;  // of one slot with this code (-1: dense); host arithmetic
};
GpuPatterns make_gpu_patterns(const VideoLayout& layout, std::span<const Pattern> candidates,
                              int block_q = 128, int block_k = 128, Device device = Device::cuda());

// A block mask in GPU memory, in the int32 form the flash kernels read (cuda::FlashParams).
struct GpuBlockMask {
  int64_t tokens = 0;
  int block_q = 128;
  int block_k = 128;
  int slots = 0;
  Tensor row_offsets;  // i32 [slots * q_blocks + 1]
  Tensor key_blocks;   // i32 [capacity]; the last row offset says how many are used
  int64_t q_blocks() const { return (tokens + block_q - 1) / block_q; }
  int64_t k_blocks() const { return (tokens + block_k - 1) / block_k; }
  BlockMask to_host() const;  // waits for the GPU
};

// A mask of `slots` slots with room for any code in [-1, candidates), or [0, candidates) when
// dense is not allowed.
GpuBlockMask allocate_gpu_block_mask(const GpuPatterns& patterns, int slots, bool allow_dense = true);

// Builds every slot's CSR from its code (slot_codes: i32 [mask.slots] on the GPU) with a count
// pass, one scan and a fill pass: identical to build_block_mask of the slots' patterns.
void build_block_mask_gpu(const GpuPatterns& patterns, const Tensor& slot_codes, const GpuBlockMask& mask,
                          void* stream = nullptr);

// gather_to_token_major on the GPU, bit for bit, for up to three tensors (Q, K, V) in one launch:
// x[i] [B, S, H, D] (contiguous; f32, f16 or bf16) is gathered into out[i] (same shape and dtype,
// not overlapping) for the slots whose permute flag (u8 [H] or [B*H] on the GPU) is set, and
// copied for the others (left unwritten with flagged_slots_only). scatter_from_token_major_gpu is the
// inverse.
void gather_to_token_major_gpu(std::span<const Tensor> x, std::span<const Tensor> out,
                               const VideoLayout& layout, const Tensor& permute, void* stream = nullptr,
                               bool flagged_slots_only = false);
void scatter_from_token_major_gpu(std::span<const Tensor> x, std::span<const Tensor> out,
                                  const VideoLayout& layout, const Tensor& permute, void* stream = nullptr);

// Where the GPU profiler leaves its results, on the GPU.
struct GpuProfile {
  int batch = 0, heads = 0, head_dim = 0;
  DType dtype = DType::bf16;  // of the Q, K, V it profiles
  bool wgmma = false;         // which partial-output kernel: the sm_90a wgmma one (bf16, d = 64, up to
                              // two candidates, Hopper) or the mma.sync one
  ProfileOptions options;  // what it was made for: sample rows, seed, dense fallback, block sizes
  VideoLayout layout;      // and the patterns' layout and candidates
  std::vector<Pattern> patterns;
  int sample_rows = 0;     // rows per batch item: min(options.sample_rows, T*L)
  int blocks = 0;          // of the partial-output kernel: the (slot, 64 rows, key step) work split evenly
  Tensor rows;             // i32 [B, sample_rows]: profile_sample_rows of each batch item
  Tensor kept;             // i32 words of bits: which keys each candidate keeps for each sampled row
  Tensor choice;           // i32 [B*H]: slot codes for build_block_mask_gpu (-1: dense)
  Tensor permute;          // u8 [B*H]: permute flags for gather_to_token_major_gpu
  Tensor mse;              // f32 [B*H, candidates] (the choice is made from f64 sums)
  Tensor relative_error;   // f32 [B*H, candidates]
  Tensor workspace;        // partial outputs
  Tensor tickets;          // i32 [B*H], 0 between calls: the combine's count of a slot's finished blocks
  ProfileResult to_host() const;  // waits for the GPU
};

// Buffers for profiling Q, K, V [batch, S, heads, head_dim] of `dtype` (bf16 or f16) against
// `patterns`' candidates (1 to 3 of dense, spatial, spatial+sink and temporal; options' block sizes
// must be the patterns'), with the rows uploaded and their candidates' key masks built once (waits
// for the GPU).
GpuProfile allocate_gpu_profile(const GpuPatterns& patterns, int batch, int heads, int head_dim, DType dtype,
                                const ProfileOptions& options = {});

// Splits the profile's partial-output work over `blocks` blocks instead (1 to its steps: batch x heads x
// row tiles x key steps; allocate_gpu_profile picks one or two a multiprocessor), with a workspace grown to
// what that split needs. For tests and benchmarks of other splits; results do not depend on it beyond rounding.
void set_gpu_profile_blocks(GpuProfile& profile, int blocks);

// profile_heads on the GPU for bf16 or f16 Q, K, V (contiguous, head_dim 64, 96 or 128): the
// sampled rows' dense and per-candidate outputs, MSE, choice and permute flags, in two launches
// and no host wait. Same rows, masks and rule as profile_heads; the outputs are accumulated in f32
// from 16-bit probabilities, so MSEs agree to about 1e-3 relative and choices agree except between
// candidates that close. `options`, `patterns` and the dtype must be the profile's, but for
// dense_fallback, which is this call's.
void profile_heads_gpu(const Tensor& q, const Tensor& k, const Tensor& v, const GpuPatterns& patterns,
                       const ProfileOptions& options, const GpuProfile& profile, void* stream = nullptr);

// ---- GPU attention ------------------------------------------------------------------------

// Copies a host block mask to `device` in the int32 form the flash kernels read (waits for the
// copy). Upload a mask once and pass it to every call that uses it.
GpuBlockMask upload_block_mask(const BlockMask& mask, Device device = Device::cuda());

// O = softmax(scale * Q K^T) V, dense or over the key blocks a mask keeps (scale 0: 1/sqrt(D)).
// CPU tensors run attention_reference (O is f32). CUDA tensors run a kernel for the device and
// dtype: bf16 or f16 the flash kernel (sm_90a on Hopper when it supports the call, else sm_80;
// D = 64, 96 or 128), f32 a plain f32 kernel on the CUDA cores (any mask block size). Q [B, S, H, D],
// K and V [B, S_k, H, D], unit stride along D; O is contiguous, of Q's shape and dtype. S_k may
// differ from S only without a mask (dense cross-attention). A host mask in `options` is uploaded
// for this one call, and freeing that copy waits for the kernel.
// `lse`, if non-null, receives the natural-log LSE, f32 [B, H, S]; a row that keeps no key block
// gets O = 0 and LSE = -inf. `stream` is a cudaStream_t (null: the default stream).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options = {},
                 Tensor* lse = nullptr, void* stream = nullptr);
// The same with a mask already on the GPU (upload_block_mask, build_block_mask_gpu); does not wait.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const GpuBlockMask& mask, float scale = 0.0f,
                 Tensor* lse = nullptr, void* stream = nullptr);

}  // namespace vdit
