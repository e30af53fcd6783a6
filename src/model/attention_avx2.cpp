// Attention of one token for a range of its query heads (all of them, or
// one), with AVX2 + FMA (compiled with -mavx2 -mfma, called only when
// cpu_features.hpp has seen them). Three passes, the first and last walking
// the K or V rows in order, 8 keys at a time:
//  1. scores: for each K/V head in the block's rows, each of its query
//     heads' 8 dot products side by side and one transpose-add tree giving
//     the 8 scores; grouped-query heads read the rows from L1, and whole
//     rows are read in order (one K/V head's 256 bytes out of every 768-byte
//     row, as reading per head does, ran at half the memory bandwidth);
//  2. softmax with a vector exp;
//  3. the weighted sum of V: per block and K/V head, its query heads three
//     at a time with their outputs in registers over the block's rows.
// At batch 16 the cache's rows come from memory: K/V of 16 sequences x 166
// tokens x 30 layers is 122 MB a step in fp32, more than the int4 weights.
//
// A head's result does not depend on which heads share the call, how the
// keys are cut into spans or where a block of 8 starts: every key's score
// comes out of the same operations, and softmax and the V sums run over the
// keys in order. So attend_cpu may group heads or not without changing a bit.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "model/attention_kernels.hpp"
#include "model/avx2_util.hpp"

namespace udaci {
namespace detail {

namespace {

constexpr int kBlock = 8;      // keys whose scores are computed together
constexpr int64_t kAhead = 8;  // rows prefetched ahead of the one read

// Lane j: the sum of the 8 lanes of a[j].
inline __m256 hsum8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]);
  const __m256 t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]);
  const __m256 t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1);  // low halves of a0..a3 | high halves
  const __m256 u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

inline void prefetch_row(const float* row, int64_t d) {
  for (int64_t c = 0; c < d; c += 16) _mm_prefetch(reinterpret_cast<const char*>(row + c), _MM_HINT_T0);
}

// Scores of heads [0, n_heads) (q [n_heads, d]) for keys t .. t + valid - 1,
// rows[b] their K (rows past `valid` repeat the last one), into
// p[h * p_stride + t ..].
void score_block(const float* q, int64_t n_heads, int64_t d, const float* const* rows, int valid, float scale,
                 float* p, int64_t p_stride, int64_t t) {
  const __m256 vs = _mm256_set1_ps(scale);
  for (int64_t h = 0; h < n_heads; ++h) {
    const float* qh = q + h * d;
    __m256 acc[kBlock];
    __m256 qc = _mm256_loadu_ps(qh);
    for (int b = 0; b < kBlock; ++b) acc[b] = _mm256_mul_ps(qc, _mm256_loadu_ps(rows[b]));
    for (int64_t c = 8; c < d; c += 8) {
      qc = _mm256_loadu_ps(qh + c);
      for (int b = 0; b < kBlock; ++b) acc[b] = _mm256_fmadd_ps(qc, _mm256_loadu_ps(rows[b] + c), acc[b]);
    }
    const __m256 s = _mm256_mul_ps(hsum8(acc), vs);
    float* dst = p + h * p_stride + t;
    if (valid == kBlock) {
      _mm256_storeu_ps(dst, s);
    } else {
      alignas(32) float tmp[kBlock];
      _mm256_store_ps(tmp, s);
      std::copy(tmp, tmp + valid, dst);
    }
  }
}
// acc[h * d + c0 ..+ 8 * R) += sum over the keys of `rows` (n of them, in
// order) of p[h * p_stride + t0 + b] * v_b[c0 ..+ 8 * R), for H heads. The
// accumulators come from and go back to memory (L1) around each block of
// keys, so the rows of a block are consumed in full while they are in L1.
template <int H, int R>
void weighted_v_tile(const float* const* rows, int n, int64_t c0, const float* p, int64_t p_stride, int64_t t0,
                     float* acc, int64_t d) {
  __m256 a[H][R];
  for (int h = 0; h < H; ++h)
    for (int r = 0; r < R; ++r) a[h][r] = _mm256_loadu_ps(acc + h * d + c0 + 8 * r);
  for (int b = 0; b < n; ++b) {
    const float* vr = rows[b] + c0;
    __m256 w[H];
    for (int h = 0; h < H; ++h) w[h] = _mm256_broadcast_ss(p + h * p_stride + t0 + b);
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_loadu_ps(vr + 8 * r);
      for (int h = 0; h < H; ++h) a[h][r] = _mm256_fmadd_ps(w[h], x, a[h][r]);
    }
  }
  for (int h = 0; h < H; ++h)
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(acc + h * d + c0 + 8 * r, a[h][r]);
}

// Every 8-column chunk of d for H heads of one K/V head (rows point at it):
// R chunks per tile, as many as the registers hold next to the H weights.
template <int H>
void weighted_v_block(const float* const* rows, int n, int64_t d, const float* p, int64_t p_stride, int64_t t0,
                      float* acc) {
  constexpr int R = H == 1 ? 8 : 4;
  int64_t c = 0;
  for (; c + 8 * R <= d; c += 8 * R) weighted_v_tile<H, R>(rows, n, c, p, p_stride, t0, acc, d);
  for (; c < d; c += 8) weighted_v_tile<H, 1>(rows, n, c, p, p_stride, t0, acc, d);
}

// n_heads heads of one K/V head, three at a time.
void weighted_v_heads(int64_t n_heads, const float* const* rows, int n, int64_t d, const float* p,
                      int64_t p_stride, int64_t t0, float* acc) {
  int64_t h = 0;
  for (; h + 3 <= n_heads; h += 3) weighted_v_block<3>(rows, n, d, p + h * p_stride, p_stride, t0, acc + h * d);
  if (n_heads - h == 2) weighted_v_block<2>(rows, n, d, p + h * p_stride, p_stride, t0, acc + h * d);
  if (n_heads - h == 1) weighted_v_block<1>(rows, n, d, p + h * p_stride, p_stride, t0, acc + h * d);
}

// The rows of keys j .. j + valid - 1 of a span (base already at the K/V
// head), rows past `valid` repeating the last one.
inline void block_rows(const float* base, int64_t stride, int64_t j, int valid, const float** rows) {
  for (int b = 0; b < kBlock; ++b) rows[b] = base + (j + std::min(b, valid - 1)) * stride;
}

// Walks the rows of the first `total` keys of `spans` (K or V, per `which`)
// in order, kBlock keys at a time: fn(base, j, valid, t) for the block of
// keys j .. j + valid - 1 of a span whose rows start at `base`, t the index
// of key j among all keys. The rows after the block are prefetched
// (`cols` floats from `col0` of each).
template <typename Fn>
void for_each_block(const KvSpan* spans, int64_t n_spans, int64_t total, const float* KvSpan::*which,
                    int64_t stride, int64_t col0, int64_t cols, Fn&& fn) {
  int64_t t = 0;
  for (int64_t s = 0; s < n_spans && t < total; ++s) {
    const int64_t m = std::min(spans[s].tokens, total - t);
    const float* base = spans[s].*which;
    for (int64_t j = 0; j < m; j += kBlock) {
      const int valid = static_cast<int>(std::min<int64_t>(kBlock, m - j));
      for (int64_t b = j + kBlock; b < std::min(m, j + kBlock + kAhead); ++b)
        prefetch_row(base + b * stride + col0, cols);
      fn(base, j, valid, t + j);
    }
    t += m;
  }
}

}  // namespace

void attend_heads_avx2(const float* q, int64_t h0, int64_t h1, int64_t group, const KvSpan* spans,
                       int64_t n_spans, int64_t stride, int64_t d, int64_t total, float scale, float* scratch,
                       float* out) {
  const int64_t nh = h1 - h0;
  const int64_t g0 = h0 / group, g1 = (h1 - 1) / group + 1;  // the K/V heads read
  // Heads [lo(g), hi(g)) of [h0, h1) read K/V head g.
  const auto lo = [&](int64_t g) { return std::max(h0, g * group); };
  const auto hi = [&](int64_t g) { return std::min(h1, (g + 1) * group); };
  const int64_t p_stride = (total + 7) / 8 * 8;
  float* p = scratch;                    // [nh, p_stride]: scores, then softmax numerators
  float* acc = scratch + nh * p_stride;  // [nh, d]
  float* inv = acc + nh * d;             // [nh]
  const float* rows[kBlock];
  // 1. Scores, p[(h - h0) * p_stride + t]: a block of keys at a time, every
  // K/V head of the block's rows in turn, so the rows are read in order.
  for_each_block(spans, n_spans, total, &KvSpan::k, stride, g0 * d, (g1 - g0) * d,
                 [&](const float* base, int64_t j, int valid, int64_t t) {
                   for (int64_t g = g0; g < g1; ++g) {
                     block_rows(base + g * d, stride, j, valid, rows);
                     score_block(q + (lo(g) - h0) * d, hi(g) - lo(g), d, rows, valid, scale,
                                 p + (lo(g) - h0) * p_stride, p_stride, t);
                   }
                 });
  // 2. Softmax numerators and their sums.
  for (int64_t h = 0; h < nh; ++h) {
    float* ph = p + h * p_stride;
    // Padded to whole vectors with a copy of the first score (so the
    // maximum is unchanged); the padding's exp is zeroed below.
    for (int64_t i = total; i < p_stride; ++i) ph[i] = ph[0];
    __m256 mx = _mm256_loadu_ps(ph);
    for (int64_t i = 8; i < p_stride; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(ph + i));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, mx);
    const __m256 vm = _mm256_set1_ps(*std::max_element(lanes, lanes + 8));
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < p_stride; i += 8) {
      __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(ph + i), vm));
      if (i + 8 > total) {  // the last vector: zero the padding lanes
        alignas(32) float tail[8];
        _mm256_store_ps(tail, e);
        for (int64_t l = total - i; l < 8; ++l) tail[l] = 0.0f;
        e = _mm256_load_ps(tail);
      }
      _mm256_storeu_ps(ph + i, e);
      sum = _mm256_add_ps(sum, e);
    }
    inv[h] = 1.0f / hsum_avx2(sum);
  }
  // 3. The weighted sums of V over the same walk; the outputs wait in acc.
  std::fill(acc, acc + nh * d, 0.0f);
  for_each_block(spans, n_spans, total, &KvSpan::v, stride, g0 * d, (g1 - g0) * d,
                 [&](const float* base, int64_t j, int valid, int64_t t) {
                   for (int64_t g = g0; g < g1; ++g) {
                     block_rows(base + g * d, stride, j, valid, rows);
                     weighted_v_heads(hi(g) - lo(g), rows, valid, d, p + (lo(g) - h0) * p_stride, p_stride, t,
                                      acc + (lo(g) - h0) * d);
                   }
                 });
  for (int64_t h = 0; h < nh; ++h) {
    const __m256 vi = _mm256_set1_ps(inv[h]);
    for (int64_t c = 0; c < d; c += 8)
      _mm256_storeu_ps(out + h * d + c, _mm256_mul_ps(_mm256_loadu_ps(acc + h * d + c), vi));
  }
}

}  // namespace detail
}  // namespace udaci
