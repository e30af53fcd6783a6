#include "eval/perplexity.hpp"

#include <cmath>

#include "cache/cache_strategy.hpp"
#include "core/error.hpp"

namespace udaci {

double PerplexityResult::perplexity() const { return std::exp(mean_nll()); }

PerplexityResult evaluate_perplexity(const LlamaModel& model,
                                     const std::vector<std::vector<int64_t>>& seqs, int64_t batch) {
  UDACI_CHECK(batch >= 1, "perplexity: batch must be at least 1, got {}", batch);
  const ModelConfig& c = model.config();
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

  PerplexityResult r;
  for (size_t b0 = 0; b0 < usable.size(); b0 += static_cast<size_t>(batch)) {
    const size_t b1 = std::min(usable.size(), b0 + static_cast<size_t>(batch));
    std::unique_ptr<CacheStrategy> cache = make_contiguous_cache(model.cache_shape());
    ForwardBatch fb;
    std::vector<int64_t> targets;  // the token each logit row predicts, -1 for none
    for (size_t j = b0; j < b1; ++j) {
      const std::vector<int64_t>& s = seqs[usable[j]];
      const SeqId id = static_cast<SeqId>(j - b0);
      cache->add_sequence(id, static_cast<int64_t>(s.size()));
      fb.add(id, s, /*all_logits=*/true);
      for (size_t t = 0; t < s.size(); ++t) targets.push_back(t + 1 < s.size() ? s[t + 1] : -1);
    }
    at::Tensor logp = at::log_softmax(model.forward(fb, *cache), -1);  // [rows, vocab] float32
    at::Tensor idx = at::tensor(targets, at::kLong);
    at::Tensor has = idx.ge(0);
    at::Tensor picked = logp.gather(1, idx.clamp_min(0).unsqueeze(1)).squeeze(1);  // [rows]
    r.nll_sum -= picked.masked_select(has).to(at::kDouble).sum().item<double>();
    r.predicted += has.sum().item<int64_t>();
  }
  return r;
}

double perplexity(const LlamaModel& model, const std::vector<std::vector<int64_t>>& seqs) {
  return evaluate_perplexity(model, seqs).perplexity();
}

}  // namespace udaci
