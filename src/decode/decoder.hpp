// Decoder: owns the decode loop that turns logits into tokens. Strategies
// that need the loop itself (beam search, speculative decoding; issue #8)
// implement it here; "greedy" always takes the argmax, "sampling" follows
// each request's SamplingOptions (temperature 0 = greedy).
#pragma once

#include <memory>
#include <vector>

#include "decode/generate.hpp"

namespace udaci {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual const char* name() const = 0;
  virtual std::vector<GenerationResult> generate(const LlamaModel& model, CacheStrategy& cache,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const GenerationOptions& options,
                                                 const TokenCallback& on_token) const = 0;
  // A decoder that takes one token per sequence per step from that sequence's
  // logits alone (greedy, sampling) returns true, after adjusting `options`
  // to what it would use: the engine's scheduler then runs its loop with
  // every other request's sequences in the same batch. Decoders that drive
  // the model themselves (beam search, speculative) return false and run alone.
  virtual bool one_token_per_step(GenerationOptions& options) const {
    (void)options;
    return false;
  }
};

}  // namespace udaci
