// The AMX-INT8 body of tiled_gemm (quant/tiled_matrix.hpp) for several
// activation rows at once: prompts and batched decode steps (issue #22).
//
// An AMX tile multiply (tdpbssd) computes a 16 x 16 block of int32 dot
// products over 64 bytes of K in one instruction: C[m][n] += sum_k A[m][k] *
// B[k / 4][4 n + k % 4], A holding 16 activation rows and B 16 weight rows in
// "VNNI" order (4 consecutive columns of one row next to each other). A tile
// of the repacked weights already stores each block that way for 8 rows
// (register c of unpack<F> holds columns 4c .. 4c + 3 of rows 0..7), so two
// neighbouring tiles side by side are one B operand of 16 rows.
//
// The block formats scale every 32 columns (Q6_K every 16), so the integer
// sums cannot run over the whole row: each block is one tile multiply with
// K = 32 whose 16 x 16 result is converted to fp32 and scaled by the weight
// block's scales (a vector over the 16 output rows) and the activation
// block's (a broadcast per row), as the VNNI kernel does per block.
//
// Per pair of weight tiles the kernel unpacks every block once into a panel
// of signed bytes (the format's offset, e.g. Q4_0's -8, subtracted there, so
// every format is one signed x signed product) and gathers the scales into
// vectors; then it runs every group of 16 activation rows over the panel.
// The integer sums are exact and equal the VNNI kernel's, and the float
// operations are the VNNI kernel's in the same order (weight scale times
// activation scale, rounded, then one fused multiply-add per block), so a
// row's output is bit-identical whichever kernel ran it: a batch stays
// invariant to its size although 1-3 rows take the VNNI path.
//
// The tile registers are configured at each call (the state is per thread)
// and released at its end. Only called when cpu_features.hpp has found
// AMX-INT8 and Linux granted the tile state.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "core/amx_tiles.hpp"
#include "quant/tiled_matrix.hpp"

namespace udaci {
namespace detail {

namespace {

#include "quant/tgemm_common.inl"

constexpr int kMTile = 16;  // activation rows per A tile
constexpr int kNTile = 16;  // weight rows per B tile: two weight tiles

// Below this many activation rows the VNNI kernel is faster: a tile
// multiply costs the same for 1 row as for 16 (measured on a Xeon with AMX,
// quant bench "tiled GEMM ... by row count": at 6 rows VNNI is ahead, at 8
// rows AMX by 1.2-1.4x, at 64 rows by ~3x). In-cache, AMX already wins
// from 5 rows (2..8 rows all ~50 us for [1536 x 576]), but in the model,
// weights streaming from memory, 5 and 6 rows ran slower with AMX than as
// VNNI passes of 4 + 1 and 4 + 2 (bench-forward SmolLM2 shape int4, 2
// threads: 12.6 vs 10.3 ms a step at 5 rows, 2026-12-05).
constexpr int64_t kAmxMinRows = 8;

// Tile registers: 0, 1 = C (16 x 16 int32), 2, 3 = A (16 rows x G bytes),
// 4, 5 = B (G / 4 rows x 64 bytes), two of each for alternating groups.
// G: columns per scale group, 32 or 16.
void configure_tiles(int g) {
  TileConfig c;
  for (int t = 0; t < 2; ++t) {
    c.colsb[t] = kNTile * 4;
    c.rows[t] = kMTile;
    c.colsb[t + 2] = static_cast<uint16_t>(g);
    c.rows[t + 2] = kMTile;
    c.colsb[t + 4] = kNTile * 4;
    c.rows[t + 4] = static_cast<uint8_t>(g / 4);
  }
  load_tile_config(c);
}

template <QFormat F>
constexpr int group_cols() {
  return F == QFormat::kQ6_K ? 16 : 32;
}

// Whether the format adds a per-block min term (m * sum of the activations).
template <QFormat F>
constexpr bool has_min() {
  return F == QFormat::kQ4_1 || F == QFormat::kQ5_1 || F == QFormat::kI4Affine || F == QFormat::kQ4_K ||
         F == QFormat::kQ5_K;
}

// One pair of weight tiles, unpacked: for each scale group g, its B operand
// (G * 16 bytes) and the 16 rows' scale (and min) as fp32 vectors.
struct Panel {
  std::vector<int8_t> b;     // [groups][G / 4][64]
  std::vector<float> scale;  // [groups][16]
  std::vector<float> min;    // [groups][16]: added as min * (activation block sum)
};

// A panel's buffers as the products read them. Passed by value: the panel
// itself is thread_local, and a kernel that reached it by reference looked
// its address up again (a __tls_get_addr call, with every accumulator
// spilled around it) once per block.
struct PanelView {
  const int8_t* b;
  const float* scale;
  const float* min;
  explicit PanelView(const Panel& p) : b(p.b.data()), scale(p.scale.data()), min(p.min.data()) {}
};


// Part [i0, i1) of n equal parts of [p, p + bytes), into L1: the weights a
// loop will read next, a share at each step of the loop before.
inline void prefetch_share(const uint8_t* p, int64_t bytes, int64_t i0, int64_t i1, int64_t n) {
  const char* c = reinterpret_cast<const char*>(p);
  const int64_t lo = i0 * bytes / n / 64 * 64, hi = std::min(bytes, i1 * bytes / n);
  for (int64_t o = lo; o < hi; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}

// The quants of tiles t and t + 1 into the panel at once, 64 bytes a row (the
// same bytes unpack_half writes half by half, in half the instructions).
template <QFormat F>
void unpack_panel_pair(const TiledMatrix& w, int64_t t, Panel& p) {
  const TileLayout l = tile_layout(F, w.sb_cols);
  const int64_t nsb = w.padded_cols / w.sb_cols;
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* s0 = w.tile(t) + s * w.sb_bytes + l.header;
    const uint8_t* s1 = w.tile(t + 1) + s * w.sb_bytes + l.header;
    for (int blk = 0; blk < l.blocks; ++blk) {
      const int64_t b = s * l.blocks + blk;
      int8_t* dst = p.b.data() + b * 32 * kNTile;
      __m512i v[8];
      unpack_nibble_pair<F>(s0 + blk * l.block_bytes, s1 + blk * l.block_bytes, v);
      for (int c = 0; c < 8; ++c) {
        // Q4_0's zero point, so that every value is a signed byte.
        if constexpr (F == QFormat::kQ4_0) v[c] = _mm512_sub_epi8(v[c], _mm512_set1_epi8(8));
        _mm512_storeu_si512(dst + c * 64, v[c]);
      }
    }
  }
}

// Unpacks tile t into the left (half 0) or right (half 1) 8 rows of the
// panel: its scales and, unless kScalesOnly, its quants.
template <QFormat F, bool kScalesOnly = false>
void unpack_half(const TiledMatrix& w, int64_t t, int half, Panel& p) {
  const TileLayout l = tile_layout(F, w.sb_cols);
  const int64_t nsb = w.padded_cols / w.sb_cols;
  const uint8_t* tp = w.tile(t);
  constexpr int G = group_cols<F>();
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* sp = tp + s * w.sb_bytes;
    __m256 d = _mm256_set1_ps(1.0f), m = _mm256_setzero_ps();
    if constexpr (F != QFormat::kI8Row) d = f16x8(sp);
    if constexpr (F == QFormat::kNF4) d = _mm256_mul_ps(d, _mm256_set1_ps(1.0f / 127.0f));
    if constexpr (has_min<F>()) m = f16x8(sp + l.off_m);
    for (int blk = 0; blk < l.blocks; ++blk) {
      const int64_t b = s * l.blocks + blk;
      if constexpr (!kScalesOnly) {
        __m256i wv[8];
        unpack<F>(sp + l.header + blk * l.block_bytes, wv);
        // The format's zero point, so that every value is a signed byte.
        int off = 0;
        if constexpr (F == QFormat::kQ4_0) off = 8;
        if constexpr (F == QFormat::kQ5_0) off = 16;
        if constexpr (F == QFormat::kQ6_K) off = 32;
        int8_t* dst = p.b.data() + b * 32 * kNTile + half * 32;
        for (int c = 0; c < 8; ++c) {
          __m256i v = wv[c];
          if (off != 0) v = _mm256_sub_epi8(v, _mm256_set1_epi8(static_cast<char>(off)));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c * 64), v);
        }
      }
      float* sc = p.scale.data() + (b * 32 / G) * kNTile + half * 8;
      float* mn = p.min.data() + b * kNTile + half * 8;
      if constexpr (F == QFormat::kQ4_K || F == QFormat::kQ5_K) {
        _mm256_storeu_ps(sc, _mm256_mul_ps(d, u8x8(sp + l.off_sc + 8 * blk)));
        _mm256_storeu_ps(mn, _mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(m, u8x8(sp + l.off_kmin + 8 * blk))));
      } else if constexpr (F == QFormat::kQ6_K) {
        _mm256_storeu_ps(sc, _mm256_mul_ps(d, s8x8(sp + l.off_sc + 16 * blk)));
        _mm256_storeu_ps(sc + kNTile, _mm256_mul_ps(d, s8x8(sp + l.off_sc + 16 * blk + 8)));
      } else {
        _mm256_storeu_ps(sc, d);
        if constexpr (has_min<F>()) _mm256_storeu_ps(mn, m);
      }
    }
  }
}

// Tiles t and (when pair) t + 1 into the panel; without a pair its right
// half is zero (no rows there).
template <QFormat F>
void unpack_panel(const TiledMatrix& w, int64_t t, bool pair, Panel& p) {
  constexpr int G = group_cols<F>();
  const int64_t groups = w.padded_cols / G;
  const int64_t nb = w.padded_cols / 32;
  if constexpr (nibbles_only<F>()) {
    if (pair) {
      unpack_panel_pair<F>(w, t, p);
      unpack_half<F, true>(w, t, 0, p);
      unpack_half<F, true>(w, t + 1, 1, p);
    } else {
      unpack_half<F>(w, t, 0, p);
    }
  } else {
    unpack_half<F>(w, t, 0, p);
    if (pair) unpack_half<F>(w, t + 1, 1, p);
  }
  if (!pair) {
    for (int64_t g = 0; g < groups; ++g) {
      std::memset(p.scale.data() + g * kNTile + 8, 0, 8 * sizeof(float));
      for (int r = 0; r < G / 4; ++r) std::memset(p.b.data() + (g * G / 4 + r) * 64 + 32, 0, 32);
    }
    for (int64_t b = 0; b < nb; ++b) std::memset(p.min.data() + b * kNTile + 8, 0, 8 * sizeof(float));
  }
}

// Activation rows as the tile loads read them: int8 quants with a row stride,
// each 32-column block's scale and (affine formats) scaled sum.
struct ActRows {
  const int8_t* q;
  const float* d;
  const float* s;
  int64_t blocks;  // per row
};

// One group's products: A (activations) times B (the panel) into tile C,
// stored to out (16 x 16 int32). A macro: the tile intrinsics take the
// register number as a literal.
#define UDACI_TILE_PRODUCT(C, A, B, a, astride, b, out) \
  do {                                                  \
    _tile_loadd(A, a, astride);                         \
    _tile_loadd(B, b, kNTile * 4);                      \
    _tile_zero(C);                                      \
    _tile_dpbssd(C, A, B);                              \
    _tile_stored(C, out, kNTile * 4);                   \
  } while (0)

// acc[m] += the group's products of row m, scaled: the VNNI kernel's
// operations in its order (see the top).
template <QFormat F, int MR>
__attribute__((always_inline)) inline void scale_group(__m512 (&acc)[MR], const int32_t* c, const ActRows& x,
                                                       PanelView p, int64_t g) {
  constexpr int G = group_cols<F>();
  const int64_t b = g * G / 32;
  const __m512 sc = _mm512_loadu_ps(p.scale + g * kNTile);
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    const __m512 v = _mm512_cvtepi32_ps(_mm512_load_si512(c + m * kNTile));
    acc[m] = _mm512_fmadd_ps(v, _mm512_mul_ps(sc, _mm512_set1_ps(x.d[m * x.blocks + b])), acc[m]);
  }
  if constexpr (has_min<F>()) {
    const __m512 mn = _mm512_loadu_ps(p.min + b * kNTile);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) acc[m] = _mm512_fmadd_ps(mn, _mm512_set1_ps(x.s[m * x.blocks + b]), acc[m]);
  }
}

// Rows [0, MR) of x against the panel; y rows [0, mvalid), columns r0 + [0, nvalid).
template <QFormat F, int MR>
void run_rows(const ActRows& x, PanelView p, int64_t groups, float* y, int64_t ldy, int64_t r0,
              int nvalid, int mvalid, const float* row_scale, const uint8_t* pf = nullptr, int64_t pf_bytes = 0) {
  constexpr int G = group_cols<F>();
  const int64_t astride = x.blocks * 32;
  alignas(64) int32_t cb[2][kMTile * kNTile];
  __m512 acc[MR];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) acc[m] = _mm512_setzero_ps();
  // Two sets of tile registers: group g + 1's product runs while group g's
  // sums are scaled. (Four groups in flight measured no faster: the tile
  // unit and the float scaling share the core's vector ports.)
  const int8_t* pb = p.b;
  auto issue = [&x, pb, astride, &cb](int64_t g) {
    const int8_t* a = x.q + g * G;
    const int8_t* b = pb + g * G * kNTile;
    if ((g & 1) == 0) {
      UDACI_TILE_PRODUCT(0, 2, 4, a, astride, b, cb[0]);
    } else {
      UDACI_TILE_PRODUCT(1, 3, 5, a, astride, b, cb[1]);
    }
  };
  issue(0);
  for (int64_t g = 0; g < groups; ++g) {
    if (g + 1 < groups) issue(g + 1);
    if (pf_bytes > 0) prefetch_share(pf, pf_bytes, g, g + 1, groups);
    scale_group<F, MR>(acc, cb[g & 1], x, p, g);
  }
  const __mmask16 keep = static_cast<__mmask16>((1u << nvalid) - 1u);
  __m512 rs = _mm512_set1_ps(1.0f);
  if constexpr (F == QFormat::kI8Row) rs = _mm512_maskz_loadu_ps(keep, row_scale + r0);
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
    if (m >= mvalid) break;
    if constexpr (F == QFormat::kI8Row) acc[m] = _mm512_mul_ps(acc[m], rs);
    _mm512_mask_storeu_ps(y + m * ldy + r0, keep, acc[m]);
  }
}

template <QFormat F>
void run_format(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1, Panel& p) {
  constexpr int G = group_cols<F>();
  const int64_t groups = w.padded_cols / G;
  const int64_t nb = a.blocks;
  p.b.resize(static_cast<size_t>(groups * G * kNTile));
  p.scale.resize(static_cast<size_t>(groups * kNTile));
  p.min.resize(static_cast<size_t>(nb * kNTile));
  const PanelView pv(p);
  // The last group of fewer than 16 rows reads QActs' zero padding rows.
  static_assert(kQActsRowGroup == kMTile);
  const int64_t full = a.n / kMTile * kMTile;
  const int rem = static_cast<int>(a.n - full);
  configure_tiles(G);
  for (int64_t t = t0; t < t1; t += 2) {
    const bool pair = t + 1 < t1;
    unpack_panel<F>(w, t, pair, p);
    const int64_t r0 = t * kTileRows;
    const int nvalid = static_cast<int>(std::min<int64_t>(pair ? kNTile : kTileRows, w.rows - r0));
    const float* rs = F == QFormat::kI8Row ? w.row_scale.data() : nullptr;
    // The next pair's bytes come in while the first row group runs (16-row
    // decode steps +6%, bench-forward int4, session 23).
    const uint8_t* pf = t + 2 < w.tiles ? w.tile(t + 2) : nullptr;
    const int64_t pf_bytes = pf ? std::min<int64_t>(2, w.tiles - (t + 2)) * w.tile_bytes : 0;
    for (int64_t j = 0; j < full; j += kMTile) {
      const ActRows x{a.q.data() + j * nb * 32, a.d.data() + j * nb, a.s.data() + j * nb, nb};
      run_rows<F, kMTile>(x, pv, groups, y + j * ldy, ldy, r0, nvalid, kMTile, rs, pf, j == 0 ? pf_bytes : 0);
    }
    if (rem > 0) {
      const ActRows x{a.q.data() + full * nb * 32, a.d.data() + full * nb, a.s.data() + full * nb, nb};
      float* yt = y + full * ldy;
      const int64_t rem_pf = full == 0 ? pf_bytes : 0;
      if (rem <= 4) {
        run_rows<F, 4>(x, pv, groups, yt, ldy, r0, nvalid, rem, rs, pf, rem_pf);
      } else if (rem <= 8) {
        run_rows<F, 8>(x, pv, groups, yt, ldy, r0, nvalid, rem, rs, pf, rem_pf);
      } else {
        run_rows<F, kMTile>(x, pv, groups, yt, ldy, r0, nvalid, rem, rs, pf, rem_pf);
      }
    }
  }
  _tile_release();
}

// ---------------------------------------------------------------------------
// AMX-BF16: prompt rows (tiled_gemm_bf16). A tile multiply (tdpbf16ps) adds
// to a 16 x 16 fp32 block the products over 32 columns: C[m][n] += sum_k
// A[m][k] * B[k / 2][2 n + k % 2], A 16 activation rows of 32 bf16, B 16
// weight rows in pairs of columns. The weights are dequantised into such a
// panel once per call with their scales (and mins) applied, so the fp32 sums
// run over the whole row in the tile: no per-block conversion and scaling,
// which bounds the int8 kernel above (its tile unit waits on them). Each tile
// product serves 16 x 16 outputs; two activation groups times two weight
// panels keep four products independent per column step. Converting the
// panels costs as much as the products of a ~60-row prompt, so pairs of
// tiles go straight from their codes to bf16 (codes_to_bf16), and each
// quad of tiles is converted between the tile multiplies of the quad before
// (PanelConverter), the pair after it prefetched meanwhile.

// B operand rows per weight panel: [cols / 2][32] bf16 (16 weight rows x 2
// columns), from the byte panel; columns [4 r_begin, 4 r_end).
template <QFormat F>
void panel_to_bf16(PanelView p, int64_t r_begin, int64_t r_end, uint16_t* dst) {
  constexpr int G = group_cols<F>();
  // Word 2n of a B row is column c of weight row n, word 2n + 1 column c + 1;
  // the converted pair holds column c of rows 0..15 in words 0..15 and
  // column c + 1 in words 16..31.
  alignas(64) static const uint16_t kPairs[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                  8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i pairs = _mm512_load_si512(kPairs);
  for (int64_t r = r_begin; r < r_end; ++r) {  // columns 4r .. 4r + 3 of the 16 rows
    const int64_t k = 4 * r;
    const __m512 sc = _mm512_loadu_ps(p.scale + (k / G) * kNTile);
    const __m512i v = _mm512_loadu_si512(p.b + r * 64);  // byte 4n + j: column k + j of row n
    __m512 c[4];
    c[0] = _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 24), 24));
    c[1] = _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 16), 24));
    c[2] = _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 8), 24));
    c[3] = _mm512_cvtepi32_ps(_mm512_srai_epi32(v, 24));
    if constexpr (has_min<F>()) {
      const __m512 mn = _mm512_loadu_ps(p.min + (k / 32) * kNTile);
      for (__m512& x : c) x = _mm512_fmadd_ps(x, sc, mn);
    } else {
      for (__m512& x : c) x = _mm512_mul_ps(x, sc);
    }
    const __m512i lo = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(c[1], c[0]));
    const __m512i hi = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(c[3], c[2]));
    _mm512_storeu_si512(dst + (2 * r) * 32, _mm512_permutexvar_epi16(pairs, lo));
    _mm512_storeu_si512(dst + (2 * r + 1) * 32, _mm512_permutexvar_epi16(pairs, hi));
  }
}


// Formats whose bf16 panels are made straight from the tile's codes (not
// through a byte panel): 4-bit codes, NF4's int8 levels and 8-bit quants.
template <QFormat F>
constexpr bool direct_bf16() {
  return F == QFormat::kQ4_0 || F == QFormat::kQ4_1 || F == QFormat::kI4Affine || F == QFormat::kQ4_K ||
         F == QFormat::kNF4 || F == QFormat::kQ8_0 || F == QFormat::kI8Row;
}

// The offset added to the codes so that they are unsigned bytes: signed
// codes (Q8_0, udaci's int8, NF4's levels) have their sign bit flipped (+128);
// Q4_0's nibbles are its value + 8 already.
template <QFormat F>
constexpr int code_offset() {
  if constexpr (F == QFormat::kQ8_0 || F == QFormat::kI8Row || F == QFormat::kNF4) return 128;
  if constexpr (F == QFormat::kQ4_0) return 8;
  return 0;
}

// Blocks [b0, b1) of the pair of tiles t, t + 1 straight from their codes
// into bf16 pair rows (the layout panel_to_bf16 writes, the same values: u *
// scale + min in one fused multiply-add, then rounded to bf16, u the code
// as an unsigned byte; an offset K (code_offset) is folded into the min as
// -K * scale, a power of two times the scale, so (u - K) * scale is the
// exact sum and rounds as the byte panel's product does). The panel's scales
// (and mins) must be unpacked already (unpack_half<F, true>). Per 64
// weights: four byte permutes that zero-extend a column pair of 8 rows into
// 16 lanes, and no round trip through a byte panel.
template <QFormat F>
void codes_to_bf16(const TiledMatrix& w, int64_t t, PanelView p, int64_t b0, int64_t b1, uint16_t* dst) {
  static_assert(direct_bf16<F>());
  const TileLayout l = tile_layout(F, w.sb_cols);
  // Byte 4 L of lane L (0..15) of a column pair's half: row n = L / 2 + 8 h,
  // column 2 jp + L % 2 of the register's 4, i.e. byte 4 n + 2 jp + L % 2.
  alignas(64) static const auto kIdx = [] {
    std::array<std::array<uint8_t, 64>, 4> idx{};
    for (int jp = 0; jp < 2; ++jp)
      for (int h = 0; h < 2; ++h)
        for (int lane = 0; lane < 16; ++lane)
          idx[2 * jp + h][4 * lane] = static_cast<uint8_t>(4 * (lane / 2 + 8 * h) + 2 * jp + lane % 2);
    return idx;
  }();
  alignas(64) static const int32_t kRowPairs[2][16] = {{0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7},
                                                       {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15}};
  __m512i idx[4];
  for (int i = 0; i < 4; ++i) idx[i] = _mm512_load_si512(kIdx[static_cast<size_t>(i)].data());
  const __m512i rows_lo = _mm512_load_si512(kRowPairs[0]), rows_hi = _mm512_load_si512(kRowPairs[1]);
  constexpr __mmask64 kLow = 0x1111111111111111ULL;  // byte 0 of every dword
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t s = b / l.blocks, blk = b % l.blocks;
    const uint8_t* q0 = w.tile(t) + s * w.sb_bytes + l.header + blk * l.block_bytes;
    const uint8_t* q1 = w.tile(t + 1) + s * w.sb_bytes + l.header + blk * l.block_bytes;
    __m512i v[8];
    if constexpr (nibbles_only<F>()) {
      unpack_nibble_pair<F>(q0, q1, v);
    } else {
      for (int c = 0; c < 8; ++c)
        v[c] = _mm512_inserti64x4(_mm512_castsi256_si512(ld(q0 + 32 * c)), ld(q1 + 32 * c), 1);
    }
    if constexpr (code_offset<F>() == 128)
      for (int c = 0; c < 8; ++c) v[c] = _mm512_xor_si512(v[c], _mm512_set1_epi8(static_cast<char>(0x80)));
    const __m512 sc = _mm512_loadu_ps(p.scale + b * kNTile);
    __m512 mn;
    if constexpr (has_min<F>()) {
      static_assert(code_offset<F>() == 0);
      mn = _mm512_loadu_ps(p.min + b * kNTile);
    } else {
      mn = _mm512_mul_ps(sc, _mm512_set1_ps(-static_cast<float>(code_offset<F>())));
    }
    const __m512 d[2] = {_mm512_permutexvar_ps(rows_lo, sc), _mm512_permutexvar_ps(rows_hi, sc)};
    const __m512 m[2] = {_mm512_permutexvar_ps(rows_lo, mn), _mm512_permutexvar_ps(rows_hi, mn)};
    uint16_t* out = dst + b * 16 * 32;  // 16 pair rows of 32 values per block
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
#pragma GCC unroll 2
      for (int jp = 0; jp < 2; ++jp) {
        __m512 x[2];
        for (int h = 0; h < 2; ++h) {
          const __m512i q = _mm512_maskz_permutexvar_epi8(kLow, idx[2 * jp + h], v[c]);
          x[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), d[h], m[h]);
        }
        _mm512_store_si512(out + (2 * c + jp) * 32, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(x[1], x[0])));
      }
    }
  }
}

// Converts the (up to) two panels of 16 weight rows starting at tile t into
// dst in slices, so that the slices can run between the tile multiplies of
// the quad before (the vector units are otherwise idle while the tile unit
// works). A panel is unpacked when its first slice is due.
template <QFormat F>
class PanelConverter {
 public:
  PanelConverter(const TiledMatrix& w, Panel& p, int64_t t1) : w_(w), p_(p), t1_(t1), per_panel_(w.padded_cols / 4) {}

  // Starts on tiles [t, t + 4) (those before t1) into dst (two panels of
  // padded_cols / 2 pair rows).
  void start(int64_t t, uint16_t* dst) {
    t_ = t;
    dst_ = dst;
    h_ = 0;
    r_ = 0;
    unpacked_ = false;
    for (int h = 0; h < 2; ++h) {
      const int64_t tp = t + 2 * h;
      const bool there = tp < t1_;
      const bool pair = tp + 1 < t1_;
      r0_[h] = tp * kTileRows;
      nvalid_[h] = there ? static_cast<int>(std::min<int64_t>(pair ? kNTile : kTileRows, w_.rows - r0_[h])) : 0;
    }
  }
  bool done() const { return h_ >= 2 || (h_ == 1 && nvalid_[1] == 0); }
  // The next n slices of 4 columns (whole blocks of 32 where the panel is
  // made straight from the codes).
  void step(int64_t n) {
    while (n > 0 && !done()) {
      const int64_t tp = t_ + 2 * h_;
      const bool pair = tp + 1 < t1_;
      const bool direct = direct_bf16<F>() && pair;
      uint16_t* dst = dst_ + h_ * per_panel_ * 2 * 32;
      if (!unpacked_) {
        if (direct) {  // the scales only; the quants are read where they lie
          unpack_half<F, true>(w_, tp, 0, p_);
          unpack_half<F, true>(w_, tp + 1, 1, p_);
        } else {
          unpack_panel<F>(w_, tp, pair, p_);
        }
        unpacked_ = true;
      }
      int64_t e = std::min(per_panel_, r_ + n);
      if (direct) e = std::min(per_panel_, (e + 7) / 8 * 8);  // whole blocks of 32 columns
      if (tp + 2 < w_.tiles) {
        // The same share of the next pair's bytes (the tiles are contiguous)
        // meanwhile: without it the first touch of each tile waited on memory
        // (prompt pass -8%, session 23).
        prefetch_share(w_.tile(tp + 2), std::min<int64_t>(2, w_.tiles - (tp + 2)) * w_.tile_bytes, r_, e, per_panel_);
      }
      if constexpr (direct_bf16<F>()) {
        if (direct) {
          codes_to_bf16<F>(w_, tp, PanelView(p_), r_ / 8, e / 8, dst);
        }
      }
      if (!direct) panel_to_bf16<F>(PanelView(p_), r_, e, dst);
      n -= e - r_;
      r_ = e;
      if (r_ == per_panel_) {
        ++h_;
        r_ = 0;
        unpacked_ = false;
      }
    }
  }
  void finish() { step(2 * per_panel_); }
  int64_t slices() const { return 2 * per_panel_; }
  const int64_t* r0() const { return r0_; }
  const int* nvalid() const { return nvalid_; }

 private:
  const TiledMatrix& w_;
  Panel& p_;
  const int64_t t1_;
  const int64_t per_panel_;  // slices of 4 columns per panel
  int64_t t_ = 0;
  uint16_t* dst_ = nullptr;
  int h_ = 0;
  int64_t r_ = 0;
  bool unpacked_ = false;
  int64_t r0_[2] = {0, 0};
  int nvalid_[2] = {0, 0};
};

// Copies a stored 16 x 16 block to y (rows [0, mvalid), columns r0 + [0, nvalid)).
inline void put_block(const float* c, float* y, int64_t ldy, int64_t r0, int mvalid, int nvalid,
                      const float* row_scale) {
  const __mmask16 keep = static_cast<__mmask16>((1u << nvalid) - 1u);
  const __m512 rs = row_scale ? _mm512_maskz_loadu_ps(keep, row_scale + r0) : _mm512_set1_ps(1.0f);
  for (int m = 0; m < mvalid; ++m)
    _mm512_mask_storeu_ps(y + m * ldy + r0, keep, _mm512_mul_ps(_mm512_load_ps(c + m * 16), rs));
}

// Activation rows [j, j + 16 * MG) times panels b[0..NP): MG x NP tile
// products per column step, each step followed by side().
template <int MG, int NP, class Side>
void bf16_block(const BActs& a, int64_t j, const uint16_t* const* b, int64_t ksteps, float* y, int64_t ldy,
                const int64_t* r0, const int* nvalid, const float* row_scale, Side&& side) {
  static_assert(MG >= 1 && MG <= 2 && NP >= 1 && NP <= 2);
  const int64_t astride = a.stride * 2;
  const uint16_t* a0 = a.x + j * a.stride;
  const uint16_t* a1 = a0 + 16 * a.stride;
  const uint16_t* act[2] = {a0, a1};
  alignas(64) float c[4][256];
  bf16_tile_sums<MG, NP>(act, astride, b, ksteps, c, side);
  const int m0 = static_cast<int>(std::min<int64_t>(16, a.n - j));
  const int m1 = static_cast<int>(std::min<int64_t>(16, a.n - j - 16));
  for (int h = 0; h < NP; ++h) {
    if (nvalid[h] <= 0) continue;
    put_block(c[h], y + j * ldy, ldy, r0[h], m0, nvalid[h], row_scale);
    if (MG == 2 && m1 > 0) put_block(c[2 + h], y + (j + 16) * ldy, ldy, r0[h], m1, nvalid[h], row_scale);
  }
}

// Every quad of tiles (two panels of 16 weight rows) is converted to bf16
// while the products of the quad before run: the conversion (vector units)
// and the tile multiplies (the tile unit) overlap instead of taking turns.
template <QFormat F>
void run_format_bf16(const TiledMatrix& w, const BActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1, Panel& p,
                     std::vector<uint16_t>& bf16_panels) {
  constexpr int G = group_cols<F>();
  const int64_t groups = w.padded_cols / G;
  const int64_t nb = w.padded_cols / 32;
  const int64_t ksteps = w.padded_cols / 32;
  p.b.resize(static_cast<size_t>(groups * G * kNTile));
  p.scale.resize(static_cast<size_t>(groups * kNTile));
  p.min.resize(static_cast<size_t>(nb * kNTile));
  const int64_t quad = 2 * ksteps * 512;  // bf16 values of two panels
  bf16_panels.resize(static_cast<size_t>(2 * quad + 32));
  uint16_t* const base = bf16_panels.data() + ((64 - reinterpret_cast<uintptr_t>(bf16_panels.data()) % 64) % 64) / 2;
  uint16_t* const buf[2] = {base, base + quad};
  const float* rs = F == QFormat::kI8Row ? w.row_scale.data() : nullptr;
  PanelConverter<F> conv[2] = {PanelConverter<F>(w, p, t1), PanelConverter<F>(w, p, t1)};
  conv[0].start(t0, buf[0]);
  conv[0].finish();
  configure_bf16_tiles();
  // Slices of the next quad per column step of this one's products.
  const int64_t row_groups = (a.n + 31) / 32;
  const int64_t per_step = (conv[0].slices() + row_groups * ksteps - 1) / (row_groups * ksteps);
  int which = 0;
  for (int64_t t = t0; t < t1; t += 4) {
    PanelConverter<F>& cur = conv[which];
    PanelConverter<F>& next = conv[1 - which];
    const uint16_t* b[2] = {buf[which], buf[which] + ksteps * 512};
    int64_t r0[2] = {cur.r0()[0], cur.r0()[1]};
    int nvalid[2] = {cur.nvalid()[0], cur.nvalid()[1]};
    const bool more = t + 4 < t1;
    if (more) next.start(t + 4, buf[1 - which]);
    auto side = [&next, more, per_step] {
      if (more) next.step(per_step);
    };
    const bool two = nvalid[1] > 0;
    for (int64_t j = 0; j < a.n; j += 32) {
      const bool mg2 = a.n - j > 16;
      if (two && mg2) {
        bf16_block<2, 2>(a, j, b, ksteps, y, ldy, r0, nvalid, rs, side);
      } else if (two) {
        bf16_block<1, 2>(a, j, b, ksteps, y, ldy, r0, nvalid, rs, side);
      } else if (mg2) {
        bf16_block<2, 1>(a, j, b, ksteps, y, ldy, r0, nvalid, rs, side);
      } else {
        bf16_block<1, 1>(a, j, b, ksteps, y, ldy, r0, nvalid, rs, side);
      }
    }
    if (more) next.finish();
    which = 1 - which;
  }
  _tile_release();
}

}  // namespace

void bf16_activations_amx(const float* x, int64_t r0, int64_t r1, int64_t cols, BActs& out) {
  for (int64_t m = r0; m < r1; ++m) {
    const float* src = x + m * cols;
    uint16_t* dst = out.x + m * out.stride;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c),
                          reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(src + c))));
    if (c < cols) {  // the last columns, zeros up to the stride (a multiple of 16)
      const __mmask16 keep = static_cast<__mmask16>((1u << (cols - c)) - 1u);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c),
                          reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(keep, src + c))));
      c += 16;
    }
    for (; c < out.stride; c += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c), _mm256_setzero_si256());
  }
}

void tgemm_amx_bf16(const TiledMatrix& w, const BActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1) {
  // Per thread, reused across calls; passed down (see PanelView).
  thread_local Panel panel;
  thread_local std::vector<uint16_t> bf16_panels;
  Panel& p = *opaque(&panel);
  std::vector<uint16_t>& wb = *opaque(&bf16_panels);
  switch (w.format) {
    case QFormat::kQ8_0: run_format_bf16<QFormat::kQ8_0>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kQ4_0: run_format_bf16<QFormat::kQ4_0>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kQ4_1: run_format_bf16<QFormat::kQ4_1>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kQ5_0: run_format_bf16<QFormat::kQ5_0>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kQ5_1: run_format_bf16<QFormat::kQ5_1>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kI8Row: run_format_bf16<QFormat::kI8Row>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kI4Affine: run_format_bf16<QFormat::kI4Affine>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kNF4: run_format_bf16<QFormat::kNF4>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kQ4_K: run_format_bf16<QFormat::kQ4_K>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kQ5_K: run_format_bf16<QFormat::kQ5_K>(w, a, y, ldy, t0, t1, p, wb); return;
    case QFormat::kQ6_K: run_format_bf16<QFormat::kQ6_K>(w, a, y, ldy, t0, t1, p, wb); return;
  }
}

void tgemm_amx(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1) {
  if (a.n < kAmxMinRows) {
    tgemm_avx512(w, a, y, ldy, t0, t1);
    return;
  }
  thread_local Panel panel;  // per thread, reused across calls; passed down (see PanelView)
  Panel& p = *opaque(&panel);
  switch (w.format) {
    case QFormat::kQ8_0: run_format<QFormat::kQ8_0>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kQ4_0: run_format<QFormat::kQ4_0>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kQ4_1: run_format<QFormat::kQ4_1>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kQ5_0: run_format<QFormat::kQ5_0>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kQ5_1: run_format<QFormat::kQ5_1>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kI8Row: run_format<QFormat::kI8Row>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kI4Affine: run_format<QFormat::kI4Affine>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kNF4: run_format<QFormat::kNF4>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kQ4_K: run_format<QFormat::kQ4_K>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kQ5_K: run_format<QFormat::kQ5_K>(w, a, y, ldy, t0, t1, p); return;
    case QFormat::kQ6_K: run_format<QFormat::kQ6_K>(w, a, y, ldy, t0, t1, p); return;
  }
}

}  // namespace detail
}  // namespace udaci
