#include "core/threads.hpp"

#include <ATen/Parallel.h>

#include <atomic>

namespace udaci {

namespace {

std::atomic<int> g_requested{0};
thread_local int t_adopted = 0;  // the kernel count this thread adopted (0: none)

}  // namespace

void set_threads(int n) {
  if (n <= 0) return;
  at::set_num_threads(n);
  g_requested.store(n);
}

int requested_threads() { return g_requested.load(); }

void adopt_requested_threads() {
  const int requested = g_requested.load();
  if (requested > 0) {
    t_adopted = requested;
  } else if (t_adopted == 0) {
    t_adopted = at::get_num_threads();  // ATen's default, before it is set to 1 below
  }
  if (at::get_num_threads() != 1) at::set_num_threads(1);
}

int kernel_threads() {
  if (t_adopted > 0) return t_adopted;
  const int n = g_requested.load();
  return n > 0 ? n : at::get_num_threads();
}

int aten_threads() { return at::get_num_threads(); }

}  // namespace udaci
