#include "ops/op_timeline.h"

#include <algorithm>

#ifdef VDIT_HAVE_CUDA
#include "ops/ops_cuda.h"
#endif

namespace vdit {

OpTimeline::OpTimeline(const ExecContext& ctx) : device_(ctx.device), stream_(ctx.stream) {
#ifndef VDIT_HAVE_CUDA
  VDIT_CHECK(device_.is_cpu(), ErrorCode::invalid_argument, "OpTimeline: {} in a build without CUDA",
             device_.to_string());
#endif
}

OpTimeline::~OpTimeline() {
#ifdef VDIT_HAVE_CUDA
  for (void* e : events_) ops::cuda::destroy_event(e);
#endif
}

void OpTimeline::begin() {
  used_ = 0;
  depth_ = 0;
  times_.clear();
  categories_.clear();
  record();
}

void OpTimeline::mark(std::string_view category) {
  VDIT_CHECK(used_ > 0, ErrorCode::invalid_argument, "OpTimeline: mark(\"{}\") before begin()", category);
  categories_.emplace_back(category);
  record();
}

void OpTimeline::record() {
  if (device_.is_cpu()) {
    times_.push_back(std::chrono::steady_clock::now());
    ++used_;
    return;
  }
#ifdef VDIT_HAVE_CUDA
  if (used_ == events_.size()) events_.push_back(ops::cuda::create_event());
  ops::cuda::record_event(events_[used_++], stream_);
#endif
}

std::vector<OpTime> OpTimeline::finish() {
  std::vector<OpTime> totals;
  for (size_t i = 0; i < categories_.size(); ++i) {
    double ms = 0.0;
    if (device_.is_cpu()) {
      ms = std::chrono::duration<double, std::milli>(times_[i + 1] - times_[i]).count();
    } else {
#ifdef VDIT_HAVE_CUDA
      ms = ops::cuda::event_elapsed_ms(events_[i], events_[i + 1]);
#endif
    }
    auto it = std::find_if(totals.begin(), totals.end(), [&](const OpTime& t) { return t.category == categories_[i]; });
    if (it == totals.end()) it = totals.insert(totals.end(), OpTime{categories_[i], 0.0, 0});
    it->ms += ms;
    ++it->calls;
  }
  return totals;
}

}  // namespace vdit
