// The host side of the GPU layout ops (DESIGN.md sections 2-4): argument checks, buffers and
// launches of the permutation, the mask builder and the profiler (src/kernels/cuda/).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <cuda_runtime_api.h>

#include "attention/attention_cuda.h"
#include "kernels/cuda/mask_builder.h"
#include "kernels/cuda/permute.h"
#include "kernels/cuda/profiler.h"
#include "vdit/attention.h"

namespace vdit {
namespace {

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

void check_cuda(cudaError_t error, const char* what) {
  VDIT_CHECK(error == cudaSuccess, ErrorCode::cuda, "{}: {}", what, cudaGetErrorString(error));
}

cuda::MaskGeometry mask_geometry(const VideoLayout& layout, int block_q, int block_k) {
  cuda::MaskGeometry g;
  g.tokens = layout.tokens();
  g.video_begin = layout.video_begin();
  g.video_tokens = layout.video_tokens();
  g.frames = layout.frames;
  g.frame_tokens = layout.frame_tokens();
  g.block_q = block_q;
  g.block_k = block_k;
  g.q_blocks = (g.tokens + block_q - 1) / block_q;
  g.k_blocks = (g.tokens + block_k - 1) / block_k;
  return g;
}

cuda::MaskPattern resolve_pattern(const VideoLayout& layout, const Pattern& pattern, int block_k) {
  cuda::MaskPattern p;
  switch (pattern.kind) {
    case Pattern::Kind::dense: p.kind = cuda::MaskPattern::dense; break;
    case Pattern::Kind::tile:
      VDIT_CHECK(pattern.global_frames >= 0 && pattern.global_frames <= layout.frames, ErrorCode::invalid_argument,
                 "pattern '{}': global frames must be in [0, {}] for {} frames", pattern.to_string(),
                 layout.frames, layout.frames);
      p.kind = cuda::MaskPattern::tile;
      p.global_frames = pattern.global_frames;
      break;
    case Pattern::Kind::spatial:
    case Pattern::Kind::temporal:
      p.kind = pattern.kind == Pattern::Kind::spatial ? cuda::MaskPattern::spatial : cuda::MaskPattern::temporal;
      p.sink = pattern.sink ? 1 : 0;
      p.permuted = pattern.permuted() ? 1 : 0;
      p.band = band_width(layout, pattern, block_k);  // the CPU builder's band, so masks agree
      break;
  }
  return p;
}

std::vector<cuda::MaskPattern> resolved_table(const GpuPatterns& patterns) {
  std::vector<cuda::MaskPattern> table;
  for (const Pattern& c : patterns.candidates) table.push_back(resolve_pattern(patterns.layout, c, patterns.block_k));
  return table;
}

void check_gpu_tensor(const Tensor& t, DType dtype, int64_t min_numel, const char* what) {
  VDIT_CHECK(t.defined() && t.device().is_cuda() && t.dtype() == dtype && t.is_contiguous() && t.numel() >= min_numel,
             ErrorCode::invalid_argument, "{} must be a contiguous {} GPU tensor of at least {} elements, got {}",
             what, dtype_name(dtype), min_numel, t.defined() ? t.describe() : "undefined");
}

void permute_gpu(std::span<const Tensor> x, std::span<const Tensor> out, const VideoLayout& layout,
                 const Tensor& permute, void* stream, bool to_token_major, bool flagged_only = false) {
  const char* what = to_token_major ? "gather_to_token_major_gpu" : "scatter_from_token_major_gpu";
  layout.validate();
  VDIT_CHECK(!x.empty() && x.size() <= cuda::PermuteParams::kMaxTensors && out.size() == x.size(),
             ErrorCode::invalid_argument, "{}: needs 1 to {} tensors and as many outputs, got {} and {}", what,
             cuda::PermuteParams::kMaxTensors, x.size(), out.size());
  const Tensor& first = x[0];
  VDIT_CHECK(first.defined() && first.rank() == 4, ErrorCode::invalid_argument, "{}: x must be [B, S, H, D], got {}",
             what, first.defined() ? first.describe() : "undefined");
  const DType dtype = first.dtype();
  VDIT_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16, ErrorCode::unsupported,
             "{}: dtype {} (f32, f16 or bf16 only)", what, dtype_name(dtype));
  VDIT_CHECK(first.size(1) == layout.tokens(), ErrorCode::invalid_argument, "{}: x has {} tokens, layout {} has {}",
             what, first.size(1), layout.to_string(), layout.tokens());
  cuda::PermuteParams p;
  for (size_t i = 0; i < x.size(); ++i) {
    for (const Tensor* t : {&x[i], &out[i]}) {
      VDIT_CHECK(t->defined() && t->device().is_cuda() && t->is_contiguous() && t->shape() == first.shape() &&
                     t->dtype() == dtype,
                 ErrorCode::invalid_argument, "{}: every tensor must be a contiguous GPU {} {}, got {}", what,
                 dtype_name(dtype), first.shape().to_string(), t->defined() ? t->describe() : "undefined");
    }
    VDIT_CHECK(x[i].raw_data() != out[i].raw_data(), ErrorCode::invalid_argument, "{}: tensor {} is permuted in place",
               what, i);
    p.src[i] = x[i].raw_data();
    p.dst[i] = out[i].raw_data();
  }
  const int64_t batch = first.size(0), heads = first.size(2);
  check_permute_flags(permute, batch, heads, first.device(), what);
  p.tensors = static_cast<int>(x.size());
  p.batch = batch;
  p.tokens = first.size(1);
  p.heads = heads;
  p.row_bytes = first.size(3) * static_cast<int64_t>(dtype_size(dtype));
  p.video_begin = layout.video_begin();
  p.frames = layout.frames;
  p.frame_tokens = layout.frame_tokens();
  p.permute = permute.data<uint8_t>();
  p.permute_slots = permute.numel();
  p.to_token_major = to_token_major;
  p.flagged_only = flagged_only;
  check_cuda(cuda::launch_permute_tokens(p, as_stream(stream)), what);
}

// The partial kernel's split of a profile's work over its blocks, and the workspace that split
// needs, carved from one buffer: partial stats, partial outputs, row errors.
struct ProfileWorkspace {
  cuda::ProfileSplit split;
  int pieces = 0;  // partial records per (slot, row)
  size_t stats = 0, out = 0, errors = 0, bytes = 0;
};

// The partial kernel's work: a step per (slot, row tile, key step) of the profile's batch, heads,
// sampled rows and layout.
int64_t work_steps(const GpuProfile& profile) {
  return int64_t{profile.batch} * profile.heads * cuda::profile_row_tiles(profile.sample_rows) *
         cuda::profile_key_steps(profile.layout.tokens());
}

// What the profiler's kernels read of the patterns and the profile (its rows, its kernel).
cuda::ProfileParams profile_params(const GpuPatterns& patterns, const GpuProfile& profile) {
  cuda::ProfileParams p;
  p.bf16 = profile.dtype == DType::bf16;
  p.batch = profile.batch;
  p.heads = profile.heads;
  p.head_dim = profile.head_dim;
  p.geometry = mask_geometry(patterns.layout, patterns.block_q, patterns.block_k);
  p.patterns = static_cast<const cuda::MaskPattern*>(patterns.table.raw_data());
  p.candidates = static_cast<int>(profile.patterns.size());
  p.rows = profile.rows.data<int32_t>();
  p.sample_rows = profile.sample_rows;
  p.key_steps = cuda::profile_key_steps(patterns.layout.tokens());
  p.kernel = profile.wgmma ? cuda::ProfileKernel::wgmma : cuda::ProfileKernel::mma_sync;
  return p;
}

// For profile.blocks >= 1 blocks.
ProfileWorkspace profile_workspace(const GpuProfile& profile) {
  auto round = [](size_t n) { return (n + 255) / 256 * 256; };
  const int64_t slots = int64_t{profile.batch} * profile.heads, rows = profile.sample_rows;
  const int64_t outputs = static_cast<int64_t>(profile.patterns.size()) + 1, dim = profile.head_dim;
  ProfileWorkspace w;
  w.split = cuda::ProfileSplit{work_steps(profile), profile.blocks};
  w.pieces = cuda::profile_pieces(w.split, cuda::profile_key_steps(profile.layout.tokens()));
  const int64_t records = slots * rows * w.pieces * outputs;
  w.stats = 0;
  w.out = round(w.stats + records * sizeof(float) * 2);
  w.errors = round(w.out + records * dim * sizeof(float));
  w.bytes = round(w.errors + slots * rows * outputs * sizeof(double));
  return w;
}

}  // namespace

// ---- Masks ----------------------------------------------------------------------------------

GpuPatterns make_gpu_patterns(const VideoLayout& layout, std::span<const Pattern> candidates, int block_q,
                              int block_k, Device device) {
  layout.validate();
  VDIT_CHECK(block_q >= 1 && block_k >= 1, ErrorCode::invalid_argument,
             "block sizes must be >= 1, got block_q {} block_k {}", block_q, block_k);
  VDIT_CHECK(device.is_cuda(), ErrorCode::invalid_argument, "GPU patterns need a CUDA device, got {}",
             device.to_string());
  GpuPatterns patterns;
  patterns.layout = layout;
  patterns.candidates.assign(candidates.begin(), candidates.end());
  patterns.block_q = block_q;
  patterns.block_k = block_k;
  const std::vector<cuda::MaskPattern> table = resolved_table(patterns);
  const int64_t bytes = std::max<int64_t>(1, static_cast<int64_t>(table.size() * sizeof(cuda::MaskPattern)));
  Tensor host = Tensor::zeros(Shape{bytes}, DType::u8);
  if (!table.empty()) std::memcpy(host.raw_data(), table.data(), table.size() * sizeof(cuda::MaskPattern));
  patterns.table = host.to(device);
  return patterns;
}

int64_t GpuPatterns::kept_tiles(int code) const {
  VDIT_CHECK(code >= -1 && code < static_cast<int>(candidates.size()), ErrorCode::invalid_argument,
             "slot code {} outside [-1, {})", code, candidates.size());
  const cuda::MaskGeometry g = mask_geometry(layout, block_q, block_k);
  const cuda::MaskPattern p = code < 0 ? cuda::MaskPattern{} : resolve_pattern(layout, candidates[code], block_k);
  int64_t tiles = 0;
  for (int64_t qb = 0; qb < g.q_blocks; ++qb) tiles += cuda::mask_row_tiles(g, p, qb);
  return tiles;
}

GpuBlockMask allocate_gpu_block_mask(const GpuPatterns& patterns, int slots, bool allow_dense) {
  VDIT_CHECK(slots >= 1, ErrorCode::invalid_argument, "GPU block mask needs at least one slot, got {}", slots);
  VDIT_CHECK(allow_dense || !patterns.candidates.empty(), ErrorCode::invalid_argument,
             "GPU block mask with no candidates and no dense slots");
  GpuBlockMask mask;
  mask.tokens = patterns.layout.tokens();
  mask.block_q = patterns.block_q;
  mask.block_k = patterns.block_k;
  mask.slots = slots;
  int64_t widest = 0;
  for (int code = allow_dense ? -1 : 0; code < static_cast<int>(patterns.candidates.size()); ++code)
    widest = std::max(widest, patterns.kept_tiles(code));
  const int64_t capacity = widest * slots;
  VDIT_CHECK(capacity <= std::numeric_limits<int32_t>::max() &&
                 slots * mask.q_blocks() < std::numeric_limits<int32_t>::max(),
             ErrorCode::unsupported, "GPU block mask of {} slots x {} tiles does not fit int32 offsets", slots, widest);
  const Device device = patterns.table.device();
  mask.row_offsets = Tensor::empty(Shape{slots * mask.q_blocks() + 1}, DType::i32, device);
  mask.key_blocks = Tensor::empty(Shape{std::max<int64_t>(capacity, 1)}, DType::i32, device);
  return mask;
}

void build_block_mask_gpu(const GpuPatterns& patterns, const Tensor& slot_codes, const GpuBlockMask& mask,
                          void* stream) {
  VDIT_CHECK(mask.tokens == patterns.layout.tokens() && mask.block_q == patterns.block_q &&
                 mask.block_k == patterns.block_k,
             ErrorCode::invalid_argument, "GPU block mask ({} tokens, blocks {}x{}) was not made for these patterns "
             "({} tokens, blocks {}x{})", mask.tokens, mask.block_q, mask.block_k, patterns.layout.tokens(),
             patterns.block_q, patterns.block_k);
  check_gpu_tensor(slot_codes, DType::i32, mask.slots, "slot_codes");
  check_gpu_tensor(mask.row_offsets, DType::i32, mask.slots * mask.q_blocks() + 1, "mask.row_offsets");
  cuda::MaskBuildParams p;
  p.geometry = mask_geometry(patterns.layout, patterns.block_q, patterns.block_k);
  p.patterns = static_cast<const cuda::MaskPattern*>(patterns.table.raw_data());
  p.num_patterns = static_cast<int>(patterns.candidates.size());
  p.slot_codes = slot_codes.data<int32_t>();
  p.slots = mask.slots;
  p.row_offsets = mask.row_offsets.data<int32_t>();
  p.key_blocks = mask.key_blocks.data<int32_t>();
  p.capacity = mask.key_blocks.numel();
  check_cuda(cuda::launch_build_block_mask(p, as_stream(stream)), "build_block_mask_gpu");
}

BlockMask GpuBlockMask::to_host() const {
  BlockMask mask;
  mask.tokens = tokens;
  mask.block_q = block_q;
  mask.block_k = block_k;
  mask.heads = slots;
  check_cuda(cudaDeviceSynchronize(), "GpuBlockMask::to_host");
  const Tensor offsets = row_offsets.to(Device::cpu());
  const int32_t* o = offsets.data<int32_t>();
  mask.row_offsets.assign(o, o + offsets.numel());
  const int64_t used = mask.row_offsets.back();
  VDIT_CHECK(used >= 0 && used <= key_blocks.numel(), ErrorCode::internal,
             "GPU block mask uses {} key blocks, has room for {}", used, key_blocks.numel());
  if (used > 0) {
    const Tensor blocks = key_blocks.slice(0, 0, used).to(Device::cpu());
    mask.key_blocks.assign(blocks.data<int32_t>(), blocks.data<int32_t>() + used);
  }
  return mask;
}

// ---- Permutation ----------------------------------------------------------------------------

void check_permute_flags(const Tensor& flags, int64_t batch, int64_t heads, Device device, const char* what) {
  VDIT_CHECK(flags.defined() && flags.device() == device && flags.dtype() == DType::u8 && flags.is_contiguous() &&
                 flags.rank() == 1 && (flags.size(0) == heads || flags.size(0) == batch * heads),
             ErrorCode::invalid_argument, "{}: permute flags must be u8 [{}] or [{}] on {}, got {}", what, heads,
             batch * heads, device.to_string(), flags.defined() ? flags.describe() : "undefined");
}

void gather_to_token_major_gpu(std::span<const Tensor> x, std::span<const Tensor> out, const VideoLayout& layout,
                               const Tensor& permute, void* stream, bool flagged_slots_only) {
  permute_gpu(x, out, layout, permute, stream, true, flagged_slots_only);
}

void scatter_from_token_major_gpu(std::span<const Tensor> x, std::span<const Tensor> out, const VideoLayout& layout,
                                  const Tensor& permute, void* stream) {
  permute_gpu(x, out, layout, permute, stream, false);
}

// ---- Profiler -------------------------------------------------------------------------------

GpuProfile allocate_gpu_profile(const GpuPatterns& patterns, int batch, int heads, int head_dim, DType dtype,
                                const ProfileOptions& options) {
  const int count = static_cast<int>(patterns.candidates.size());
  VDIT_CHECK(count >= 1 && count <= cuda::kProfileMaxCandidates, ErrorCode::unsupported,
             "GPU profiler takes 1 to {} candidates, got {}", cuda::kProfileMaxCandidates, count);
  for (const Pattern& c : patterns.candidates) {
    VDIT_CHECK(c.kind != Pattern::Kind::tile, ErrorCode::unsupported,
               "GPU profiler candidate '{}': only dense, spatial and temporal candidates", c.to_string());
  }
  VDIT_CHECK(options.block_q == patterns.block_q && options.block_k == patterns.block_k, ErrorCode::invalid_argument,
             "GPU profiler blocks {}x{} differ from the patterns' {}x{}", options.block_q, options.block_k,
             patterns.block_q, patterns.block_k);
  VDIT_CHECK(std::isfinite(options.dense_fallback) && options.dense_fallback >= 0.0, ErrorCode::invalid_argument,
             "GPU profiler dense_fallback is {}, expected a finite value >= 0", options.dense_fallback);
  VDIT_CHECK(batch >= 1 && heads >= 1, ErrorCode::invalid_argument, "GPU profiler batch {} heads {}", batch, heads);
  VDIT_CHECK(head_dim == 64 || head_dim == 96 || head_dim == 128, ErrorCode::unsupported,
             "GPU profiler head dim {} (64, 96 or 128)", head_dim);
  VDIT_CHECK(dtype == DType::bf16 || dtype == DType::f16, ErrorCode::unsupported,
             "GPU profiler dtype {}, expected bf16 or f16", dtype_name(dtype));
  const cuda::ProfileKernel kernel = cuda::profile_kernel(head_dim, dtype == DType::bf16, count);
  GpuProfile profile;
  profile.batch = batch;
  profile.heads = heads;
  profile.head_dim = head_dim;
  profile.dtype = dtype;
  profile.wgmma = kernel == cuda::ProfileKernel::wgmma;
  profile.options = options;
  profile.layout = patterns.layout;
  profile.patterns = patterns.candidates;
  const Device device = patterns.table.device();
  std::vector<int32_t> rows;
  for (int b = 0; b < batch; ++b) {
    const std::vector<int64_t> item = profile_sample_rows(patterns.layout, options, b);
    if (b == 0) profile.sample_rows = static_cast<int>(item.size());
    rows.insert(rows.end(), item.begin(), item.end());
  }
  VDIT_CHECK(profile.sample_rows <= cuda::kProfileMaxSampleRows, ErrorCode::unsupported,
             "GPU profiler samples at most {} rows, got {}", cuda::kProfileMaxSampleRows, profile.sample_rows);
  Tensor host_rows = Tensor::empty(Shape{batch, profile.sample_rows}, DType::i32);
  std::copy(rows.begin(), rows.end(), host_rows.data<int32_t>());
  profile.rows = host_rows.to(device);
  const int64_t slots = int64_t{batch} * heads;
  const int row_tiles = cuda::profile_row_tiles(profile.sample_rows);
  const cuda::ProfileParams p = profile_params(patterns, profile);
  profile.kept = Tensor::empty(Shape{batch, row_tiles, p.key_steps, cuda::profile_kept_threads(kernel),
                                     cuda::kProfileKeptWords},
                               DType::i32, device);
  check_cuda(cuda::launch_profile_kept(p, reinterpret_cast<uint32_t*>(profile.kept.data<int32_t>()), nullptr),
             "allocate_gpu_profile: key masks");
  profile.tickets = Tensor::empty(Shape{slots}, DType::i32, device);
  check_cuda(cudaMemsetAsync(profile.tickets.raw_data(), 0, profile.tickets.nbytes(), nullptr),
             "allocate_gpu_profile: tickets");
  check_cuda(cudaStreamSynchronize(nullptr), "allocate_gpu_profile: key masks");
  profile.blocks = cuda::profile_blocks(work_steps(profile), kernel);
  profile.choice = Tensor::empty(Shape{slots}, DType::i32, device);
  profile.permute = Tensor::empty(Shape{slots}, DType::u8, device);
  profile.mse = Tensor::empty(Shape{slots, count}, DType::f32, device);
  profile.relative_error = Tensor::empty(Shape{slots, count}, DType::f32, device);
  profile.workspace = Tensor::empty(Shape{static_cast<int64_t>(profile_workspace(profile).bytes)}, DType::u8, device);
  return profile;
}

void set_gpu_profile_blocks(GpuProfile& profile, int blocks) {
  VDIT_CHECK(profile.rows.defined(), ErrorCode::invalid_argument,
             "set_gpu_profile_blocks: the profile is not allocated");
  const int64_t total = work_steps(profile);
  VDIT_CHECK(blocks >= 1 && blocks <= total, ErrorCode::invalid_argument,
             "set_gpu_profile_blocks: {} blocks, expected 1 to {} (the profile's steps of work)", blocks, total);
  profile.blocks = blocks;
  const size_t bytes = profile_workspace(profile).bytes;
  if (profile.workspace.nbytes() < bytes) {
    profile.workspace = Tensor::empty(Shape{static_cast<int64_t>(bytes)}, DType::u8, profile.workspace.device());
  }
}

void profile_heads_gpu(const Tensor& q, const Tensor& k, const Tensor& v, const GpuPatterns& patterns,
                       const ProfileOptions& options, const GpuProfile& profile, void* stream) {
  auto names = [](const std::vector<Pattern>& candidates) {
    std::string list;
    for (const Pattern& c : candidates) list += (list.empty() ? "" : " ") + c.to_string();
    return list;
  };
  const ProfileOptions& made = profile.options;
  VDIT_CHECK(profile.rows.defined() && profile.layout == patterns.layout && profile.patterns == patterns.candidates &&
                 patterns.block_q == made.block_q && patterns.block_k == made.block_k,
             ErrorCode::invalid_argument,
             "profile_heads_gpu: the profile was made for layout {}, candidates [{}] and blocks {}x{}, got layout {}, "
             "[{}] and {}x{}",
             profile.layout.to_string(), names(profile.patterns), made.block_q, made.block_k,
             patterns.layout.to_string(), names(patterns.candidates), patterns.block_q, patterns.block_k);
  VDIT_CHECK(options.sample_rows == made.sample_rows && options.seed == made.seed && options.block_q == made.block_q &&
                 options.block_k == made.block_k,
             ErrorCode::invalid_argument, "profile_heads_gpu: options (rows {}, seed {}, blocks {}x{}) differ from the "
             "profile's (rows {}, seed {}, blocks {}x{})", options.sample_rows, options.seed, options.block_q,
             options.block_k, made.sample_rows, made.seed, made.block_q, made.block_k);
  VDIT_CHECK(std::isfinite(options.dense_fallback) && options.dense_fallback >= 0.0, ErrorCode::invalid_argument,
             "profile_heads_gpu: dense_fallback is {}, expected a finite value >= 0", options.dense_fallback);
  const Shape shape{profile.batch, patterns.layout.tokens(), profile.heads, profile.head_dim};
  const DType dtype = profile.dtype;
  for (const Tensor* t : {&q, &k, &v}) {
    VDIT_CHECK(t->defined() && t->device().is_cuda() && t->is_contiguous() && t->dtype() == dtype &&
                   t->shape() == shape,
               ErrorCode::invalid_argument,
               "profile_heads_gpu: q, k, v must be contiguous GPU {} {} (the profile's), got {}",
               dtype_name(dtype), shape.to_string(), t->defined() ? t->describe() : "undefined");
  }
  const int64_t total = work_steps(profile);  // profile.layout is patterns.layout (checked above)
  VDIT_CHECK(profile.blocks >= 1 && profile.blocks <= total, ErrorCode::invalid_argument,
             "profile_heads_gpu: {} blocks for {} steps of work", profile.blocks, total);
  cuda::ProfileParams p = profile_params(patterns, profile);
  // The kernel (and its keep bits' order) was chosen for the device current at allocation.
  VDIT_CHECK(cuda::profile_kernel(p.head_dim, p.bf16, p.candidates) == p.kernel && profile.kept.rank() == 5 &&
                 profile.kept.size(3) == cuda::profile_kept_threads(p.kernel),
             ErrorCode::invalid_argument,
             "profile_heads_gpu: the profile was made for the {} kernel (keep bits {}), which this device does not "
             "run or those bits do not fit",
             profile.wgmma ? "wgmma" : "mma.sync", profile.kept.describe());
  const ProfileWorkspace w = profile_workspace(profile);
  VDIT_CHECK(profile.workspace.nbytes() >= w.bytes, ErrorCode::invalid_argument,
             "profile_heads_gpu: workspace of {} bytes, needs {}", profile.workspace.nbytes(), w.bytes);
  const int64_t slots = int64_t{profile.batch} * profile.heads;
  const Tensor& tickets = profile.tickets;
  VDIT_CHECK(tickets.defined() && tickets.device().is_cuda() && tickets.dtype() == DType::i32 &&
                 tickets.numel() == slots,
             ErrorCode::invalid_argument, "profile_heads_gpu: tickets {}, expected GPU i32, one a slot ({})",
             tickets.defined() ? tickets.describe() : "undefined", slots);
  p.q = q.raw_data();
  p.k = k.raw_data();
  p.v = v.raw_data();
  p.kept = reinterpret_cast<const uint32_t*>(profile.kept.data<int32_t>());
  p.split = w.split;
  p.pieces = w.pieces;
  p.scale_log2 = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(profile.head_dim)));
  p.dense_fallback = options.dense_fallback;
  auto* base = static_cast<uint8_t*>(profile.workspace.raw_data());
  p.partial_stats = reinterpret_cast<float2*>(base + w.stats);
  p.partial_out = reinterpret_cast<float*>(base + w.out);
  p.row_errors = reinterpret_cast<double*>(base + w.errors);
  p.tickets = reinterpret_cast<uint32_t*>(profile.tickets.data<int32_t>());
  p.choice = profile.choice.data<int32_t>();
  p.permute = profile.permute.data<uint8_t>();
  p.mse = profile.mse.data<float>();
  p.relative_error = profile.relative_error.data<float>();
  check_cuda(cuda::launch_profile_heads(p, as_stream(stream)), "profile_heads_gpu");
}

ProfileResult GpuProfile::to_host() const {
  check_cuda(cudaDeviceSynchronize(), "GpuProfile::to_host");
  ProfileResult result;
  result.batch = batch;
  result.heads = heads;
  const int candidates = static_cast<int>(patterns.size());
  result.candidates = candidates;
  const Tensor c = choice.to(Device::cpu());
  result.choice.assign(c.data<int32_t>(), c.data<int32_t>() + c.numel());
  const int64_t n = int64_t{batch} * heads * candidates;
  const Tensor m = mse.to(Device::cpu()), r = relative_error.to(Device::cpu());
  result.mse.assign(m.data<float>(), m.data<float>() + n);
  result.relative_error.assign(r.data<float>(), r.data<float>() + n);
  return result;
}

}  // namespace vdit
