#include "decode/generate.hpp"

#include <algorithm>
#include <chrono>

#include "core/error.hpp"
#include "decode/decoder.hpp"

namespace udaci {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return "length";
    case FinishReason::kEos: return "eos";
    case FinishReason::kStopped: return "stop";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kRepetition: return "repetition";
  }
  return "?";
}

void check_generation_inputs(const LlamaModel& model, const std::vector<std::vector<int64_t>>& prompts,
                             const GenerationOptions& options) {
  UDACI_CHECK(options.max_new_tokens >= 0, "max_new_tokens must be >= 0, got {}",
              options.max_new_tokens);
  options.sampling.validate();
  const int64_t vocab = model.config().vocab_size;
  for (size_t i = 0; i < prompts.size(); ++i) {
    UDACI_CHECK(!prompts[i].empty(), "prompt {} is empty", i);
    for (int64_t t : prompts[i])
      UDACI_CHECK(t >= 0 && t < vocab, "prompt {} holds token id {}, outside the vocabulary of {}",
                  i, t, vocab);
  }
}

std::vector<GenerationResult> decode_sampled(const LlamaModel& model, CacheStrategy& cache,
                                       const std::vector<std::vector<int64_t>>& prompts,
                                       const GenerationOptions& options,
                                       const TokenCallback& on_token) {
  check_generation_inputs(model, prompts, options);
  std::vector<GenerationResult> results(prompts.size());
  if (prompts.empty() || options.max_new_tokens == 0) return results;
  // Every prompt in one ragged batch, one token per sequence per step.
  std::vector<size_t> all(prompts.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  const SamplingOptions sampling = options.sampling;
  decode_sequences([&sampling](const StepContext& ctx) { return make_sampled_sequence(sampling, ctx); },
                   SequenceFootprint{}, model, cache, prompts, all, options, on_token, results);
  return results;
}

}  // namespace udaci
