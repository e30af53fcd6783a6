// AVX2 + FMA (+ F16C) body of the GEMM of dense projections (model/linear.cpp;
// compiled with -mavx2 -mfma -mf16c, called after a run-time check).
#include <immintrin.h>

#include <cstring>

#include "model/avx2_util.hpp"
#include "model/dense_gemm.hpp"

namespace udaci {
namespace detail {

namespace {

// 4 weight rows x 3 activation rows: 12 accumulators, 3 activations and a
// weight in the 16 registers.
struct Avx2 {
  using V = __m256;
  static constexpr int kWidth = 8, kRows = 4, kActs = 3;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  static float hsum(V v) { return hsum_avx2(v); }
};
struct F32 : Avx2 {
  using W = float;
  static V load_w(const float* p) { return _mm256_loadu_ps(p); }
  static float scalar(float v) { return v; }
};
struct BF16 : Avx2 {
  using W = uint16_t;
  static V load_w(const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float scalar(uint16_t v) { return bf16_bits_to_float(v); }
};
struct F16 : Avx2 {
  using W = uint16_t;
  static V load_w(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static float scalar(uint16_t v) { return _cvtsh_ss(v); }
};

}  // namespace
}  // namespace detail
}  // namespace udaci

#define UDACI_DENSE_FN dense_gemm_avx2
#define UDACI_DENSE_HALF_FN dense_gemm_half_avx2
#include "model/dense_gemm_simd.inl"
