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

// GCC 12's AVX-512 intrinsics start from an uninitialised register
// (`__m512i __Y = __Y`), which -Wmaybe-uninitialized reports wherever they
// are inlined (as in core/amx_tiles.hpp).
#if defined(UDACI_TGEMM_VNNI) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

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

// The register arithmetic of a tile pass over one tile (Y: 8 rows in a
// 256-bit register) or, on the AVX-512 build, two neighbouring tiles side by
// side (Z: 16 rows in a 512-bit register; its broadcast activation bytes
// and its vpdpbusd serve both tiles, which halves the per-row work of a
// pass). Every lane sees the same operations in the same order either way,
// so a row's outputs have the same bits whichever pass computed them.
struct Y {
  static constexpr int kTiles = 1;
  using I = __m256i;
  using V = __m256;
  template <class Fn>
  static V per_tile(Fn f) { return f(0); }
  template <QFormat F>
  static void unpack_tiles(const uint8_t* const* bp, I* w) { unpack<F>(bp[0], w); }
  template <int C0, int C1>
  static I dot_unsigned(const I* u, const int8_t* x) { return dot_u<C0, C1>(u, x); }
  static I dot_signed(const I* w, const int8_t* x) { return dot_s(w, x); }
  static I flip(I a) { return _mm256_xor_si256(a, _mm256_set1_epi8(static_cast<char>(0x80))); }
  static V zero() { return _mm256_setzero_ps(); }
  static I add(I a, I b) { return _mm256_add_epi32(a, b); }
  static I sub(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I set1(int32_t v) { return _mm256_set1_epi32(v); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V cvt(I a) { return _mm256_cvtepi32_ps(a); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
};

#ifdef UDACI_TGEMM_VNNI
struct Z {
  static constexpr int kTiles = 2;
  using I = __m512i;
  using V = __m512;
  template <class Fn>
  static V per_tile(Fn f) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(f(0)), f(1), 1);
  }
  // Register c: tile 0's register c of unpack<F> in the low half, tile 1's
  // in the high half. Formats of 4-bit codes alone (and the 8-bit ones)
  // unpack both tiles at once in 512 bits: the same bytes in the same lanes
  // in half the instructions; the others unpack each tile and join them.
  template <QFormat F>
  static void unpack_tiles(const uint8_t* const* bp, I* w) {
    const auto both = [bp](int off) {
      return _mm512_inserti64x4(_mm512_castsi256_si512(ld(bp[0] + off)), ld(bp[1] + off), 1);
    };
    if constexpr (F == QFormat::kQ8_0 || F == QFormat::kI8Row) {
      for (int c = 0; c < 8; ++c) w[c] = both(32 * c);
    } else if constexpr (nibbles_only<F>()) {
      unpack_nibble_pair<F>(bp[0], bp[1], w);
    } else {
      __m256i w0[8], w1[8];
      unpack<F>(bp[0], w0);
      unpack<F>(bp[1], w1);
      for (int c = 0; c < 8; ++c) w[c] = _mm512_inserti64x4(_mm512_castsi256_si512(w0[c]), w1[c], 1);
    }
  }
  static I bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  // As dot_u / dot_s (two accumulators; |w| times x with w's sign, which
  // AVX-512 writes as abs and a masked negation: where w is 0, |w| is too).
  template <int C0, int C1>
  static I dot_unsigned(const I* u, const int8_t* x) {
    I a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    for (int c = C0; c + 1 < C1; c += 2) {
      a0 = _mm512_dpbusd_epi32(a0, u[c], bcast4(x + 4 * c));
      a1 = _mm512_dpbusd_epi32(a1, u[c + 1], bcast4(x + 4 * c + 4));
    }
    if constexpr ((C1 - C0) % 2 == 1) a0 = _mm512_dpbusd_epi32(a0, u[C1 - 1], bcast4(x + 4 * (C1 - 1)));
    return _mm512_add_epi32(a0, a1);
  }
  static I dot_signed(const I* w, const int8_t* x) {
    I acc[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    for (int c = 0; c < 8; ++c) {
      const I a = _mm512_abs_epi8(w[c]);
      const I xb = bcast4(x + 4 * c);
      const I sx = _mm512_mask_sub_epi8(xb, _mm512_movepi8_mask(w[c]), _mm512_setzero_si512(), xb);
      acc[c & 1] = _mm512_dpbusd_epi32(acc[c & 1], a, sx);
    }
    return _mm512_add_epi32(acc[0], acc[1]);
  }
  static I flip(I a) { return _mm512_xor_si512(a, _mm512_set1_epi8(static_cast<char>(0x80))); }
  static V zero() { return _mm512_setzero_ps(); }
  static I add(I a, I b) { return _mm512_add_epi32(a, b); }
  static I sub(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I set1(int32_t v) { return _mm512_set1_epi32(v); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V cvt(I a) { return _mm512_cvtepi32_ps(a); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
};
#endif

// Tiles t .. t + R::kTiles - 1 against activation rows j0 .. j0 + NR - 1.
template <QFormat F, int NR, class R>
void tile_pass(const TiledMatrix& w, const QActs& a, int64_t j0, float* y, int64_t ldy, int64_t t) {
  using I = typename R::I;
  using V = typename R::V;
  constexpr int T = R::kTiles;
  const TileLayout l = tile_layout(F, w.sb_cols);
  const int64_t nb = a.blocks;
  const int64_t nsb = w.padded_cols / w.sb_cols;
  const uint8_t* tp[T];
  // One prefetch per cache line of each tile, kPrefetchAhead bytes ahead of
  // the superblock being read (the hardware prefetchers alone left a 1-row
  // pass waiting on its weights: 41 -> 36 ms a token, Llama-1B shape Q4_K_M,
  // 2 MB pages). Past the last tile it prefetches bytes it never reads; a
  // prefetch does not fault.
  const uint8_t* pf[T];
  for (int i = 0; i < T; ++i) {
    tp[i] = w.tile(t + i);
    pf[i] = tp[i] + kPrefetchAhead;
  }
  const int8_t* xq[NR];
  const float* xd[NR];
  const float* xs[NR];
  const int32_t* x16[NR];
  V acc[NR];
  for (int k = 0; k < NR; ++k) {
    xq[k] = a.q.data() + (j0 + k) * nb * 32;
    xd[k] = a.d.data() + (j0 + k) * nb;
    xs[k] = a.s.data() + (j0 + k) * nb;
    x16[k] = a.s16.data() + (j0 + k) * nb * 2;
    acc[k] = R::zero();
  }
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* sp[T];
    for (int i = 0; i < T; ++i) {
      sp[i] = tp[i] + s * w.sb_bytes;
      for (const uint8_t* end = sp[i] + w.sb_bytes + kPrefetchAhead; pf[i] < end; pf[i] += 64)
        _mm_prefetch(reinterpret_cast<const char*>(pf[i]), _MM_HINT_T0);
    }
    V d = R::zero(), m = R::zero();
    if constexpr (F != QFormat::kI8Row) d = R::per_tile([&](int i) { return f16x8(sp[i]); });
    if constexpr (F == QFormat::kNF4) d = R::mul(d, R::set1(1.0f / 127.0f));
    if constexpr (F == QFormat::kQ4_1 || F == QFormat::kQ5_1 || F == QFormat::kI4Affine ||
                  F == QFormat::kQ4_K || F == QFormat::kQ5_K)
      m = R::per_tile([&](int i) { return f16x8(sp[i] + l.off_m); });
    for (int blk = 0; blk < l.blocks; ++blk) {
      const int64_t b = s * l.blocks + blk;
      const uint8_t* bp[T];
      for (int i = 0; i < T; ++i) bp[i] = sp[i] + l.header + blk * l.block_bytes;
      I wv[8];
      R::template unpack_tiles<F>(bp, wv);
#ifdef UDACI_TGEMM_VNNI
      // Signed weights as unsigned ones, w + 128 (the sign bit flipped) once
      // for all rows: then a row's products are vpdpbusd alone, and
      // sum(w x) = sum((w + 128) x) - 128 sum(x), the same integer as the
      // sign trick (vpdpbusd does not saturate), which costs two more
      // instructions per register and row (the multi-row passes of a
      // speculative step or a beam search over the Q8_0 head).
      constexpr bool kFlipSigned = F == QFormat::kQ8_0 || F == QFormat::kNF4 || F == QFormat::kI8Row;
      if constexpr (kFlipSigned) {
        for (I& v : wv) v = R::flip(v);
      }
#else
      constexpr bool kFlipSigned = false;
#endif
      V dsc = d, dlo = d, dhi = d, dmn = m;
      if constexpr (F == QFormat::kQ4_K || F == QFormat::kQ5_K) {
        dsc = R::mul(d, R::per_tile([&](int i) { return u8x8(sp[i] + l.off_sc + 8 * blk); }));
        dmn = R::mul(m, R::per_tile([&](int i) { return u8x8(sp[i] + l.off_kmin + 8 * blk); }));
      } else if constexpr (F == QFormat::kQ6_K) {
        dlo = R::mul(d, R::per_tile([&](int i) { return s8x8(sp[i] + l.off_sc + 16 * blk); }));
        dhi = R::mul(d, R::per_tile([&](int i) { return s8x8(sp[i] + l.off_sc + 16 * blk + 8); }));
      }
      for (int k = 0; k < NR; ++k) {
        const int8_t* x = xq[k] + 32 * b;
        const V xdk = R::set1(xd[k][b]);
        if constexpr (F == QFormat::kQ4_0) {
          I isum = R::template dot_unsigned<0, 8>(wv, x);
          isum = R::sub(isum, R::set1(8 * (x16[k][2 * b] + x16[k][2 * b + 1])));
          acc[k] = R::fmadd(R::cvt(isum), R::mul(d, xdk), acc[k]);
        } else if constexpr (F == QFormat::kQ5_0) {
          I isum = R::add(R::template dot_unsigned<0, 4>(wv, x), R::template dot_unsigned<4, 8>(wv, x));
          isum = R::sub(isum, R::set1(16 * (x16[k][2 * b] + x16[k][2 * b + 1])));
          acc[k] = R::fmadd(R::cvt(isum), R::mul(d, xdk), acc[k]);
        } else if constexpr (F == QFormat::kQ5_1) {
          const I isum = R::add(R::template dot_unsigned<0, 4>(wv, x), R::template dot_unsigned<4, 8>(wv, x));
          acc[k] = R::fmadd(R::cvt(isum), R::mul(d, xdk), acc[k]);
          acc[k] = R::fmadd(m, R::set1(xs[k][b]), acc[k]);
        } else if constexpr (F == QFormat::kQ4_1 || F == QFormat::kI4Affine) {
          const I isum = R::template dot_unsigned<0, 8>(wv, x);
          acc[k] = R::fmadd(R::cvt(isum), R::mul(d, xdk), acc[k]);
          acc[k] = R::fmadd(m, R::set1(xs[k][b]), acc[k]);
        } else if constexpr (F == QFormat::kQ8_0 || F == QFormat::kNF4 || F == QFormat::kI8Row) {
          I isum;
          if constexpr (kFlipSigned) {
            isum = R::sub(R::template dot_unsigned<0, 8>(wv, x), R::set1(128 * (x16[k][2 * b] + x16[k][2 * b + 1])));
          } else {
            isum = R::dot_signed(wv, x);
          }
          if constexpr (F == QFormat::kI8Row) {
            acc[k] = R::fmadd(R::cvt(isum), xdk, acc[k]);
          } else {
            acc[k] = R::fmadd(R::cvt(isum), R::mul(d, xdk), acc[k]);
          }
        } else if constexpr (F == QFormat::kQ4_K || F == QFormat::kQ5_K) {
          I isum;
          if constexpr (F == QFormat::kQ4_K) {
            isum = R::template dot_unsigned<0, 8>(wv, x);
          } else {
            isum = R::add(R::template dot_unsigned<0, 4>(wv, x), R::template dot_unsigned<4, 8>(wv, x));
          }
          acc[k] = R::fmadd(R::cvt(isum), R::mul(dsc, xdk), acc[k]);
          acc[k] = R::fnmadd(dmn, R::set1(xs[k][b]), acc[k]);
        } else {  // kQ6_K: values u - 32, one scale per half block
          I lo = R::add(R::template dot_unsigned<0, 2>(wv, x), R::template dot_unsigned<2, 4>(wv, x));
          I hi = R::add(R::template dot_unsigned<4, 6>(wv, x), R::template dot_unsigned<6, 8>(wv, x));
          lo = R::sub(lo, R::set1(32 * x16[k][2 * b]));
          hi = R::sub(hi, R::set1(32 * x16[k][2 * b + 1]));
          acc[k] = R::fmadd(R::cvt(lo), R::mul(dlo, xdk), acc[k]);
          acc[k] = R::fmadd(R::cvt(hi), R::mul(dhi, xdk), acc[k]);
        }
      }
    }
  }
  constexpr int64_t kRows = kTileRows * T;
  const int64_t r0 = t * kTileRows;
  const int64_t valid = std::min<int64_t>(kRows, w.rows - r0);
  for (int k = 0; k < NR; ++k) {
    if constexpr (F == QFormat::kI8Row) acc[k] = R::mul(acc[k], R::loadu(w.row_scale.data() + r0));
    float* out = y + (j0 + k) * ldy + r0;
    if (valid == kRows) {
      R::storeu(out, acc[k]);
    } else {
      alignas(64) float tmp[kRows];
      R::storeu(tmp, acc[k]);
      std::copy(tmp, tmp + valid, out);
    }
  }
}

template <QFormat F, class R>
void tiles_pass(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t) {
  int64_t j = 0;
  for (; j + 4 <= a.n; j += 4) tile_pass<F, 4, R>(w, a, j, y, ldy, t);
  if (a.n - j == 3) {  // one pass, not 2 + 1 (a speculative step's 2 drafts and its token)
    tile_pass<F, 3, R>(w, a, j, y, ldy, t);
    j += 3;
  }
  for (; j + 2 <= a.n; j += 2) tile_pass<F, 2, R>(w, a, j, y, ldy, t);
  for (; j < a.n; ++j) tile_pass<F, 1, R>(w, a, j, y, ldy, t);
}

template <QFormat F>
void run_format(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1) {
  int64_t t = t0;
#ifdef UDACI_TGEMM_VNNI
  // Pairs of tiles for several rows; one row streams its weights from
  // memory either way, and measured a little faster one tile at a time
  // (Llama-1B shape Q4_K_M: 33.3 vs 33.9 ms a token, three rounds).
  if (a.n >= 2)
    for (; t + 2 <= t1; t += 2) tiles_pass<F, Z>(w, a, y, ldy, t);
#endif
  for (; t < t1; ++t) tiles_pass<F, Y>(w, a, y, ldy, t);
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
