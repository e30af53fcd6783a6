// The SIMD body of dense_gemm (model/dense_gemm.hpp), included by
// dense_gemm_avx2.cpp (8 floats a register) and dense_gemm_avx512.cpp (16).
// Before including, define UDACI_DENSE_FN (the function's name) and a struct
// `Simd` with: `using V` (the register type), `kRows`, `kActs` (the block:
// weight rows x activation rows, sized to the register file), `kWidth`,
// zero(), load(p), fma(a, b, acc) and hsum(v).
#include <algorithm>

#include "model/dense_gemm.hpp"

namespace udaci {
namespace detail {

namespace {

// Weight rows r .. r + R - 1 against activation rows j0 .. j0 + N - 1, as
// dot products along `in` (kWidth lanes each, summed at the end): each
// loaded weight vector serves N activation rows, each activation vector R
// weight rows.
template <int R, int N>
void dense_block(const float* w, int64_t in, const float* x, int64_t j0, float* y, int64_t ldy, int64_t r) {
  typename Simd::V acc[R][N];
  for (int i = 0; i < R; ++i)
    for (int k = 0; k < N; ++k) acc[i][k] = Simd::zero();
  const int64_t full = in / Simd::kWidth * Simd::kWidth;
  for (int64_t c = 0; c < full; c += Simd::kWidth) {
    typename Simd::V xv[N];
    for (int k = 0; k < N; ++k) xv[k] = Simd::load(x + (j0 + k) * in + c);
    for (int i = 0; i < R; ++i) {
      const typename Simd::V wv = Simd::load(w + (r + i) * in + c);
      for (int k = 0; k < N; ++k) acc[i][k] = Simd::fma(wv, xv[k], acc[i][k]);
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int k = 0; k < N; ++k) {
      float s = Simd::hsum(acc[i][k]);
      for (int64_t c = full; c < in; ++c) s += w[(r + i) * in + c] * x[(j0 + k) * in + c];
      y[(j0 + k) * ldy + r + i] = s;
    }
  }
}

template <int N>
void dense_rows(const float* w, int64_t in, const float* x, int64_t j0, float* y, int64_t ldy, int64_t r0,
                int64_t r1) {
  // One activation row (decode): 8 weight rows at a time, 8 streams from
  // memory in flight; else the block the register file allows.
  constexpr int R = N == 1 ? 8 : Simd::kRows;
  int64_t r = r0;
  for (; r + R <= r1; r += R) dense_block<R, N>(w, in, x, j0, y, ldy, r);
  for (; r < r1; ++r) dense_block<1, N>(w, in, x, j0, y, ldy, r);
}

// The activation rows left after the full blocks of kActs, one count each.
template <int N>
void dense_tail(const float* w, int64_t in, const float* x, int64_t j0, int64_t left, float* y, int64_t ldy,
                int64_t r0, int64_t r1) {
  if constexpr (N > 0) {
    if (left == N) {
      dense_rows<N>(w, in, x, j0, y, ldy, r0, r1);
      return;
    }
    dense_tail<N - 1>(w, in, x, j0, left, y, ldy, r0, r1);
  }
}

}  // namespace

void UDACI_DENSE_FN(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0, int64_t r1,
                    int64_t ldy) {
  // Weight rows in panels of ~96 KB, which stay in L2 while every activation
  // row passes over them: the weight is read from memory once per call
  // whatever n is (one pass for decode-sized n: then this is a GEMV).
  const int64_t panel = std::max<int64_t>(4, (96 * 1024 / 4) / std::max<int64_t>(1, in) / 4 * 4);
  for (int64_t p0 = r0; p0 < r1; p0 += panel) {
    const int64_t p1 = std::min(r1, p0 + panel);
    int64_t j = 0;
    for (; j + Simd::kActs <= n; j += Simd::kActs) dense_rows<Simd::kActs>(w, in, x, j, y, ldy, p0, p1);
    dense_tail<Simd::kActs - 1>(w, in, x, j, n - j, y, ldy, p0, p1);
  }
}

}  // namespace detail
}  // namespace udaci
