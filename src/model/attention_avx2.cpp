// One (token, head) of fp32 attention with AVX2 + FMA (compiled with -mavx2
// -mfma, called only when cpu_features.hpp has seen them). Two passes: the
// scores of every key, then softmax and the weighted sum of V with the
// output held in registers while the V rows stream by.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "model/attention_kernels.hpp"
#include "model/avx2_util.hpp"

namespace udaci {
namespace detail {

namespace {

inline float dot(const float* a, const float* b, int64_t d) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= d; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = hsum_avx2(_mm256_add_ps(acc0, acc1));
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}

// out[0 .. 8 * R) = sum over t of p[t] * v_t[0 .. 8 * R), the V rows of the
// spans (first `total` tokens).
template <int R>
void weighted_v(const KvSpan* spans, int64_t n_spans, int64_t stride, int64_t off, int64_t total,
                const float* p, float inv, float* out) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  int64_t t = 0;
  for (int64_t s = 0; s < n_spans && t < total; ++s) {
    const int64_t m = std::min(spans[s].tokens, total - t);
    const float* v = spans[s].v + off;
    for (int64_t j = 0; j < m; ++j, ++t) {
      const __m256 w = _mm256_set1_ps(p[t]);
      const float* vr = v + j * stride;
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr + 8 * r), acc[r]);
    }
  }
  const __m256 vi = _mm256_set1_ps(inv);
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(out + 8 * r, _mm256_mul_ps(acc[r], vi));
}

}  // namespace

void attend_head_avx2(const float* q, const KvSpan* spans, int64_t n_spans, int64_t stride, int64_t head_off,
                      int64_t d, int64_t total, float scale, float* p, float* out) {
  float mx = -INFINITY;
  int64_t t = 0;
  for (int64_t s = 0; s < n_spans && t < total; ++s) {
    const int64_t m = std::min(spans[s].tokens, total - t);
    const float* k = spans[s].k + head_off;
    for (int64_t j = 0; j < m; ++j, ++t) {
      p[t] = dot(q, k + j * stride, d) * scale;
      mx = std::max(mx, p[t]);
    }
  }
  float sum = 0.0f;
  for (int64_t i = 0; i < total; ++i) {
    p[i] = std::exp(p[i] - mx);
    sum += p[i];
  }
  const float inv = 1.0f / sum;
  // The output in registers, 64 floats (8 registers) at a time.
  int64_t i = 0;
  for (; i + 64 <= d; i += 64) weighted_v<8>(spans, n_spans, stride, head_off + i, total, p, inv, out + i);
  for (; i + 8 <= d; i += 8) weighted_v<1>(spans, n_spans, stride, head_off + i, total, p, inv, out + i);
  for (; i < d; ++i) {
    float acc = 0.0f;
    int64_t u = 0;
    for (int64_t s = 0; s < n_spans && u < total; ++s) {
      const int64_t m = std::min(spans[s].tokens, total - u);
      for (int64_t j = 0; j < m; ++j, ++u) acc += p[u] * spans[s].v[head_off + j * stride + i];
    }
    out[i] = acc * inv;
  }
}

}  // namespace detail
}  // namespace udaci
