// Beam search: keeps the `width` most probable continuations (sum of token
// log-probabilities) and extends all of them with one batched forward pass per
// step, each beam over its own cache sequence (CacheStrategy::fork when one
// beam has several children, free when it has none). Finished candidates
// (EOS, GenerationOptions::is_complete, or max_new_tokens) are ranked by
// score / length ** length_penalty; the best is the result and the first
// n_best are reported. Candidate selection as in Hugging Face transformers:
// the 2 * width best extensions are considered, an ending one only when it
// ranks within the first `width`. Stopping: early_stopping ends the search
// once `width` candidates have finished; otherwise once no live beam can beat
// the worst of them. no_repeat_ngram > 0 forbids a token that would repeat an
// n-gram of the prompt and the beam so far.
#pragma once

#include <cstdint>

#include "decode/decoder.hpp"

namespace udaci {

class StrategyOptions;

struct BeamOptions {
  int64_t width = 4;
  double length_penalty = 1.0;
  int64_t n_best = 1;
  bool early_stopping = true;
  int64_t no_repeat_ngram = 0;

  static BeamOptions from(const StrategyOptions& o);
};

class BeamSearchDecoder final : public Decoder {
 public:
  explicit BeamSearchDecoder(const BeamOptions& options) : options_(options) {}
  const char* name() const override { return "beam"; }
  std::vector<GenerationResult> decode(const LlamaModel& model, CacheStrategy& cache,
                                         const std::vector<std::vector<int64_t>>& prompts,
                                         const GenerationOptions& options,
                                         const TokenCallback& on_token) const override;
  std::unique_ptr<SequenceDecoder> start_sequence(const GenerationOptions& options,
                                                  const StepContext& context) const override;
  bool runs_in_batch() const override { return true; }
  // One cache sequence per beam, each up to the prompt and max_new_tokens + 1.
  SequenceFootprint footprint() const override { return {options_.width, 1}; }

 private:
  BeamOptions options_;
};

}  // namespace udaci
