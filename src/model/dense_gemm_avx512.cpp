// AVX-512F body of the fp32 GEMM of dense projections (model/linear.cpp;
// compiled with the AVX-512 flags, called after a run-time check).
#include <immintrin.h>

namespace udaci {
namespace detail {
namespace {
// 4 weight rows x 6 activation rows: 24 accumulators, 6 activations and a
// weight in the 32 registers.
struct Simd {
  using V = __m512;
  static constexpr int kWidth = 16, kRows = 4, kActs = 6;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
};
}  // namespace
}  // namespace detail
}  // namespace udaci

#define UDACI_DENSE_FN dense_gemm_avx512
#include "model/dense_gemm_simd.inl"
