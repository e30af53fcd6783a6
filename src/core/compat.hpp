// The one place where differences between LibTorch 1.13 (Debian) and LibTorch
// 2.x (a PyTorch install) are handled. Everything else includes ATen directly
// and uses only API that both versions share.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>

#if __has_include(<torch/version.h>)
#include <torch/version.h>
#endif

#ifndef TORCH_VERSION_MAJOR
#define TORCH_VERSION_MAJOR 1
#endif

namespace udaci::compat {

inline constexpr int kTorchMajor = TORCH_VERSION_MAJOR;

// The count last given to set_threads (0: never). Under OpenMP, ATen's
// thread count is per OS thread, so threads that compute for a caller (the
// engine's scheduler) apply this value themselves; cheaply, because
// at::set_num_threads / at::init_num_threads rebuild a thread pool each call
// (about 8 ms here).
inline std::atomic<int>& requested_threads() {
  static std::atomic<int> n{0};
  return n;
}

// Sets ATen's intra-op thread count; n <= 0 keeps the current setting.
inline void set_threads(int n) {
  if (n > 0) {
    at::set_num_threads(n);
    requested_threads().store(n);
  }
}

// On the engine's computing thread: its heavy loops run on udaci's own pool
// (core/thread_pool) with the requested count, and BLAS on its own threads,
// so ATen's OpenMP team is set to one thread there. With both teams at two
// threads their idle helpers spun against each other on a 2-core machine
// (measured: a 56-token prefill took 340 ms instead of 105).
// The kernel thread count of a thread that has adopted (0: none adopted).
inline int& adopted_kernel_threads() {
  static thread_local int n = 0;
  return n;
}
inline void adopt_requested_threads() {
  const int requested = requested_threads().load();
  int& mine = adopted_kernel_threads();
  if (requested > 0) {
    mine = requested;
  } else if (mine == 0) {
    mine = at::get_num_threads();  // ATen's default, before it is set to 1 below
  }
  if (at::get_num_threads() != 1) at::set_num_threads(1);
}
inline int threads() { return at::get_num_threads(); }

// Threads for udaci's own kernels (core/thread_pool): the adopted count on an
// engine's computing thread, else the count given to set_threads, else ATen's.
inline int kernel_threads() {
  if (const int mine = adopted_kernel_threads(); mine > 0) return mine;
  const int n = requested_threads().load();
  return n > 0 ? n : at::get_num_threads();
}

}  // namespace udaci::compat
