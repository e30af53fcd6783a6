// SwiGLU's product with AVX2 + FMA (compiled with -mavx2 -mfma; called only
// when cpu_features.hpp has seen them): silu(g) * u = g / (1 + e^-g) * u, the
// formula of ATen's vectorised silu, with udaci's vector exp.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "model/avx2_util.hpp"
#include "model/elementwise.hpp"

namespace udaci {
namespace detail {

namespace {

inline __m256 swiglu8(__m256 g, __m256 u) {
  const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

}  // namespace

void swiglu_avx2(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {  // the tail through a padded vector, so every value takes the same path
    alignas(32) float g[8] = {}, u[8] = {}, o[8];
    for (int64_t j = i; j < n; ++j) {
      g[j - i] = gate[j];
      u[j - i] = up[j];
    }
    _mm256_store_ps(o, swiglu8(_mm256_load_ps(g), _mm256_load_ps(u)));
    for (int64_t j = i; j < n; ++j) out[j] = o[j - i];
  }
}

double log_sum_exp_avx2(const float* x, int64_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  __m256 vm = _mm256_set1_ps(ninf);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vm);
  float m = ninf;
  for (float l : lanes) m = std::max(m, l);
  for (int64_t j = i; j < n; ++j) m = std::max(m, x[j]);
  if (std::isinf(m) && m < 0) return m;
  vm = _mm256_set1_ps(m);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  if (i < n) {  // the tail through a vector whose padding lanes are zeroed after the exp
    alignas(32) float t[8];
    for (int j = 0; j < 8; ++j) t[j] = i + j < n ? x[i + j] - m : 0.0f;
    _mm256_store_ps(t, exp_avx2(_mm256_load_ps(t)));
    for (int64_t j = n - i; j < 8; ++j) t[j] = 0.0f;
    const __m256 e = _mm256_load_ps(t);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double d[4];
  _mm256_store_pd(d, _mm256_add_pd(lo, hi));
  return static_cast<double>(m) + std::log((d[0] + d[1]) + (d[2] + d[3]));
}

}  // namespace detail
}  // namespace udaci
