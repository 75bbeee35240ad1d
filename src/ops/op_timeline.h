// Where the time of a forward goes, per op category, measured on the real forward: every op marks
// its end with its category (OpMark; linear adds its product shape), the attention policy marks its
// parts (profiler, mask builder, gather), and the time from one mark to the next is added to that
// category. On a CUDA device the marks are events recorded on the context's stream (nothing waits
// for the GPU until finish()); on the CPU, where ops run synchronously, wall clock. Off, at the cost
// of a null test per op, unless ExecContext::timeline points at one.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "ops/ops.h"

namespace vdit {

struct OpTime {
  std::string category;
  double ms = 0.0;  // summed over its calls
  int calls = 0;
};

class OpTimeline {
 public:
  explicit OpTimeline(const ExecContext& ctx);
  ~OpTimeline();
  OpTimeline(const OpTimeline&) = delete;
  OpTimeline& operator=(const OpTimeline&) = delete;

  void begin();  // forgets earlier marks and starts the clock
  void mark(std::string_view category);
  // An op's scope (OpMark): an op called inside another is part of the outer one's time.
  void enter() { ++depth_; }
  void leave(std::string_view category) {
    if (--depth_ == 0) mark(category);
  }
  // Time and calls per category since begin(), in the order the categories first appeared (waits
  // for the GPU).
  std::vector<OpTime> finish();

 private:
  void record();

  Device device_;
  void* stream_;
  std::vector<void*> events_;  // CUDA events, reused from one begin() to the next
  std::vector<std::chrono::steady_clock::time_point> times_;  // the CPU's marks
  size_t used_ = 0;
  int depth_ = 0;
  std::vector<std::string> categories_;
};

// Marks the end of an op of `category` on the context's timeline, if it has one.
inline void mark_op(const ExecContext& ctx, std::string_view category) {
  if (ctx.timeline) ctx.timeline->mark(category);
}

// Marks the end of the enclosing op when it goes out of scope, after its result is made:
// `OpMark mark(ctx, "layer_norm");` as an op's first line. Ops it calls are counted in its time.
class OpMark {
 public:
  OpMark(const ExecContext& ctx, std::string_view category) : timeline_(ctx.timeline) {
    if (!timeline_) return;  // off: nothing copied
    category_ = category;
    timeline_->enter();
  }
  ~OpMark() {
    if (!timeline_) return;
    try {
      timeline_->leave(category_);
    } catch (...) {  // a failed event record shows again at the next CUDA call; a destructor must not throw
    }
  }
  OpMark(const OpMark&) = delete;
  OpMark& operator=(const OpMark&) = delete;

 private:
  OpTimeline* timeline_;
  std::string category_;
};

}  // namespace vdit
