#include "decode/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "core/error.hpp"

namespace udaci {

void SamplingOptions::validate() const {
  UDACI_CHECK(std::isfinite(temperature) && temperature >= 0.0f,
              "temperature must be >= 0 (0 = greedy), got {}", temperature);
  UDACI_CHECK(top_k >= 0, "top_k must be >= 0 (0 = off), got {}", top_k);
  UDACI_CHECK(top_p > 0.0f && top_p <= 1.0f, "top_p must be in (0, 1], got {}", top_p);
  UDACI_CHECK(min_p >= 0.0f && min_p <= 1.0f, "min_p must be in [0, 1], got {}", min_p);
  UDACI_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f,
              "repetition_penalty must be > 0 (1 = off), got {}", repetition_penalty);
}

Sampler::Sampler(const SamplingOptions& options) : opt_(options), rng_(options.seed) {
  opt_.validate();
}

double Sampler::uniform() {
  // 53 random bits -> [0, 1); std::uniform_real_distribution's mapping is
  // implementation-defined, this one is not.
  return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);
}

int64_t Sampler::prepare(float* logits, int64_t n, const std::vector<int64_t>& history) {
  UDACI_CHECK(n > 0, "sampler: empty logits");
  if (opt_.repetition_penalty != 1.0f) {
    std::unordered_set<int64_t> seen(history.begin(), history.end());
    for (int64_t id : seen) {
      if (id < 0 || id >= n) continue;
      float& l = logits[id];
      l = l < 0 ? l * opt_.repetition_penalty : l / opt_.repetition_penalty;
    }
  }
  if (opt_.temperature == 0.0f) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
      if (logits[i] > logits[best]) best = i;
    order_.assign(1, best);
    p_.assign(1, 1.0);
    return 1;
  }
  const float inv_t = 1.0f / opt_.temperature;
  for (int64_t i = 0; i < n; ++i) logits[i] *= inv_t;

  // Candidates sorted by logit, descending; ties by id so the order is total.
  order_.resize(static_cast<size_t>(n));
  std::iota(order_.begin(), order_.end(), 0);
  auto by_logit = [&](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  int64_t keep = n;
  if (opt_.top_k > 0 && opt_.top_k < n) {
    keep = opt_.top_k;
    std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), by_logit);
  } else {
    std::sort(order_.begin(), order_.end(), by_logit);
  }
  // Softmax over the kept candidates, in double for a stable cumulative sum.
  const double max_l = logits[order_[0]];
  p_.resize(static_cast<size_t>(keep));
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    p_[static_cast<size_t>(i)] = std::exp(static_cast<double>(logits[order_[i]]) - max_l);
    sum += p_[static_cast<size_t>(i)];
  }
  for (double& x : p_) x /= sum;
  if (opt_.top_p < 1.0f) {
    double cum = 0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i) {
      cum += p_[static_cast<size_t>(i)];
      if (cum >= opt_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  if (opt_.min_p > 0.0f) {
    const double threshold = opt_.min_p * p_[0];
    int64_t cut = 1;
    while (cut < keep && p_[static_cast<size_t>(cut)] >= threshold) ++cut;
    keep = cut;
  }
  return keep;
}

int64_t Sampler::sample(float* logits, int64_t n, const std::vector<int64_t>& history) {
  const int64_t keep = prepare(logits, n, history);
  if (opt_.temperature == 0.0f) return order_[0];
  double mass = 0;
  for (int64_t i = 0; i < keep; ++i) mass += p_[static_cast<size_t>(i)];
  double r = uniform() * mass;
  for (int64_t i = 0; i < keep; ++i) {
    r -= p_[static_cast<size_t>(i)];
    if (r < 0) return order_[static_cast<size_t>(i)];
  }
  return order_[static_cast<size_t>(keep - 1)];
}

void Sampler::distribution(float* logits, int64_t n, const std::vector<int64_t>& history,
                           std::vector<double>& probs) {
  const int64_t keep = prepare(logits, n, history);
  probs.assign(static_cast<size_t>(n), 0.0);
  double mass = 0;
  for (int64_t i = 0; i < keep; ++i) mass += p_[static_cast<size_t>(i)];
  for (int64_t i = 0; i < keep; ++i)
    probs[static_cast<size_t>(order_[static_cast<size_t>(i)])] = p_[static_cast<size_t>(i)] / mass;
}

int64_t Sampler::draw(const std::vector<double>& probs) {
  double mass = 0;
  int64_t last = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    mass += probs[i];
    if (probs[i] > 0) last = static_cast<int64_t>(i);
  }
  UDACI_CHECK_S(Status::kInternal, last >= 0, "sampler: a distribution with no mass");
  double r = uniform() * mass;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0) continue;
    r -= probs[i];
    if (r < 0) return static_cast<int64_t>(i);
  }
  return last;
}

}  // namespace udaci
