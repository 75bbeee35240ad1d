// The attention policy: decides, per (step, layer, head), how a model's self-attention runs (dense,
// a fixed pattern, a per-layer plan, or profiled spatial/temporal heads after dense warm-up), runs
// it, and records the density it used per layer and step. Semantics: shared/DESIGN.md sections 2-5.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "vdit/attention.h"

namespace vdit {

namespace policy_cuda {
class ProfiledGpu;  // attention_policy_cuda.h (CUDA builds)
}

// Where one self-attention call sits in a run.
struct AttentionSite {
  int step = 0, steps = 1;    // denoising step and the run's step count
  int layer = 0, layers = 1;  // transformer block and the model's block count
  VideoLayout layout;         // of the sequence Q, K and V hold
};

// What one call used: per (batch item, head) slot (b*H + h) the pattern, and the kept fraction of
// token pairs over all slots.
struct AttentionRecord {
  int step = 0, layer = 0;
  std::vector<Pattern> heads;
  double density = 1.0;
};

// A per-layer plan: layer -> pattern; layers it does not name use `fallback`.
struct LayerPlan {
  std::map<int, Pattern> layers;
  Pattern fallback = Pattern::dense();
  const Pattern& at(int layer) const;
};

// Parses {"layers": {"0": "dense", "1": "tile:2", ...}, "default": "dense"} ("default" optional);
// errors name `source` and the bad key or value.
LayerPlan parse_layer_plan(const std::string& json_text, const std::string& source);
LayerPlan load_layer_plan(const std::string& path);

struct ProfiledOptions {
  std::vector<Pattern> candidates = {Pattern::spatial(0.25), Pattern::temporal(0.25)};
  double warmup_fraction = 0.25;  // the first floor(fraction * steps) steps run dense
  int warmup_layers = 1;          // and so do the first layers of every step
  ProfileOptions profile;         // rows sampled, seed, dense fallback, block sizes
};

// Block masks by (layout, per-slot patterns, block sizes, device): each is built, and on a GPU
// uploaded with its permute flags, once, then reused by every layer and step that asks for it.
// Holds the `capacity` most recently built masks.
class MaskCache {
 public:
  struct Entry {
    VideoLayout layout;
    std::vector<Pattern> patterns;
    int block_q = 0, block_k = 0;
    Device device;
    BlockMask mask;                // on the host
    double density = 1.0;          // mask.density()
    std::vector<uint8_t> permute;  // per slot: its pattern is permuted (temporal)
    bool any_permuted = false;
    GpuBlockMask gpu_mask;  // on a GPU device: the uploaded mask
    Tensor gpu_permute;     // and the permute flags (u8 [slots]) when any_permuted
  };

  explicit MaskCache(size_t capacity = 32) : capacity_(capacity) {}
  std::shared_ptr<const Entry> get(const ExecContext& ctx, const VideoLayout& layout,
                                   std::span<const Pattern> patterns, int block_q, int block_k);
  size_t size() const { return entries_.size(); }

 private:
  size_t capacity_;
  std::vector<std::shared_ptr<const Entry>> entries_;  // oldest first; entries never change once built
};

class AttentionPolicy {
 public:
  enum class Kind { dense, fixed, plan, profiled };

  static AttentionPolicy dense();
  // Every head of every layer and step uses `pattern`, with blocks of block_q x block_k tokens.
  static AttentionPolicy fixed(const Pattern& pattern, int block_q = 128, int block_k = 128);
  static AttentionPolicy plan(LayerPlan plan, int block_q = 128, int block_k = 128);
  static AttentionPolicy profiled(ProfiledOptions options);

  Kind kind() const { return kind_; }

  // Self-attention O = softmax(Q K^T / sqrt(D)) V of q, k, v [B, S, H, D] (S = site.layout.tokens())
  // under the policy's patterns at `site`; O is [B, S, H, D]. Appends a record. On the CPU it runs
  // the reference attention; on a GPU the flash kernels, with masks uploaded and temporal heads
  // permuted on the GPU. Masks of fixed patterns come from the policy's MaskCache: a pattern seen
  // before is neither rebuilt nor uploaded again. The profiled policy on a GPU (bf16/f16 Q, K, V,
  // head dim 64, 96 or 128, 1 to 3 non-tile candidates) profiles, builds its mask and permutes on the
  // GPU with no host copy and no wait (policy_cuda::ProfiledGpu); otherwise it profiles on host
  // copies of Q, K, V. Policies copied from one another share that GPU state: run them on one stream.
  Tensor attend(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionSite& site);

  // The records of the calls so far. GPU-profiled calls leave their chosen codes on the GPU; the
  // first records() after such calls waits for the GPU (cudaDeviceSynchronize) and copies the codes
  // back to fill in their patterns and densities. Not to be called while another thread uses the policy.
  const std::vector<AttentionRecord>& records() const;
  void clear_records();

 private:
  Tensor attend_uniform(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const AttentionSite& site, const Pattern& pattern);
  Tensor attend_profiled(const ExecContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionSite& site);

  Kind kind_ = Kind::dense;
  Pattern pattern_;
  LayerPlan plan_;
  ProfiledOptions profiled_;
  int block_q_ = 128, block_k_ = 128;
  // A GPU-profiled record whose patterns and density wait for its slot codes (i32 [B*H] on the GPU).
  struct PendingRecord {
    size_t index = 0;                  // into records_
    Tensor choice;                     // slot codes, -1 dense, else a candidate index
    std::vector<double> code_density;  // one slot's density by code + 1
  };
  void resolve_pending() const;
  mutable std::vector<AttentionRecord> records_;
  mutable std::vector<PendingRecord> pending_;
  MaskCache masks_;
  std::shared_ptr<policy_cuda::ProfiledGpu> gpu_profiled_;  // created by the first GPU-profiled call
};

}  // namespace vdit
