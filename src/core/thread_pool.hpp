#pragma once
// udaci's own fork-join pool for the kernels of a decode step.
//
// A decode step of SmolLM2 runs ~250 small parallel loops (projections,
// attention heads), 10-40 µs each. Under ATen's OpenMP backend the helper
// threads fall asleep between them and every loop pays a futex wake-up, which
// made two threads *slower* than one (measured: 73 vs 103 tokens/s). Here the
// helpers spin briefly between loops (first with `pause`, then yielding the
// core so that OpenBLAS or ATen threads that have work keep it), and sleep on
// a condition variable after ~1 ms without work.
//
// parallel_for(begin, end, grain, fn) calls fn(b, e) on equal disjoint
// sub-ranges that cover [begin, end), as many as min(kernel_threads(),
// ceil((end - begin) / grain)) (ATen's rule), the calling thread taking the
// first. It
// runs fn on the caller alone when the range is small, when called from inside
// a pool task, or while another thread's job holds the pool. An exception from
// fn is rethrown in the caller after every sub-range has finished.

#include <cstdint>
#include <functional>

namespace udaci {

void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Helper threads the pool has started so far (for tests).
int thread_pool_workers();

}  // namespace udaci
