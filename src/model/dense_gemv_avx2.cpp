// AVX2 + FMA body of the fp32 GEMV of dense projections (model/linear.cpp;
// compiled with -mavx2 -mfma, called after a run-time check).
#include <immintrin.h>

#include "model/dense_gemv.hpp"
#include "model/avx2_util.hpp"

namespace udaci {
namespace detail {

namespace {

// Rows r .. r + R - 1 of w against activation rows j0 .. j0 + N - 1: each
// weight row is read once for the N activation rows.
template <int R, int N>
void block(const float* w, int64_t in, const float* x, int64_t j0, float* y, int64_t ldy, int64_t r) {
  __m256 acc[R][N];
  for (int i = 0; i < R; ++i)
    for (int k = 0; k < N; ++k) acc[i][k] = _mm256_setzero_ps();
  const int64_t full = in / 8 * 8;
  for (int64_t c = 0; c < full; c += 8) {
    __m256 xv[N];
    for (int k = 0; k < N; ++k) xv[k] = _mm256_loadu_ps(x + (j0 + k) * in + c);
    for (int i = 0; i < R; ++i) {
      const __m256 wv = _mm256_loadu_ps(w + (r + i) * in + c);
      for (int k = 0; k < N; ++k) acc[i][k] = _mm256_fmadd_ps(wv, xv[k], acc[i][k]);
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int k = 0; k < N; ++k) {
      float s = hsum_avx2(acc[i][k]);
      for (int64_t c = full; c < in; ++c) s += w[(r + i) * in + c] * x[(j0 + k) * in + c];
      y[(j0 + k) * ldy + r + i] = s;
    }
  }
}

template <int N>
void rows_n(const float* w, int64_t in, const float* x, int64_t j0, float* y, int64_t ldy, int64_t r0,
            int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) block<4, N>(w, in, x, j0, y, ldy, r);
  for (; r < r1; ++r) block<1, N>(w, in, x, j0, y, ldy, r);
}

}  // namespace

void dense_gemv_avx2(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0,
                     int64_t r1, int64_t ldy) {
  int64_t j = 0;
  for (; j + 2 <= n; j += 2) rows_n<2>(w, in, x, j, y, ldy, r0, r1);
  for (; j < n; ++j) rows_n<1>(w, in, x, j, y, ldy, r0, r1);
}

}  // namespace detail
}  // namespace udaci
