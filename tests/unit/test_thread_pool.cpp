// udaci's fork-join pool (core/thread_pool): every index once, really on more
// than one thread, exceptions back in the caller, nesting and concurrent
// callers.
#include "udaci_catch.hpp"

#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/threads.hpp"
#include "core/thread_pool.hpp"

using namespace udaci;

namespace {

struct ThreadsGuard {
  int before = aten_threads();
  explicit ThreadsGuard(int n) { set_threads(n); }
  ~ThreadsGuard() { set_threads(before); }
};

std::vector<int> visit_counts(int64_t begin, int64_t end, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(end));
  parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
    if (b >= e) hits[0] += 1000;  // an empty part: shows up as a wrong count
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
  });
  std::vector<int> out;
  for (auto& h : hits) out.push_back(h.load());
  return out;
}

}  // namespace

TEST_CASE("thread pool: every index exactly once", "[thread-pool]") {
  ThreadsGuard g(2);
  for (int64_t end : {1, 2, 3, 7, 64, 577, 49152}) {
    for (int64_t grain : {1, 4, 455, 100000}) {
      const std::vector<int> hits = visit_counts(0, end, grain);
      for (int64_t i = 0; i < end; ++i) REQUIRE(hits[static_cast<size_t>(i)] == 1);
    }
  }
  // a range that does not start at 0
  const std::vector<int> hits = visit_counts(5, 40, 3);
  for (int64_t i = 0; i < 40; ++i) REQUIRE(hits[static_cast<size_t>(i)] == (i >= 5 ? 1 : 0));
  int calls = 0;
  parallel_for(3, 3, 1, [&](int64_t, int64_t) { ++calls; });
  CHECK(calls == 0);
}

TEST_CASE("thread pool: two threads split the work, one thread does not", "[thread-pool]") {
  auto thread_ids = [](int64_t grain) {
    std::mutex mu;
    std::set<std::thread::id> ids;
    std::vector<std::pair<int64_t, int64_t>> parts;
    parallel_for(0, 1000, grain, [&](int64_t b, int64_t e) {
      std::lock_guard<std::mutex> lk(mu);
      ids.insert(std::this_thread::get_id());
      parts.emplace_back(b, e);
    });
    return std::make_pair(ids.size(), parts.size());
  };
  {
    ThreadsGuard g(2);
    CHECK(thread_ids(1) == std::make_pair(size_t{2}, size_t{2}));  // caller + one helper
    CHECK(thread_ids(1000) == std::make_pair(size_t{1}, size_t{1}));  // grain covers it all
    CHECK(thread_pool_workers() >= 1);
  }
  {
    ThreadsGuard g(1);
    CHECK(thread_ids(1) == std::make_pair(size_t{1}, size_t{1}));
  }
}

TEST_CASE("thread pool: an exception reaches the caller and the pool goes on", "[thread-pool]") {
  ThreadsGuard g(2);
  for (int round = 0; round < 3; ++round) {
    // thrown in the helper's part (the second half) and in the caller's
    REQUIRE_THROWS_WITH(parallel_for(0, 100, 1,
                                     [&](int64_t b, int64_t) {
                                       if (b >= (round == 0 ? 50 : 0)) throw std::runtime_error("part failed");
                                     }),
                        "part failed");
    const std::vector<int> hits = visit_counts(0, 100, 1);
    for (int h : hits) REQUIRE(h == 1);
  }
}

TEST_CASE("thread pool: nested loops and concurrent callers", "[thread-pool]") {
  ThreadsGuard g(2);
  std::atomic<int64_t> sum{0};
  parallel_for(0, 8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_for(0, 100, 1, [&](int64_t b2, int64_t e2) {  // runs on the calling thread alone
        for (int64_t j = b2; j < e2; ++j) sum += j;
      });
  });
  CHECK(sum.load() == 8 * 4950);

  // Four threads use the pool at once: one holds it, the others run alone.
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      adopt_requested_threads();
      for (int rep = 0; rep < 200; ++rep) {
        std::vector<int> hits = visit_counts(0, 257, 8);
        for (int h : hits)
          if (h != 1) wrong++;
      }
    });
  }
  for (auto& c : callers) c.join();
  CHECK(wrong.load() == 0);
}
