#include "model/elementwise.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu_features.hpp"

namespace udaci {
namespace detail {

void swiglu_scalar(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

double log_sum_exp_scalar(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  if (std::isinf(m) && m < 0) return m;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(std::exp(x[i] - m));
  return static_cast<double>(m) + std::log(sum);
}

}  // namespace detail

double log_sum_exp(const float* x, int64_t n) {
  return active_kernel_isa() >= KernelIsa::kAvx2 ? detail::log_sum_exp_avx2(x, n) : detail::log_sum_exp_scalar(x, n);
}

}  // namespace udaci
