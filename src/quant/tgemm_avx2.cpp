// AVX2 + FMA + F16C kernels (this file is compiled with -mavx2 -mfma -mf16c
// and only called after cpu_features.hpp has checked the CPU).
#define UDACI_TGEMM_FN tgemm_avx2
#include "quant/tgemm_simd.inl"

namespace udaci {
namespace detail {

namespace {
int32_t hsum_epi32(__m256i v) {
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
  return _mm_cvtsi128_si32(s4);
}
}  // namespace

// Symmetric int8 per block of 32 (cols a multiple of 32); the same integers as
// quantize_acts_scalar: x * (1/d) rounded half to even.
void quantize_acts_avx2(const float* x, int64_t r0, int64_t r1, int64_t cols, QActs& out) {
  const int64_t nb = out.blocks;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t j = r0; j < r1; ++j) {
    const float* xr = x + j * cols;
    int8_t* qr = out.q.data() + j * nb * 32;
    for (int64_t b = 0; b < nb; ++b) {
      const float* p = xr + 32 * b;
      __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8);
      __m256 v2 = _mm256_loadu_ps(p + 16), v3 = _mm256_loadu_ps(p + 24);
      __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      const float d = _mm_cvtss_f32(m4) / 127.0f;
      const __m256 inv = _mm256_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
      const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, inv));
      const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, inv));
      const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, inv));
      const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, inv));
      const int32_t lo = hsum_epi32(_mm256_add_epi32(i0, i1));
      const int32_t hi = hsum_epi32(_mm256_add_epi32(i2, i3));
      // packs interleave 128-bit lanes; the permute restores element order.
      const __m256i q16a = _mm256_packs_epi32(i0, i1), q16b = _mm256_packs_epi32(i2, i3);
      const __m256i q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b), order);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qr + 32 * b), q8);
      out.d[static_cast<size_t>(j * nb + b)] = d;
      out.s[static_cast<size_t>(j * nb + b)] = d * static_cast<float>(lo + hi);
      out.s16[static_cast<size_t>(2 * (j * nb + b))] = lo;
      out.s16[static_cast<size_t>(2 * (j * nb + b) + 1)] = hi;
    }
  }
}

}  // namespace detail
}  // namespace udaci
