// AVX-512F body of the GEMM of dense projections (model/linear.cpp; compiled
// with the AVX-512 flags, called after a run-time check).
#include <immintrin.h>

#include "model/dense_gemm.hpp"

namespace udaci {
namespace detail {

namespace {

// 4 weight rows x 6 activation rows: 24 accumulators, 6 activations and a
// weight in the 32 registers.
struct Avx512 {
  using V = __m512;
  static constexpr int kWidth = 16, kRows = 4, kActs = 6;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
};
struct F32 : Avx512 {
  using W = float;
  static V load_w(const float* p) { return _mm512_loadu_ps(p); }
  static float scalar(float v) { return v; }
};
struct BF16 : Avx512 {
  using W = uint16_t;
  static V load_w(const uint16_t* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  static float scalar(uint16_t v) { return bf16_bits_to_float(v); }
};
struct F16 : Avx512 {
  using W = uint16_t;
  static V load_w(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static float scalar(uint16_t v) { return _cvtsh_ss(v); }
};

}  // namespace
}  // namespace detail
}  // namespace udaci

#define UDACI_DENSE_FN dense_gemm_avx512
#define UDACI_DENSE_HALF_FN dense_gemm_half_avx512
#include "model/dense_gemm_simd.inl"
