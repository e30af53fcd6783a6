#include "model/dense_gemm.hpp"

#include <algorithm>

#include "core/cpu_features.hpp"
#include "core/thread_pool.hpp"

namespace udaci {

namespace detail {
void dense_gemm_scalar(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0,
                       int64_t r1, int64_t ldy) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t r = r0; r < r1; ++r) {
      float s = 0.0f;
      for (int64_t c = 0; c < in; ++c) s += w[r * in + c] * x[j * in + c];
      y[j * ldy + r] = s;
    }
}
}  // namespace detail

int64_t dense_gemm_max_rows() {
  switch (active_kernel_isa()) {
    case KernelIsa::kAvx512: return 128;
    case KernelIsa::kAvx2: return 64;
    default: return 8;
  }
}

void dense_gemm(const float* w, int64_t out, int64_t in, const float* x, int64_t n, float* y) {
  const KernelIsa isa = active_kernel_isa();
  // Weight rows per task: ~64K multiply-adds outweigh waking a thread.
  const int64_t grain = std::max<int64_t>(4, 65536 / std::max<int64_t>(1, in * n));
  parallel_for(0, out, grain, [&](int64_t r0, int64_t r1) {
    if (isa == KernelIsa::kAvx512) {
      detail::dense_gemm_avx512(w, in, x, n, y, r0, r1, out);
    } else if (isa == KernelIsa::kAvx2) {
      detail::dense_gemm_avx2(w, in, x, n, y, r0, r1, out);
    } else {
      detail::dense_gemm_scalar(w, in, x, n, y, r0, r1, out);
    }
  });
}

}  // namespace udaci
