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

// On a computing thread: adopts the requested count when it differs.
inline void adopt_requested_threads() {
  const int n = requested_threads().load();
  if (n > 0 && n != at::get_num_threads()) at::set_num_threads(n);
}
inline int threads() { return at::get_num_threads(); }

}  // namespace udaci::compat
