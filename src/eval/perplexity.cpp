#include "eval/perplexity.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/ranges.h>  // fmt::join (fmt >= 11 keeps it here)

#include "cache/cache_strategy.hpp"
#include "core/error.hpp"

namespace udaci {

double PerplexityResult::perplexity() const { return std::exp(mean_nll()); }

namespace {

// The sequences that predict something (2 tokens or more), checked against
// the model's vocabulary and positions.
std::vector<size_t> usable_sequences(const ModelConfig& c, const std::vector<std::vector<int64_t>>& seqs) {
  std::vector<size_t> usable;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].size() < 2) continue;
    UDACI_CHECK(static_cast<int64_t>(seqs[i].size()) <= c.max_position_embeddings,
                "perplexity: sequence {} has {} tokens, more than the model's {} positions", i,
                seqs[i].size(), c.max_position_embeddings);
    for (int64_t t : seqs[i])
      UDACI_CHECK(t >= 0 && t < c.vocab_size,
                  "perplexity: sequence {} holds token {}, outside the vocabulary [0, {})", i, t,
                  c.vocab_size);
    usable.push_back(i);
  }
  UDACI_CHECK(!usable.empty(), "perplexity: no sequence has 2 or more tokens to predict from");
  return usable;
}

// One batch of sequences [b0, b1) of `usable` as a forward batch with every
// row's logits, and the token each row predicts (-1 for the last).
ForwardBatch batch_of(const std::vector<std::vector<int64_t>>& seqs, const std::vector<size_t>& usable,
                      size_t b0, size_t b1, CacheStrategy& cache, std::vector<int64_t>& targets) {
  ForwardBatch fb;
  targets.clear();
  for (size_t j = b0; j < b1; ++j) {
    const std::vector<int64_t>& s = seqs[usable[j]];
    const SeqId id = static_cast<SeqId>(j - b0);
    cache.add_sequence(id, static_cast<int64_t>(s.size()));
    fb.add(id, s, /*all_logits=*/true, /*prompt=*/true);
    for (size_t t = 0; t < s.size(); ++t) targets.push_back(t + 1 < s.size() ? s[t + 1] : -1);
  }
  return fb;
}

void add_nll(const at::Tensor& logp, const std::vector<int64_t>& targets, PerplexityResult& r) {
  at::Tensor idx = at::tensor(targets, at::kLong);
  at::Tensor has = idx.ge(0);
  at::Tensor picked = logp.gather(1, idx.clamp_min(0).unsqueeze(1)).squeeze(1);  // [rows]
  r.nll_sum -= picked.masked_select(has).to(at::kDouble).sum().item<double>();
  r.predicted += has.sum().item<int64_t>();
}

}  // namespace

PerplexityResult evaluate_perplexity(const LlamaModel& model,
                                     const std::vector<std::vector<int64_t>>& seqs, int64_t batch) {
  UDACI_CHECK(batch >= 1, "perplexity: batch must be at least 1, got {}", batch);
  const std::vector<size_t> usable = usable_sequences(model.config(), seqs);
  PerplexityResult r;
  std::vector<int64_t> targets;
  for (size_t b0 = 0; b0 < usable.size(); b0 += static_cast<size_t>(batch)) {
    const size_t b1 = std::min(usable.size(), b0 + static_cast<size_t>(batch));
    std::unique_ptr<CacheStrategy> cache = make_contiguous_cache(model.cache_shape());
    ForwardBatch fb = batch_of(seqs, usable, b0, b1, *cache, targets);
    add_nll(at::log_softmax(model.forward(fb, *cache), -1), targets, r);  // [rows, vocab] float32
  }
  return r;
}

void accumulate_divergence(const at::Tensor& logp_ref, const at::Tensor& logp,
                           const std::vector<int64_t>& targets, DivergenceSums& sums) {
  UDACI_CHECK(logp_ref.sizes() == logp.sizes() && logp.dim() == 2 &&
                  logp.size(0) == static_cast<int64_t>(targets.size()),
              "divergence: logits of shapes [{}] and [{}] for {} targets",
              fmt::join(logp_ref.sizes(), ", "), fmt::join(logp.sizes(), ", "), targets.size());
  const at::Tensor lr = logp_ref.to(at::kDouble), lq = logp.to(at::kDouble);
  const at::Tensor kld = (lr.exp() * (lr - lq)).sum(-1);  // [rows]
  const at::Tensor same = lr.argmax(-1).eq(lq.argmax(-1));
  const double* kp = kld.data_ptr<double>();
  const bool* sp = same.data_ptr<bool>();
  const auto ar = lr.accessor<double, 2>(), aq = lq.accessor<double, 2>();
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] < 0) continue;
    const int64_t row = static_cast<int64_t>(i);
    // Rounding can leave a hair below zero when the two agree.
    sums.kld.push_back(std::max(0.0, kp[i]));
    sums.top1_same += sp[i] ? 1 : 0;
    sums.abs_dp += std::fabs(std::exp(aq[row][targets[i]]) - std::exp(ar[row][targets[i]]));
  }
  add_nll(logp_ref, targets, sums.reference);
  add_nll(logp, targets, sums.model);
}

DivergenceResult finish_divergence(DivergenceSums sums) {
  DivergenceResult r;
  r.positions = static_cast<int64_t>(sums.kld.size());
  r.reference = sums.reference;
  r.model = sums.model;
  if (r.positions == 0) return r;
  double total = 0.0;
  for (double k : sums.kld) total += k;
  const double n = static_cast<double>(r.positions);
  r.mean_kld = total / n;
  std::sort(sums.kld.begin(), sums.kld.end());
  // Nearest rank: the smallest value with at least 99% of positions at or below it.
  const size_t rank = static_cast<size_t>(std::ceil(0.99 * n));
  r.p99_kld = sums.kld[std::max<size_t>(rank, 1) - 1];
  r.max_kld = sums.kld.back();
  r.top1_agreement = static_cast<double>(sums.top1_same) / n;
  r.mean_abs_dp = sums.abs_dp / n;
  return r;
}

DivergenceResult evaluate_divergence(const LlamaModel& reference, const LlamaModel& model,
                                     const std::vector<std::vector<int64_t>>& seqs, int64_t batch) {
  UDACI_CHECK(batch >= 1, "divergence: batch must be at least 1, got {}", batch);
  UDACI_CHECK(reference.config().vocab_size == model.config().vocab_size,
              "divergence: the reference has a vocabulary of {}, the model {}",
              reference.config().vocab_size, model.config().vocab_size);
  const std::vector<size_t> usable = usable_sequences(model.config(), seqs);
  usable_sequences(reference.config(), seqs);
  DivergenceSums sums;
  std::vector<int64_t> targets;
  for (size_t b0 = 0; b0 < usable.size(); b0 += static_cast<size_t>(batch)) {
    const size_t b1 = std::min(usable.size(), b0 + static_cast<size_t>(batch));
    std::unique_ptr<CacheStrategy> cr = make_contiguous_cache(reference.cache_shape());
    std::unique_ptr<CacheStrategy> cq = make_contiguous_cache(model.cache_shape());
    ForwardBatch fr = batch_of(seqs, usable, b0, b1, *cr, targets);
    ForwardBatch fq = batch_of(seqs, usable, b0, b1, *cq, targets);
    const at::Tensor lr = at::log_softmax(reference.forward(fr, *cr), -1);
    const at::Tensor lq = at::log_softmax(model.forward(fq, *cq), -1);
    accumulate_divergence(lr, lq, targets, sums);
  }
  return finish_divergence(std::move(sums));
}

double perplexity(const LlamaModel& model, const std::vector<std::vector<int64_t>>& seqs) {
  return evaluate_perplexity(model, seqs).perplexity();
}

}  // namespace udaci
