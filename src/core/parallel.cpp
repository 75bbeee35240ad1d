#include "core/parallel.h"

#include <cstdlib>
#include <mutex>

namespace vdit {

int default_thread_count() {
  if (const char* env = std::getenv("VDIT_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int threads) {
  if (n <= 0) return;
  int workers = static_cast<int>(std::min<int64_t>(threads > 0 ? threads : default_thread_count(), n));
  if (workers <= 1) {
    body(0, n);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int64_t begin, int64_t end) {
    try {
      body(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  const int64_t chunk = (n + workers - 1) / workers;
  for (int w = 1; w < workers; ++w) {
    int64_t begin = w * chunk, end = std::min(n, begin + chunk);
    if (begin < end) pool.emplace_back(run, begin, end);
  }
  run(0, std::min(n, chunk));
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace vdit
