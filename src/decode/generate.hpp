// What every decoder returns (GenerationResult, FinishReason) and takes
// (GenerationOptions, TokenCallback), and greedy / sampled decoding without
// the engine (decode_sampled, a thin wrapper over decode_sequences in
// decode/decoder.hpp): prefill the prompts, then decode one token per live
// sequence per step until EOS, max_new_tokens, or the callback says stop. Vocabulary: front ends *generate* headlines
// (udaci_generate, HeadlineEngine::generate, `udaci generate`); a Decoder
// *decodes* token ids.
// Several prompts run as one ragged batch; each has its own sampler, so a
// sequence's tokens do not depend on the others' (up to floating-point
// differences of batched matrix products).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cache/cache_strategy.hpp"
#include "decode/sampler.hpp"
#include "model/llama_model.hpp"

namespace udaci {

struct GenerationOptions {
  int64_t max_new_tokens = 32;
  SamplingOptions sampling;
  std::vector<int64_t> eos_ids;  // generation of a sequence stops after any of these
  // For decoders that choose among several continuations before any token is
  // final (beam search): true when these new tokens already form a complete
  // answer, which then ends like EOS. Streaming decoders use the token
  // callback instead.
  std::function<bool(const std::vector<int64_t>& new_tokens)> is_complete;
};

// kLength: max_new_tokens reached; kEos: an EOS id; kStopped: the token
// callback ended it (a stop condition, e.g. a complete headline line);
// kCancelled: the caller cancelled it (set by front ends, not by the decoders).
// kRepetition: the headline began to repeat itself and was cut before the
// repeat (HeadlineOptions::repetition_stop).
enum class FinishReason { kLength, kEos, kStopped, kCancelled, kRepetition };
const char* finish_reason_name(FinishReason r);

// One finished candidate of a search decoder, with its score (beam search:
// sum of log-probabilities divided by length ** length_penalty).
struct Hypothesis {
  std::vector<int64_t> tokens;
  double score = 0;
  FinishReason finish = FinishReason::kLength;
};

struct GenerationResult {
  std::vector<int64_t> tokens;  // new tokens only (EOS included when it ended the sequence)
  FinishReason finish = FinishReason::kLength;
  std::vector<Hypothesis> n_best;  // search decoders: the best candidates, best first
  double prefill_ms = 0;    // time of the step that consumed the prompt
  double decode_ms = 0;     // time of all later steps
  double latency_ms = 0;    // from submission to this sequence's end (engine's scheduler)
  double queue_ms = 0;      // from submission to admission into the batch (engine's scheduler)
  int64_t drafted = 0;      // speculative decoding: drafted tokens verified for this sequence
  int64_t accepted = 0;     // of which the target kept
};

// Called after each new token of sequence `index`; return false to stop that
// sequence (finish reason kStopped).
using TokenCallback = std::function<bool(size_t index, int64_t token)>;

// Error(kInvalidArgument) for what no decoder can run: an empty prompt, a
// token id outside the model's vocabulary, max_new_tokens < 0 or bad sampling
// options. Every decoder and the scheduler check their inputs with it.
void check_generation_inputs(const LlamaModel& model, const std::vector<std::vector<int64_t>>& prompts,
                             const GenerationOptions& options);

std::vector<GenerationResult> decode_sampled(const LlamaModel& model, CacheStrategy& cache,
                                       const std::vector<std::vector<int64_t>>& prompts,
                                       const GenerationOptions& options,
                                       const TokenCallback& on_token = {});

}  // namespace udaci
