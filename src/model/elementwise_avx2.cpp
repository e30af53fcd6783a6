// SwiGLU's product with AVX2 + FMA (compiled with -mavx2 -mfma; called only
// when cpu_features.hpp has seen them): silu(g) * u = g / (1 + e^-g) * u, the
// formula of ATen's vectorised silu, with udaci's vector exp.
#include <immintrin.h>

#include <cstdint>

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

}  // namespace detail
}  // namespace udaci
