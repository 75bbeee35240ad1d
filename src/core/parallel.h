// parallel_for: splits [0, n) into contiguous chunks over worker threads. No global pool: each call
// starts its threads, which costs ~20 us and is meant for work of a millisecond or more.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

namespace vdit {

// Threads to use: VDIT_THREADS when set, else the hardware's count.
int default_thread_count();

// Calls body(begin, end) on disjoint chunks covering [0, n). Exceptions are rethrown on the caller.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int threads = 0);

}  // namespace vdit
