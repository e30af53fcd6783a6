#include "core/thread_pool.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/threads.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define UDACI_PAUSE() _mm_pause()
#else
#define UDACI_PAUSE() std::this_thread::yield()
#endif

namespace udaci {

namespace {

using Fn = std::function<void(int64_t, int64_t)>;
using Clock = std::chrono::steady_clock;

thread_local bool t_in_task = false;

// A child of fork() has none of the parent's helper threads: it runs serially.
std::atomic<bool> g_forked{false};

// Spin with `pause` this long after a job, then yield the core between checks
// until kSleepAfter, then sleep until the next job.
constexpr auto kSpinFor = std::chrono::microseconds(50);
constexpr auto kSleepAfter = std::chrono::microseconds(1000);

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(sleep_mu_);
      stop_.store(true);
      generation_.fetch_add(1, std::memory_order_release);
    }
    sleep_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  int workers() {
    std::lock_guard<std::mutex> lk(job_mu_);
    return static_cast<int>(workers_.size());
  }

  void run(int64_t begin, int64_t end, int64_t grain, const Fn& fn) {
    const int64_t range = end - begin;
    const int64_t threads = std::max(1, kernel_threads());
    grain = std::max<int64_t>(1, grain);
    const int64_t parts = std::min<int64_t>(threads, (range + grain - 1) / grain);
    if (parts <= 1 || t_in_task || g_forked.load(std::memory_order_relaxed)) {
      fn(begin, end);
      return;
    }
    std::unique_lock<std::mutex> job(job_mu_, std::try_to_lock);
    if (!job.owns_lock()) {  // another thread's job is running: do this one alone
      fn(begin, end);
      return;
    }
    while (static_cast<int64_t>(workers_.size()) < parts - 1) {
      const size_t index = workers_.size();
      // It starts from the generation before this job's, so that it takes
      // part in this job however late the OS first runs it.
      const uint64_t before = generation_.load(std::memory_order_acquire);
      workers_.emplace_back([this, index, before] { worker(index, before); });
    }
    fn_ = &fn;
    begin_ = begin;
    end_ = end;
    chunk_ = (range + parts - 1) / parts;
    parts_ = parts;
    error_ = nullptr;
    // Every helper acknowledges every job (those without a part too), so none
    // can still be reading this job's fields when the next one is written.
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(sleep_mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    if (sleeping_.load(std::memory_order_acquire) > 0) sleep_cv_.notify_all();
    run_part(0);
    while (pending_.load(std::memory_order_acquire) != 0) UDACI_PAUSE();
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void run_part(int64_t part) {
    if (part >= parts_) return;
    const int64_t b = begin_ + part * chunk_;
    const int64_t e = std::min(end_, b + chunk_);
    if (b >= e) return;
    const bool outer = t_in_task;
    t_in_task = true;
    try {
      (*fn_)(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(error_mu_);
      if (!error_) error_ = std::current_exception();
    }
    t_in_task = outer;
  }

  void worker(size_t index, uint64_t seen) {
    for (;;) {
      const Clock::time_point idle_since = Clock::now();
      uint32_t spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen) {
        UDACI_PAUSE();
        if ((++spins & 63) != 0) continue;
        const auto idle = Clock::now() - idle_since;
        if (idle < kSpinFor) continue;
        if (idle < kSleepAfter) {
          sched_yield();
          continue;
        }
        std::unique_lock<std::mutex> lk(sleep_mu_);
        sleeping_.fetch_add(1, std::memory_order_acq_rel);
        sleep_cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        sleeping_.fetch_sub(1, std::memory_order_acq_rel);
      }
      seen = generation_.load(std::memory_order_acquire);
      if (stop_.load()) return;
      run_part(static_cast<int64_t>(index) + 1);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::mutex job_mu_;  // one job at a time
  std::vector<std::thread> workers_;
  const Fn* fn_ = nullptr;
  int64_t begin_ = 0, end_ = 0, chunk_ = 0, parts_ = 0;
  std::exception_ptr error_;
  std::mutex error_mu_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stop_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
};

Pool& pool() {
  static Pool p;
  static const int registered = pthread_atfork(nullptr, nullptr, [] { g_forked.store(true); });
  (void)registered;
  return p;
}

}  // namespace

void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (begin >= end) return;
  pool().run(begin, end, grain, fn);
}

int thread_pool_workers() { return pool().workers(); }

}  // namespace udaci
