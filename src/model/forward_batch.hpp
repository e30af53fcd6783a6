// The unit of work of LlamaModel::forward: the new tokens of several sequences,
// ragged (no padding). Tokens of seqs[0] come first, then seqs[1], and so on.
// Each sequence continues from the K/V its cache already holds: the first new
// token sits at position cache.cached_length(seq). Linear layers run once over
// all tokens of the batch; attention runs per sequence over its own K/V.
#pragma once

#include <cstdint>
#include <vector>

#include "core/sequence.hpp"

namespace udaci {

struct SeqSlice {
  SeqId seq = 0;          // the sequence's id in the CacheStrategy
  int64_t n_tokens = 0;   // its new tokens in ForwardBatch::tokens (> 0)
  bool all_logits = false;  // logits for every new token (scoring, speculative
                            // verification) or only for the last one
  bool prompt = false;      // tokens of a prompt (or scored text), not decoded
                            // ones: the projections may run them at their
                            // prompt precision (LinearKernel::forward_prompt)
};

struct ForwardBatch {
  std::vector<int64_t> tokens;  // [sum of n_tokens]
  std::vector<SeqSlice> seqs;

  void add(SeqId seq, const std::vector<int64_t>& new_tokens, bool all_logits = false, bool prompt = false) {
    tokens.insert(tokens.end(), new_tokens.begin(), new_tokens.end());
    seqs.push_back({seq, static_cast<int64_t>(new_tokens.size()), all_logits, prompt});
  }
  // Rows of the logits tensor forward() returns.
  int64_t logit_rows() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += s.all_logits ? s.n_tokens : 1;
    return n;
  }
};

}  // namespace udaci
