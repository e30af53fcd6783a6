// The AVX2 + FMA body of the packed 2:4 kernel (sparse24.hpp). No gathers:
// 16 inputs (4 groups) are two 8-float loads of x; per meta byte (2 groups) a
// table gives the lane permutation that moves the 4 indexed inputs next to
// each other (vpermps), a blend joins the two halves and one FMA multiplies
// them by the 8 kept values.
#include <immintrin.h>

#include <array>
#include <cstdint>

#include "prune/sparse24.hpp"

namespace udaci {
namespace detail {

namespace {

struct alignas(32) PermTable {
  int32_t lanes[256][8];
};

// For meta byte b (groups 2q and 2q+1 of 8 consecutive inputs): lanes i0, i1
// of the first group and 4 + i2, 4 + i3 of the second, repeated in both
// 128-bit halves so that either half of the blend can use it.
PermTable make_table() {
  PermTable t{};
  for (int b = 0; b < 256; ++b) {
    const int32_t sel[4] = {b & 3, (b >> 2) & 3, 4 + ((b >> 4) & 3), 4 + ((b >> 6) & 3)};
    for (int j = 0; j < 8; ++j) t.lanes[b][j] = sel[j & 3];
  }
  return t;
}

const PermTable& table() {
  static const PermTable t = make_table();
  return t;
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The groups past the last full block of 4, one at a time.
inline float tail(const float* x, const float* v, const uint8_t* m, int64_t g0, int64_t groups) {
  float acc = 0.0f;
  for (int64_t g = g0; g < groups; ++g) {
    const int nib = (m[g >> 1] >> ((g & 1) * 4)) & 15;
    acc += v[2 * g] * x[4 * g + (nib & 3)] + v[2 * g + 1] * x[4 * g + (nib >> 2)];
  }
  return acc;
}

}  // namespace

void sparse24_rows_avx2(const float* x, int64_t n, int64_t in, const float* values,
                        const uint8_t* meta, int64_t meta_stride, int64_t row_begin,
                        int64_t row_end, float* y, int64_t out) {
  const PermTable& tab = table();
  const int64_t groups = in / 4;
  const int64_t blocks = groups / 4;  // 16 inputs, 8 values, 2 meta bytes each
  const int64_t half = in / 2;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* v = values + r * half;
    const uint8_t* m = meta + r * meta_stride;
    int64_t t = 0;
    // Four tokens at a time share the table lookups and value loads.
    for (; t + 4 <= n; t += 4) {
      const float* x0 = x + t * in;
      const float* x1 = x0 + in;
      const float* x2 = x1 + in;
      const float* x3 = x2 + in;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
      for (int64_t b = 0; b < blocks; ++b) {
        const __m256i pa = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.lanes[m[2 * b]]));
        const __m256i pb =
            _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.lanes[m[2 * b + 1]]));
        const __m256 w = _mm256_loadu_ps(v + 8 * b);
        const int64_t o = 16 * b;
#define UDACI_SPARSE24_STEP(xp, acc)                                                     \
  {                                                                                      \
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps((xp) + o), pa);           \
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps((xp) + o + 8), pb);       \
    acc = _mm256_fmadd_ps(_mm256_blend_ps(lo, hi, 0xF0), w, acc);                        \
  }
        UDACI_SPARSE24_STEP(x0, a0)
        UDACI_SPARSE24_STEP(x1, a1)
        UDACI_SPARSE24_STEP(x2, a2)
        UDACI_SPARSE24_STEP(x3, a3)
      }
      const int64_t g0 = blocks * 4;
      y[(t + 0) * out + r] = hsum(a0) + tail(x0, v, m, g0, groups);
      y[(t + 1) * out + r] = hsum(a1) + tail(x1, v, m, g0, groups);
      y[(t + 2) * out + r] = hsum(a2) + tail(x2, v, m, g0, groups);
      y[(t + 3) * out + r] = hsum(a3) + tail(x3, v, m, g0, groups);
    }
    for (; t < n; ++t) {
      const float* x0 = x + t * in;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      int64_t b = 0;
      // Two independent accumulators hide the FMA latency for one token.
      for (; b + 2 <= blocks; b += 2) {
        {
          const __m256i pa =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.lanes[m[2 * b]]));
          const __m256i pb =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.lanes[m[2 * b + 1]]));
          const __m256 w = _mm256_loadu_ps(v + 8 * b);
          const int64_t o = 16 * b;
          UDACI_SPARSE24_STEP(x0, a0)
        }
        {
          const int64_t b1 = b + 1;
          const __m256i pa =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.lanes[m[2 * b1]]));
          const __m256i pb =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.lanes[m[2 * b1 + 1]]));
          const __m256 w = _mm256_loadu_ps(v + 8 * b1);
          const int64_t o = 16 * b1;
          UDACI_SPARSE24_STEP(x0, a1)
        }
      }
      for (; b < blocks; ++b) {
        const __m256i pa = _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.lanes[m[2 * b]]));
        const __m256i pb =
            _mm256_load_si256(reinterpret_cast<const __m256i*>(tab.lanes[m[2 * b + 1]]));
        const __m256 w = _mm256_loadu_ps(v + 8 * b);
        const int64_t o = 16 * b;
        UDACI_SPARSE24_STEP(x0, a0)
      }
#undef UDACI_SPARSE24_STEP
      y[t * out + r] = hsum(_mm256_add_ps(a0, a1)) + tail(x0, v, m, blocks * 4, groups);
    }
  }
}

}  // namespace detail
}  // namespace udaci
