// Decoder: owns the decode loop that turns logits into tokens. Strategies
// that need the loop itself (beam search, speculative decoding; issue #8)
// implement it here; "greedy" always takes the argmax, "sampling" follows
// each request's SamplingOptions (temperature 0 = greedy).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/named_factories.hpp"
#include "decode/generate.hpp"

namespace udaci {

// What a decoder did so far (speculative decoding's acceptance; zero for the
// plain decoders).
struct DecoderStats {
  int64_t rounds = 0;    // target passes that verified drafted tokens
  int64_t drafted = 0;   // tokens proposed by the draft source
  int64_t accepted = 0;  // proposed tokens the target kept
  int64_t emitted = 0;   // tokens produced by those passes (accepted + one each)
  int64_t draft_computed = 0;  // tokens a draft model ran forward passes on
  int64_t draft_reused = 0;    // prompt tokens whose K/V a draft took from the target
  double acceptance_rate() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
  double tokens_per_round() const { return rounds ? static_cast<double>(emitted) / rounds : 0.0; }
};

// Given to a decoder once the engine's model has loaded.
struct DecoderContext {
  std::string model_path;
  const LlamaModel* model = nullptr;
  // Loads a model (another path, or the same one with another quantizer) the
  // way the engine loads its own: its dtype and device.
  std::function<std::shared_ptr<const LlamaModel>(const std::string& path, const std::string& quantizer)>
      load_model;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual const char* name() const = 0;
  // Called once after the model has loaded (a draft model loads here).
  virtual void prepare(const DecoderContext& context) { (void)context; }
  virtual DecoderStats stats() const { return {}; }
  virtual std::vector<GenerationResult> decode(const LlamaModel& model, CacheStrategy& cache,
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

// The decoders by name: "greedy", "sampling", "beam", "speculative"
// (register_decoders.cpp).
using DecoderFactories = NamedFactories<Decoder>;
void register_decoders(DecoderFactories& decoders);

}  // namespace udaci
