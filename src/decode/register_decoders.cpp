// The decoders, registered by name with their options read and validated
// here: "greedy" and "sampling" (one token per sequence per step, run by the
// engine's scheduler), "beam" and "speculative" (own loops).
#include <cmath>

#include "decode/beam_search.hpp"
#include "decode/speculative.hpp"

namespace udaci {

namespace {

// Argmax at every step whatever the request's sampling options say; with
// option repetition_penalty p != 1 the logits of tokens already in the
// sequence are first divided by p (multiplied when negative; CTRL, Keskar et
// al., arXiv:1909.05858), so that an engine's recipe (`greedy{repetition_penalty=1.15}`)
// carries the penalty to every front end, as `udaci tune` may choose it (#26).
class GreedyDecoder final : public Decoder {
 public:
  explicit GreedyDecoder(float repetition_penalty) { sampling_.repetition_penalty = repetition_penalty; }
  const char* name() const override { return "greedy"; }
  std::vector<GenerationResult> decode(const LlamaModel& model, CacheStrategy& cache,
                                         const std::vector<std::vector<int64_t>>& prompts,
                                         const GenerationOptions& options,
                                         const TokenCallback& on_token) const override {
    GenerationOptions greedy = options;
    greedy.sampling = sampling_;
    return udaci::decode_sampled(model, cache, prompts, greedy, on_token);
  }
  bool one_token_per_step(GenerationOptions& options) const override {
    options.sampling = sampling_;
    return true;
  }
  std::unique_ptr<SequenceDecoder> start_sequence(const GenerationOptions&,
                                                  const StepContext& context) const override {
    return make_sampled_sequence(sampling_, context);
  }
  bool runs_in_batch() const override { return true; }

 private:
  SamplingOptions sampling_;  // temperature 0: argmax
};

float greedy_repetition_penalty(const StrategyOptions& o) {
  const std::string owner = "decoder 'greedy'";
  o.expect_only(owner, {"repetition_penalty"});
  const double p = o.get_double(owner, "repetition_penalty", 1.0);
  UDACI_CHECK(std::isfinite(p) && p >= 0.5 && p <= 4.0,
              "{}: repetition_penalty must be in [0.5, 4] (1 = off), got {}", owner, p);
  return static_cast<float>(p);
}

// The request's SamplingOptions decide: temperature 0 is greedy, otherwise
// seeded sampling with top-k / top-p / min-p / repetition penalty.
class SamplingDecoder final : public Decoder {
 public:
  const char* name() const override { return "sampling"; }
  std::vector<GenerationResult> decode(const LlamaModel& model, CacheStrategy& cache,
                                         const std::vector<std::vector<int64_t>>& prompts,
                                         const GenerationOptions& options,
                                         const TokenCallback& on_token) const override {
    return udaci::decode_sampled(model, cache, prompts, options, on_token);
  }
  bool one_token_per_step(GenerationOptions&) const override { return true; }
  std::unique_ptr<SequenceDecoder> start_sequence(const GenerationOptions& options,
                                                  const StepContext& context) const override {
    return make_sampled_sequence(options.sampling, context);
  }
  bool runs_in_batch() const override { return true; }
};

}  // namespace

void register_decoders(DecoderFactories& r) {
  r.add(
      "greedy",
      [](const StrategyOptions& o) -> std::unique_ptr<Decoder> {
        return std::make_unique<GreedyDecoder>(greedy_repetition_penalty(o));
      },
      [](const StrategyOptions& o) { greedy_repetition_penalty(o); });
  r.add("sampling", [](const StrategyOptions& o) -> std::unique_ptr<Decoder> {
    o.expect_only("decoder 'sampling'", {});
    return std::make_unique<SamplingDecoder>();
  });
  r.add(
      "beam",
      [](const StrategyOptions& o) -> std::unique_ptr<Decoder> {
        return std::make_unique<BeamSearchDecoder>(BeamOptions::from(o));
      },
      [](const StrategyOptions& o) { BeamOptions::from(o); });
  r.add(
      "speculative",
      [](const StrategyOptions& o) -> std::unique_ptr<Decoder> {
        return std::make_unique<SpeculativeDecoder>(SpeculativeOptions::from(o));
      },
      [](const StrategyOptions& o) { SpeculativeOptions::from(o); });
}

}  // namespace udaci
