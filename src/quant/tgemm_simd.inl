// The SIMD body of tiled_gemm (quant/tiled_matrix.hpp), included by
// tgemm_avx2.cpp (maddubs + madd, as llama.cpp's AVX2 kernels) and
// tgemm_avx512.cpp (UDACI_TGEMM_VNNI: the same on 256-bit registers with
// AVX-512 VNNI vpdpbusd, which multiplies u8 by s8 and accumulates four
// products into int32 in one instruction).
// Define UDACI_TGEMM_FN (the function's name) before including.
//
// One register holds the same 4 columns of a tile's 8 rows; a broadcast of
// the matching 4 activation bytes times it gives 8 rows' partial sums in the
// 8 int32 lanes, so the accumulators are the outputs themselves.
//
// int16 headroom of maddubs (AVX2): a pair of u8 * s8 products is at most
// 2 * u * 127. Summed in int16 before widening: 8 registers of 4-bit values
// (8 * 3810), 4 of 5-bit (4 * 7874), 2 of 6-bit (2 * 16002), 1 of 8-bit
// (the sign trick, |w| <= 128: 32512), all <= 32767.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "quant/tiled_matrix.hpp"

namespace udaci {
namespace detail {

namespace {

#include "quant/tgemm_common.inl"

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Sum over registers c in [C0, C1) of u[c] * x[4c .. 4c + 3] (u unsigned).
template <int C0, int C1>
inline __m256i dot_u(const __m256i* u, const int8_t* x) {
#ifdef UDACI_TGEMM_VNNI
  // Two accumulators: halves the chain of dependent vpdpbusd (latency ~4-5
  // cycles each) that each activation row waits on.
  __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
  for (int c = C0; c + 1 < C1; c += 2) {
    a0 = _mm256_dpbusd_epi32(a0, u[c], bcast4(x + 4 * c));
    a1 = _mm256_dpbusd_epi32(a1, u[c + 1], bcast4(x + 4 * c + 4));
  }
  if constexpr ((C1 - C0) % 2 == 1) a0 = _mm256_dpbusd_epi32(a0, u[C1 - 1], bcast4(x + 4 * (C1 - 1)));
  return _mm256_add_epi32(a0, a1);
#else
  __m256i s = _mm256_maddubs_epi16(u[C0], bcast4(x + 4 * C0));
  for (int c = C0 + 1; c < C1; ++c) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u[c], bcast4(x + 4 * c)));
  return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
#endif
}

// Sum over all 8 registers of w[c] * x[4c ..] with w signed (the sign trick:
// |w| times x with w's sign).
inline __m256i dot_s(const __m256i* w, const int8_t* x) {
#ifdef UDACI_TGEMM_VNNI
  __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};  // two chains, as in dot_u
  for (int c = 0; c < 8; ++c) {
    const __m256i a = _mm256_sign_epi8(w[c], w[c]);
    const __m256i sx = _mm256_sign_epi8(bcast4(x + 4 * c), w[c]);
    acc[c & 1] = _mm256_dpbusd_epi32(acc[c & 1], a, sx);
  }
  return _mm256_add_epi32(acc[0], acc[1]);
#else
  __m256i acc = _mm256_setzero_si256();
  for (int c = 0; c < 8; ++c) {
    const __m256i a = _mm256_sign_epi8(w[c], w[c]);
    const __m256i sx = _mm256_sign_epi8(bcast4(x + 4 * c), w[c]);
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, sx), _mm256_set1_epi16(1)));
  }
  return acc;
#endif
}

constexpr int64_t kPrefetchAhead = 1024;

// Tile t against activation rows j0 .. j0 + NR - 1.
template <QFormat F, int NR>
void tile_pass(const TiledMatrix& w, const QActs& a, int64_t j0, float* y, int64_t ldy, int64_t t) {
  const TileLayout l = tile_layout(F, w.sb_cols);
  const int64_t nb = a.blocks;
  const int64_t nsb = w.padded_cols / w.sb_cols;
  const uint8_t* tp = w.tile(t);
  const int8_t* xq[NR];
  const float* xd[NR];
  const float* xs[NR];
  const int32_t* x16[NR];
  __m256 acc[NR];
  for (int k = 0; k < NR; ++k) {
    xq[k] = a.q.data() + (j0 + k) * nb * 32;
    xd[k] = a.d.data() + (j0 + k) * nb;
    xs[k] = a.s.data() + (j0 + k) * nb;
    x16[k] = a.s16.data() + (j0 + k) * nb * 2;
    acc[k] = _mm256_setzero_ps();
  }
  // One prefetch per cache line, kPrefetchAhead bytes ahead of the
  // superblock being read (the hardware prefetchers alone left a 1-row pass
  // waiting on its weights: 41 -> 36 ms a token, Llama-1B shape Q4_K_M, 2 MB
  // pages). Past the last tile it prefetches bytes it never reads; a
  // prefetch does not fault.
  const uint8_t* pf = tp + kPrefetchAhead;
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* sp = tp + s * w.sb_bytes;
    for (const uint8_t* end = sp + w.sb_bytes + kPrefetchAhead; pf < end; pf += 64)
      _mm_prefetch(reinterpret_cast<const char*>(pf), _MM_HINT_T0);
    __m256 d = _mm256_setzero_ps(), m = _mm256_setzero_ps();
    if constexpr (F != QFormat::kI8Row) d = f16x8(sp);
    if constexpr (F == QFormat::kNF4) d = _mm256_mul_ps(d, _mm256_set1_ps(1.0f / 127.0f));
    if constexpr (F == QFormat::kQ4_1 || F == QFormat::kQ5_1 || F == QFormat::kI4Affine ||
                  F == QFormat::kQ4_K || F == QFormat::kQ5_K)
      m = f16x8(sp + l.off_m);
    for (int blk = 0; blk < l.blocks; ++blk) {
      const int64_t b = s * l.blocks + blk;
      const uint8_t* bp = sp + l.header + blk * l.block_bytes;
      __m256i wv[8];
      unpack<F>(bp, wv);
      __m256 dsc = d, dlo = d, dhi = d, dmn = m;
      if constexpr (F == QFormat::kQ4_K || F == QFormat::kQ5_K) {
        dsc = _mm256_mul_ps(d, u8x8(sp + l.off_sc + 8 * blk));
        dmn = _mm256_mul_ps(m, u8x8(sp + l.off_kmin + 8 * blk));
      } else if constexpr (F == QFormat::kQ6_K) {
        dlo = _mm256_mul_ps(d, s8x8(sp + l.off_sc + 16 * blk));
        dhi = _mm256_mul_ps(d, s8x8(sp + l.off_sc + 16 * blk + 8));
      }
      for (int k = 0; k < NR; ++k) {
        const int8_t* x = xq[k] + 32 * b;
        const __m256 xdk = _mm256_set1_ps(xd[k][b]);
        if constexpr (F == QFormat::kQ4_0) {
          __m256i isum = dot_u<0, 8>(wv, x);
          isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(8 * (x16[k][2 * b] + x16[k][2 * b + 1])));
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, xdk), acc[k]);
        } else if constexpr (F == QFormat::kQ5_0) {
          __m256i isum = _mm256_add_epi32(dot_u<0, 4>(wv, x), dot_u<4, 8>(wv, x));
          isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(16 * (x16[k][2 * b] + x16[k][2 * b + 1])));
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, xdk), acc[k]);
        } else if constexpr (F == QFormat::kQ5_1) {
          const __m256i isum = _mm256_add_epi32(dot_u<0, 4>(wv, x), dot_u<4, 8>(wv, x));
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, xdk), acc[k]);
          acc[k] = _mm256_fmadd_ps(m, _mm256_set1_ps(xs[k][b]), acc[k]);
        } else if constexpr (F == QFormat::kQ4_1 || F == QFormat::kI4Affine) {
          const __m256i isum = dot_u<0, 8>(wv, x);
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, xdk), acc[k]);
          acc[k] = _mm256_fmadd_ps(m, _mm256_set1_ps(xs[k][b]), acc[k]);
        } else if constexpr (F == QFormat::kQ8_0 || F == QFormat::kNF4) {
          const __m256i isum = dot_s(wv, x);
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, xdk), acc[k]);
        } else if constexpr (F == QFormat::kI8Row) {
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_s(wv, x)), xdk, acc[k]);
        } else if constexpr (F == QFormat::kQ4_K || F == QFormat::kQ5_K) {
          __m256i isum;
          if constexpr (F == QFormat::kQ4_K) {
            isum = dot_u<0, 8>(wv, x);
          } else {
            isum = _mm256_add_epi32(dot_u<0, 4>(wv, x), dot_u<4, 8>(wv, x));
          }
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dsc, xdk), acc[k]);
          acc[k] = _mm256_fnmadd_ps(dmn, _mm256_set1_ps(xs[k][b]), acc[k]);
        } else {  // kQ6_K: values u - 32, one scale per half block
          __m256i lo = _mm256_add_epi32(dot_u<0, 2>(wv, x), dot_u<2, 4>(wv, x));
          __m256i hi = _mm256_add_epi32(dot_u<4, 6>(wv, x), dot_u<6, 8>(wv, x));
          lo = _mm256_sub_epi32(lo, _mm256_set1_epi32(32 * x16[k][2 * b]));
          hi = _mm256_sub_epi32(hi, _mm256_set1_epi32(32 * x16[k][2 * b + 1]));
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(dlo, xdk), acc[k]);
          acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(dhi, xdk), acc[k]);
        }
      }
    }
  }
  const int64_t r0 = t * kTileRows;
  const int64_t valid = std::min<int64_t>(kTileRows, w.rows - r0);
  for (int k = 0; k < NR; ++k) {
    if constexpr (F == QFormat::kI8Row) acc[k] = _mm256_mul_ps(acc[k], _mm256_loadu_ps(w.row_scale.data() + r0));
    float* out = y + (j0 + k) * ldy + r0;
    if (valid == kTileRows) {
      _mm256_storeu_ps(out, acc[k]);
    } else {
      alignas(32) float tmp[kTileRows];
      _mm256_store_ps(tmp, acc[k]);
      std::copy(tmp, tmp + valid, out);
    }
  }
}

template <QFormat F>
void run_format(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    int64_t j = 0;
    for (; j + 4 <= a.n; j += 4) tile_pass<F, 4>(w, a, j, y, ldy, t);
    for (; j + 2 <= a.n; j += 2) tile_pass<F, 2>(w, a, j, y, ldy, t);
    for (; j < a.n; ++j) tile_pass<F, 1>(w, a, j, y, ldy, t);
  }
}

}  // namespace

void UDACI_TGEMM_FN(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1) {
  switch (w.format) {
    case QFormat::kQ8_0: run_format<QFormat::kQ8_0>(w, a, y, ldy, t0, t1); return;
    case QFormat::kQ4_0: run_format<QFormat::kQ4_0>(w, a, y, ldy, t0, t1); return;
    case QFormat::kQ4_1: run_format<QFormat::kQ4_1>(w, a, y, ldy, t0, t1); return;
    case QFormat::kQ5_0: run_format<QFormat::kQ5_0>(w, a, y, ldy, t0, t1); return;
    case QFormat::kQ5_1: run_format<QFormat::kQ5_1>(w, a, y, ldy, t0, t1); return;
    case QFormat::kI8Row: run_format<QFormat::kI8Row>(w, a, y, ldy, t0, t1); return;
    case QFormat::kI4Affine: run_format<QFormat::kI4Affine>(w, a, y, ldy, t0, t1); return;
    case QFormat::kNF4: run_format<QFormat::kNF4>(w, a, y, ldy, t0, t1); return;
    case QFormat::kQ4_K: run_format<QFormat::kQ4_K>(w, a, y, ldy, t0, t1); return;
    case QFormat::kQ5_K: run_format<QFormat::kQ5_K>(w, a, y, ldy, t0, t1); return;
    case QFormat::kQ6_K: run_format<QFormat::kQ6_K>(w, a, y, ldy, t0, t1); return;
  }
}

}  // namespace detail
}  // namespace udaci
