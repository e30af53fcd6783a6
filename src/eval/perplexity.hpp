// Perplexity of a model over token sequences: exp of the mean next-token
// negative log-likelihood under teacher forcing, every predicted token
// weighted equally (Jelinek et al., 1977; the usual language-model measure, as
// in the SparseGPT and Wanda pruning papers' WikiText tables). Used to see what
// pruning costs the model without generating text.
#pragma once

#include <cstdint>
#include <vector>

#include "model/llama_model.hpp"

namespace udaci {

struct PerplexityResult {
  double nll_sum = 0.0;    // sum of -log p(token_{t+1} | tokens_0..t), natural log
  int64_t predicted = 0;   // tokens predicted: sum of (length - 1)
  double mean_nll() const { return predicted ? nll_sum / static_cast<double>(predicted) : 0.0; }
  double perplexity() const;
};

// Sequences run in batches of `batch` through LlamaModel::forward with
// all_logits and a fresh contiguous cache. Sequences shorter than 2 tokens
// predict nothing and are skipped. Error(kInvalidArgument) when no sequence
// predicts anything, a token is outside the vocabulary or a sequence is longer
// than max_position_embeddings.
PerplexityResult evaluate_perplexity(const LlamaModel& model,
                                     const std::vector<std::vector<int64_t>>& token_sequences,
                                     int64_t batch = 8);

// evaluate_perplexity(model, token_sequences).perplexity().
double perplexity(const LlamaModel& model, const std::vector<std::vector<int64_t>>& token_sequences);

}  // namespace udaci
