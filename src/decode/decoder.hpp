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
  // Forward passes a draft model ran, and what they would have been one
  // sequence at a time (each sequence's passes summed): their ratio is what
  // drafting several sequences in one pass saved.
  int64_t draft_passes = 0;
  int64_t draft_sequence_passes = 0;
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

// Inside the engine's batch (issue #25), every sequence is decoded by a
// SequenceDecoder that the scheduler drives step by step: it asks for the
// rows the sequence needs in the next forward pass (one token for greedy and
// sampling, the draft tokens plus one for speculative verification, one per
// live beam for beam search), runs the rows of every live sequence in one
// pass, and hands each its logits. The prompt is computed by the scheduler
// (in chunks, with prefix sharing) in the sequence's own cache slot; the
// logits of its last position are the first consume().
struct StepRows {
  SeqId slot = 0;               // the cache sequence the tokens extend
  std::vector<int64_t> tokens;  // tokens to compute (their K/V are appended)
  bool all_logits = false;      // logits of every token (else of the last only)
  bool prompt = false;          // the prompt's tokens (SeqSlice::prompt)
};

// What the scheduler gives a SequenceDecoder.
struct StepContext {
  CacheStrategy* cache = nullptr;
  SeqId slot = 0;  // the sequence's cache slot, holding the prompt when consume() is first called
  // A further cache sequence id, not in the cache yet (fork into it or add
  // it); the scheduler frees whatever is left of it when the sequence ends.
  std::function<SeqId()> new_slot;
  int64_t vocab = 0;
};

// Tokens a consume() made final. A streaming decoder returns them as they
// come (the scheduler appends them one by one and ends the sequence at EOS,
// max_new_tokens or when the token callback says stop; it drops the rest).
// A search decoder returns `final` once: the whole answer, its finish
// reason and its n best.
struct StepOutcome {
  std::vector<int64_t> tokens;
  bool final = false;
  FinishReason finish = FinishReason::kLength;
  std::vector<Hypothesis> n_best;
  int64_t drafted = 0;   // speculative: tokens verified in this pass
  int64_t accepted = 0;  // and kept
};

// What a speculative sequence would draft next step, for the scheduler's
// choice (adaptive speculation): drafting pays when the pass is not slowed
// by the extra rows more than the expected kept tokens gain.
struct DraftWish {
  int64_t k = 0;            // drafts it would verify next (0: it does not draft)
  double acceptance = 0.0;  // its expected kept share (its own so far, shrunk towards its decoder's)
  bool follow_load = true;  // the scheduler may cut its drafts under load
  // Its d drafts cost d forward passes of a draft model (self-int4,
  // draft-model), shared with the step's other sequences that draft with it;
  // false: drafting costs nothing worth counting (prompt lookup).
  bool model_passes = false;
};

// Work that the sequence decoders of one step queue and that is cheaper done
// for all of them together (a draft model's forward passes, issue #25): the
// scheduler runs each distinct StepWork once, after every member has queued
// and before it asks for rows(). run() does not throw: a failure reaches the
// sequences that queued through their rows().
class StepWork {
 public:
  virtual ~StepWork() = default;
  virtual void run() = 0;
};

class SequenceDecoder {
 public:
  virtual ~SequenceDecoder() = default;
  // Before rows(tokens, max_draft), with the same arguments: queue work that
  // rows() will use and return what computes it (nullptr: nothing queued;
  // rows() then does it alone).
  virtual StepWork* prepare(const std::vector<int64_t>& tokens, int64_t max_draft) {
    (void)tokens;
    (void)max_draft;
    return nullptr;
  }
  // Rows for the next pass; `tokens` is the prompt and the tokens kept so
  // far; at most `max_draft` drafted tokens (< 0: no limit). At least one row.
  virtual void rows(const std::vector<int64_t>& tokens, int64_t max_draft, std::vector<StepRows>& out) = 0;
  // What it would draft next step (default: nothing).
  virtual DraftWish draft_wish(const std::vector<int64_t>& tokens) const {
    (void)tokens;
    return {};
  }
  // The logits of the rows asked for, in order ([rows, vocab] fp32; after
  // the prompt: its last position's). `tokens` as for rows().
  virtual StepOutcome consume(const float* logits, int64_t n_rows, const std::vector<int64_t>& tokens) = 0;
};

// What one sequence of a decoder holds in the cache: `sequences` cache
// sequences of up to prompt + max_new_tokens + `extra_tokens` tokens each
// (the scheduler charges admission by it).
struct SequenceFootprint {
  int64_t sequences = 1;
  int64_t extra_tokens = 0;
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
  // The decoder of one sequence inside the engine's batch; nullptr when this
  // decoder only runs alone (decode()). Called on the scheduler thread.
  virtual std::unique_ptr<SequenceDecoder> start_sequence(const GenerationOptions& options,
                                                          const StepContext& context) const {
    (void)options;
    (void)context;
    return nullptr;
  }
  virtual bool runs_in_batch() const { return false; }
  virtual SequenceFootprint footprint() const { return {}; }
};

// The greedy / sampled decoding of one sequence (the request's
// SamplingOptions; temperature 0 is greedy): one token per step.
std::unique_ptr<SequenceDecoder> make_sampled_sequence(const SamplingOptions& sampling, const StepContext& context);

// The one decode loop outside the engine's scheduler: the prompts `which`
// (indices into `prompts`) as one ragged batch, each through the
// SequenceDecoder that `start` makes, one forward pass per step over every
// live sequence's rows, a sequence ending as in the scheduler (EOS,
// max_new_tokens, the callback returning false; a search's answer whole).
// Results go to results[index]; every cache sequence taken is freed.
using SequenceStarter = std::function<std::unique_ptr<SequenceDecoder>(const StepContext&)>;
void decode_sequences(const SequenceStarter& start, const SequenceFootprint& footprint, const LlamaModel& model,
                      CacheStrategy& cache, const std::vector<std::vector<int64_t>>& prompts,
                      const std::vector<size_t>& which, const GenerationOptions& options,
                      const TokenCallback& on_token, std::vector<GenerationResult>& results);

// `decoder`'s SequenceDecoder over each prompt in turn, alone on the model:
// the decode() of decoders that also run in the engine's batch (so a
// decoder's logic lives in one place).
std::vector<GenerationResult> decode_alone(const Decoder& decoder, const LlamaModel& model, CacheStrategy& cache,
                                           const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options, const TokenCallback& on_token);

// The decoders by name: "greedy", "sampling", "beam", "speculative"
// (register_decoders.cpp).
using DecoderFactories = NamedFactories<Decoder>;
void register_decoders(DecoderFactories& decoders);

}  // namespace udaci
