// Perplexity of a model over token sequences: exp of the mean next-token
// negative log-likelihood under teacher forcing, every predicted token
// weighted equally (Jelinek et al., 1977; the usual language-model measure, as
// in the SparseGPT and Wanda pruning papers' WikiText tables). Used to see what
// pruning costs the model without generating text.
#pragma once

#include <ATen/ATen.h>

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

// How far a model's next-token distributions are from a reference's on the
// same tokens (issue #22), as llama.cpp's perplexity tool reports it for a
// quantised file against its base: at every position that predicts a token,
// KL(P_ref || P) = sum_v p_ref(v) (log p_ref(v) - log p(v)) in nats, whether
// the two argmaxes agree, and |p(next) - p_ref(next)| for the token that
// actually follows.
struct DivergenceResult {
  int64_t positions = 0;
  double mean_kld = 0.0;
  double p99_kld = 0.0;        // 99th percentile over positions (nearest rank)
  double max_kld = 0.0;
  double top1_agreement = 0.0;  // share of positions whose argmaxes agree
  double mean_abs_dp = 0.0;     // mean |p(next) - p_ref(next)|
  PerplexityResult reference;   // the reference's own perplexity on the tokens
  PerplexityResult model;
};

// Per-position figures of one batch: log-probabilities [rows, vocab] of the
// reference and the model, and the token each row predicts (-1: none).
// Appends each counted row's KL to kld and returns through the sums.
struct DivergenceSums {
  std::vector<double> kld;
  int64_t top1_same = 0;
  double abs_dp = 0.0;
  PerplexityResult reference, model;
};
void accumulate_divergence(const at::Tensor& logp_ref, const at::Tensor& logp,
                           const std::vector<int64_t>& targets, DivergenceSums& sums);
DivergenceResult finish_divergence(DivergenceSums sums);

// Runs both models over the sequences (as evaluate_perplexity does) and
// compares them. Error(kInvalidArgument) when their vocabularies differ.
DivergenceResult evaluate_divergence(const LlamaModel& reference, const LlamaModel& model,
                                     const std::vector<std::vector<int64_t>>& token_sequences,
                                     int64_t batch = 8);

}  // namespace udaci
