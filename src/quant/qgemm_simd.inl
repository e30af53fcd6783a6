// The SIMD body of qmatrix_gemm, included by qgemm_avx2.cpp (maddubs + madd,
// as llama.cpp's AVX2 vec_dot) and qgemm_avx512.cpp (UDACI_QGEMM_VNNI: the
// same on 256-bit registers with AVX-512 VNNI vpdpbusd, which multiplies u8
// by s8 and accumulates four products into int32 in one instruction).
// Define UDACI_QGEMM_FN (the function's name) before including.
#include <immintrin.h>

#include <algorithm>

#include "quant/qmatrix.hpp"

namespace udaci {
namespace detail {

namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline float h2f_at(const uint8_t* p) { return _cvtsh_ss(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// 16 bytes of nibbles -> 32 bytes 0..15: low nibbles first (weights 0..15 of
// the block), then high nibbles (16..31), the ggml Q4 order ours share.
inline __m256i load_nibbles(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

// Sum of u8 * s8 products, 8 int32 lanes. maddubs cannot saturate here:
// |u| <= 128 and |s| <= 127, so a pair sums to at most 32512.
inline __m256i dot_us(__m256i u, __m256i s) {
#ifdef UDACI_QGEMM_VNNI
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// s8 * s8 via the sign trick: |w| * (x * sign(w)).
inline __m256i dot_ss(__m256i w, __m256i x) {
  return dot_us(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Block b of a row: 32 quants in q (unsigned 0..15 for the affine formats,
// signed otherwise), scale d and min m.
// g0: the row's first group; gshift: log2(group / 32), so block b is in
// group g0 + (b >> gshift) (a shift, not a division, in the inner loop).
template <QFormat F>
inline void load_block(const QMatrix& w, const uint8_t* row, int64_t g0, int gshift, int64_t b,
                       __m256i& q, float& d, float& m) {
  if constexpr (F == QFormat::kQ8_0) {
    const uint8_t* p = row + 34 * b;
    d = h2f_at(p);
    q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
  } else if constexpr (F == QFormat::kQ4_0) {
    const uint8_t* p = row + 18 * b;
    d = h2f_at(p);
    q = _mm256_sub_epi8(load_nibbles(p + 2), _mm256_set1_epi8(8));
  } else if constexpr (F == QFormat::kQ4_1) {
    const uint8_t* p = row + 20 * b;
    d = h2f_at(p);
    m = h2f_at(p + 2);
    q = load_nibbles(p + 4);
  } else if constexpr (F == QFormat::kI8Row) {
    d = 1.0f;
    q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * b));
  } else if constexpr (F == QFormat::kI4Affine) {
    const int64_t g = g0 + (b >> gshift);
    d = h2f(w.scales[g]);
    m = h2f(w.mins[g]);
    q = load_nibbles(row + 16 * b);
  } else {  // kNF4: nibble -> int8 level by a 16-entry table lookup (pshufb)
    const int64_t g = g0 + (b >> gshift);
    d = h2f(w.scales[g]) * (1.0f / 127.0f);
    const __m256i lut = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(kNF4LevelsI8)));
    q = _mm256_shuffle_epi8(lut, load_nibbles(row + 16 * b));
  }
}

// NR activation rows at once (j0 .. j0 + NR): each weight block is decoded
// once and used NR times.
template <QFormat F, int NR>
void rows_kernel(const QMatrix& w, const QActs& a, int64_t j0, float* y, int64_t ldy, int64_t r0,
                 int64_t r1) {
  constexpr bool kAffine = F == QFormat::kQ4_1 || F == QFormat::kI4Affine;
  const int64_t nb = a.blocks;
  const int64_t xs = nb * 32;
  const int64_t full = F == QFormat::kI8Row ? w.cols / 32 : nb;
  const int64_t groups = w.cols / w.group;
  const int gshift = w.group >= 128 ? 2 : w.group >= 64 ? 1 : 0;  // group is 32, 64 or 128
  const int8_t* xq[NR];
  const float* xd[NR];
  const float* xsum[NR];
  for (int k = 0; k < NR; ++k) {
    xq[k] = a.q.data() + (j0 + k) * xs;
    xd[k] = a.d.data() + (j0 + k) * nb;
    xsum[k] = a.s.data() + (j0 + k) * nb;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.row_data(r);
    const int64_t g0 = r * groups;
    // Two accumulators per activation row (even and odd blocks): with one row
    // (decode) a single chain of dependent FMAs would bound the loop by the
    // FMA latency rather than by loading the weights.
    __m256 acc[NR], acc2[NR];
    float macc[NR];
    for (int k = 0; k < NR; ++k) {
      acc[k] = _mm256_setzero_ps();
      acc2[k] = _mm256_setzero_ps();
      macc[k] = 0.0f;
    }
    auto block = [&](int64_t b, __m256* into) {
      __m256i q;
      float d, m = 0.0f;
      load_block<F>(w, row, g0, gshift, b, q, d, m);
      for (int k = 0; k < NR; ++k) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[k] + 32 * b));
        const __m256i p = kAffine ? dot_us(q, x) : dot_ss(q, x);
        into[k] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd[k][b]), _mm256_cvtepi32_ps(p), into[k]);
        if constexpr (kAffine) macc[k] += m * xsum[k][b];
      }
    };
    int64_t b = 0;
    for (; b + 2 <= full; b += 2) {
      block(b, acc);
      block(b + 1, acc2);
    }
    if (b < full) block(b, acc);
    for (int k = 0; k < NR; ++k) acc[k] = _mm256_add_ps(acc[k], acc2[k]);
    float tail[NR] = {};
    if constexpr (F == QFormat::kI8Row) {
      if (full < nb) {  // the last, partial block of an int8 row
        const int8_t* wq = reinterpret_cast<const int8_t*>(row) + 32 * full;
        const int len = static_cast<int>(w.cols - 32 * full);
        for (int k = 0; k < NR; ++k) {
          int32_t dot = 0;
          for (int i = 0; i < len; ++i) dot += wq[i] * xq[k][32 * full + i];
          tail[k] = xd[k][full] * static_cast<float>(dot);
        }
      }
    }
    const float rs = F == QFormat::kI8Row ? w.row_scale[r] : 1.0f;
    for (int k = 0; k < NR; ++k) y[(j0 + k) * ldy + r] = (hsum(acc[k]) + macc[k] + tail[k]) * rs;
  }
}

template <QFormat F>
void run_format(const QMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t r0, int64_t r1) {
  int64_t j = 0;
  for (; j + 4 <= a.n; j += 4) rows_kernel<F, 4>(w, a, j, y, ldy, r0, r1);
  for (; j + 2 <= a.n; j += 2) rows_kernel<F, 2>(w, a, j, y, ldy, r0, r1);
  for (; j < a.n; ++j) rows_kernel<F, 1>(w, a, j, y, ldy, r0, r1);
}

}  // namespace

void UDACI_QGEMM_FN(const QMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t r0,
                    int64_t r1) {
  switch (w.format) {
    case QFormat::kQ8_0: run_format<QFormat::kQ8_0>(w, a, y, ldy, r0, r1); return;
    case QFormat::kQ4_0: run_format<QFormat::kQ4_0>(w, a, y, ldy, r0, r1); return;
    case QFormat::kQ4_1: run_format<QFormat::kQ4_1>(w, a, y, ldy, r0, r1); return;
    case QFormat::kI8Row: run_format<QFormat::kI8Row>(w, a, y, ldy, r0, r1); return;
    case QFormat::kI4Affine: run_format<QFormat::kI4Affine>(w, a, y, ldy, r0, r1); return;
    case QFormat::kNF4: run_format<QFormat::kNF4>(w, a, y, ldy, r0, r1); return;
  }
}

}  // namespace detail
}  // namespace udaci
