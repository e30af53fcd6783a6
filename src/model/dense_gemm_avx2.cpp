// AVX2 + FMA body of the fp32 GEMM of dense projections (model/linear.cpp;
// compiled with -mavx2 -mfma, called after a run-time check).
#include <immintrin.h>

#include "model/avx2_util.hpp"

namespace udaci {
namespace detail {
namespace {
// 4 weight rows x 3 activation rows: 12 accumulators, 3 activations and a
// weight in the 16 registers.
struct Simd {
  using V = __m256;
  static constexpr int kWidth = 8, kRows = 4, kActs = 3;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  static float hsum(V v) { return hsum_avx2(v); }
};
}  // namespace
}  // namespace detail
}  // namespace udaci

#define UDACI_DENSE_FN dense_gemm_avx2
#include "model/dense_gemm_simd.inl"
