// fp32 attention over K/V spans for all sequences of a step
// (attention_kernels.hpp): one parallel loop over every (sequence, token,
// token), so a decode step of 16 sequences costs one fork/join per layer
// instead of 16, the cache's K/V are read where they lie, in order, and the
// query heads sharing a K/V head read its rows once.
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/thread_pool.hpp"
#include "core/threads.hpp"
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
  int64_t longest = 0, tokens = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SeqAttention& a = seqs[s];
    int64_t covered = 0;
    for (int64_t i = 0; i < a.n_spans; ++i) covered += a.spans[i].tokens;
    UDACI_CHECK(a.n > 0 && a.past >= 0 && covered >= a.past + a.n,
                "attention: sequence {} has {} K/V rows for {} + {} tokens", s, covered, a.past, a.n);
    longest = std::max(longest, a.past + a.n);
    tokens += a.n;
  }
  simd = simd && d % 8 == 0;
  // A unit of work: one token and heads [h0, h0 + nh). With the SIMD body a
  // unit takes every head of its token (the K/V rows read once, in order),
  // unless that leaves fewer units than twice the threads (a decode step of
  // one sequence): then each head is its own unit. The SIMD body gives
  // every head the same bits either way.
  const int64_t threads = std::max(1, kernel_threads());
  const int64_t per_token = simd && tokens >= 2 * threads ? 1 : heads;
  struct Unit {
    int32_t seq;
    int32_t nh;
    int64_t token, h0;
  };
  std::vector<Unit> units;
  std::vector<int64_t> cost_before;  // keys x heads of the units before unit u
  units.reserve(static_cast<size_t>(tokens * per_token));
  cost_before.reserve(units.capacity() + 1);
  const int64_t nh = heads / per_token;
  int64_t cost = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int64_t i = 0; i < seqs[s].n; ++i) {
      for (int64_t u = 0; u < per_token; ++u) {
        units.push_back(Unit{static_cast<int32_t>(s), static_cast<int32_t>(nh), i, u * nh});
        cost_before.push_back(cost);
        cost += nh * (seqs[s].past + i + 1);
      }
    }
  }
  cost_before.push_back(cost);
  // One part per thread, cut where the work is balanced (the sequences of a
  // step differ in length; a prompt's last tokens read the most keys).
  const int64_t parts = std::min<int64_t>(threads, static_cast<int64_t>(units.size()));
  std::vector<size_t> bound(static_cast<size_t>(parts) + 1, units.size());
  bound[0] = 0;
  for (int64_t p = 1; p < parts; ++p) {
    bound[static_cast<size_t>(p)] = static_cast<size_t>(
        std::lower_bound(cost_before.begin(), cost_before.end() - 1, cost * p / parts) - cost_before.begin());
  }
  parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> scratch(static_cast<size_t>(simd ? detail::attend_scratch_floats(nh, d, longest) : longest));
    for (size_t u = bound[static_cast<size_t>(p0)]; u < bound[static_cast<size_t>(p1)]; ++u) {
      const Unit& w = units[u];
      const SeqAttention& a = seqs[static_cast<size_t>(w.seq)];
      const int64_t total = a.past + w.token + 1;
      const int64_t off = (w.token * heads + w.h0) * d;
      if (simd) {
        detail::attend_heads_avx2(a.q + off, w.h0, w.h0 + w.nh, group, a.spans, a.n_spans, stride, d, total, scale,
                                  scratch.data(), a.out + off);
      } else {
        for (int64_t h = 0; h < w.nh; ++h) {
          detail::attend_head_scalar(a.q + off + h * d, a.spans, a.n_spans, stride, ((w.h0 + h) / group) * d, d,
                                     total, scale, scratch.data(), a.out + off + h * d);
        }
      }
    }
  });
}

}  // namespace udaci
