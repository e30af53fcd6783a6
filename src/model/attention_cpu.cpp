// fp32 attention over K/V spans for all sequences of a step
// (attention_kernels.hpp): one parallel loop over every (sequence, token,
// head), so a decode step of 16 sequences costs one fork/join per layer
// instead of 16, and the cache's K/V are read where they lie.
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/thread_pool.hpp"
#include "model/attention_kernels.hpp"

namespace udaci {

namespace detail {

void attend_head_scalar(const float* q, const KvSpan* spans, int64_t n_spans, int64_t stride,
                        int64_t head_off, int64_t d, int64_t total, float scale, float* p, float* out) {
  float mx = -INFINITY;
  int64_t t = 0;
  for (int64_t s = 0; s < n_spans && t < total; ++s) {
    const int64_t m = std::min(spans[s].tokens, total - t);
    for (int64_t j = 0; j < m; ++j, ++t) {
      const float* kt = spans[s].k + head_off + j * stride;
      float acc = 0.0f;
      for (int64_t i = 0; i < d; ++i) acc += q[i] * kt[i];
      p[t] = acc * scale;
      mx = std::max(mx, p[t]);
    }
  }
  float sum = 0.0f;
  for (int64_t i = 0; i < total; ++i) {
    p[i] = std::exp(p[i] - mx);
    sum += p[i];
  }
  std::fill(out, out + d, 0.0f);
  t = 0;
  for (int64_t s = 0; s < n_spans && t < total; ++s) {
    const int64_t m = std::min(spans[s].tokens, total - t);
    for (int64_t j = 0; j < m; ++j, ++t) {
      const float w = p[t] / sum;
      const float* vt = spans[s].v + head_off + j * stride;
      for (int64_t i = 0; i < d; ++i) out[i] += w * vt[i];
    }
  }
}

}  // namespace detail

void attend_cpu(const std::vector<SeqAttention>& seqs, const AttentionShape& shape, float scale, bool simd) {
  const int64_t heads = shape.heads, kvh = shape.kv_heads, d = shape.head_dim;
  UDACI_CHECK(heads > 0 && kvh > 0 && heads % kvh == 0 && d > 0,
              "attention: {} heads cannot share {} K/V heads", heads, kvh);
  const int64_t group = heads / kvh;
  const int64_t stride = kvh * d;
  // Work item w: sequence s owns items [first[s], first[s + 1]), token-major,
  // heads sharing a K/V head adjacent so one thread reads those rows once
  // into its cache.
  std::vector<int64_t> first(seqs.size() + 1, 0);
  int64_t longest = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SeqAttention& a = seqs[s];
    int64_t covered = 0;
    for (int64_t i = 0; i < a.n_spans; ++i) covered += a.spans[i].tokens;
    UDACI_CHECK(a.n > 0 && a.past >= 0 && covered >= a.past + a.n,
                "attention: sequence {} has {} K/V rows for {} + {} tokens", s, covered, a.past, a.n);
    first[s + 1] = first[s] + a.n * heads;
    longest = std::max(longest, a.past + a.n);
  }
  const auto head_fn = simd ? detail::attend_head_avx2 : detail::attend_head_scalar;
  parallel_for(0, first.back(), 4, [&](int64_t w0, int64_t w1) {
    std::vector<float> p(static_cast<size_t>(longest));
    size_t s = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), w0) - first.begin() - 1);
    for (int64_t w = w0; w < w1; ++w) {
      while (w >= first[s + 1]) ++s;
      const SeqAttention& a = seqs[s];
      const int64_t local = w - first[s];
      const int64_t i = local / heads, h = local % heads;
      head_fn(a.q + (i * heads + h) * d, a.spans, a.n_spans, stride, (h / group) * d, d, a.past + i + 1, scale,
              p.data(), a.out + (i * heads + h) * d);
    }
  });
}

}  // namespace udaci
