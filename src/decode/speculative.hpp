// Speculative decoding (Leviathan et al., arXiv:2211.17192; Chen et al.,
// arXiv:2302.01318): a cheap source drafts k tokens, the target model scores
// all of them in one forward pass, the longest prefix it agrees with is kept
// plus one token of its own, and the K/V of the rest is truncated away.
//
// Acceptance follows the rejection-sampling rule, so the output has the
// target's distribution whatever the draft: a drafted token d with draft
// probability q(d) is kept with probability min(1, p(d) / q(d)), otherwise a
// token is drawn from max(0, p - q), renormalised. With greedy options p is
// one-hot at the target's argmax, so the rule keeps exactly the drafted tokens
// greedy decoding would have chosen and replaces the first other one with
// the argmax: the same tokens as greedy decoding without drafting (up to the
// floating-point differences of scoring k + 1 tokens in one pass).
//
// Draft sources (DraftSource):
//   prompt-lookup: the tokens that followed the latest earlier occurrence of
//                  the sequence's last n tokens (n = ngram_max .. ngram_min) in
//                  the prompt and the text so far (Saxena, "Prompt lookup
//                  decoding", 2023); q is one-hot;
//   draft-model:   a smaller model with the same vocabulary (draft_model=PATH);
//   self-int4:     the target model's own weights quantised to int4 (or
//                  draft_quantizer=...), loaded a second time. It takes the
//                  prompt's K/V from the target's cache (reuse_prompt_kv=1,
//                  the default) instead of prefilling the prompt itself: the
//                  K/V of the same layers, computed with the exact weights.
// Adaptive k: k grows by one after a round that kept every draft and
// shrinks by one after a round that kept none, within [k_min, k_max].
// Adaptive to the load (follow_load, issue #25): inside the engine's batch
// the scheduler decides each step how many of the k drafts a sequence may
// verify, from the sequence's acceptance so far and the step time it has
// measured against the number of rows (Scheduler, "adaptive speculation").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "decode/decoder.hpp"
#include "decode/sampler.hpp"

namespace udaci {

class StrategyOptions;

struct SpeculativeOptions {
  std::string draft = "prompt-lookup";  // prompt-lookup | draft-model | self-int4
  std::string draft_model;              // draft-model: the model's path
  std::string draft_quantizer = "int4"; // self-int4: the quantizer of the copy
  int64_t k = 4;                        // first draft length
  int64_t k_min = 1;
  int64_t k_max = 8;
  bool adaptive = true;
  // In the engine's batch, the scheduler drafts for this sequence only when
  // its cost model says the step gains (alone: always; under a full batch:
  // rarely). 0: always draft k tokens.
  bool follow_load = true;
  int64_t ngram_max = 3;                // prompt-lookup: longest suffix matched
  int64_t ngram_min = 1;
  // prompt-lookup: tokens of earlier output (all sequences of the decoder)
  // whose n-grams the lookup consults when the sequence's own context has
  // no match of 2+ tokens (NgramHistory); 0: the context alone.
  int64_t history = 16384;
  // self-int4: the draft takes the prompt's K/V from the target's cache
  // instead of computing its own (default on; a draft-model has K/V of its own).
  bool reuse_prompt_kv = false;
  // draft-model / self-int4 inside the engine's batch: the sequences that
  // draft in a step run the draft model's passes together (default on);
  // 0: each sequence its own passes (for comparison).
  bool batch_drafts = true;

  static SpeculativeOptions from(const StrategyOptions& o);
};

// The target's cache and slot right after it computed a prompt.
struct TargetPrompt {
  CacheStrategy* cache = nullptr;
  SeqId seq = 0;
};

// Proposes tokens to continue a sequence. One source serves one sequence at a
// time: begin() starts it (after the target computed the prompt), propose()
// is called once per round.
class DraftSource {
 public:
  virtual ~DraftSource() = default;
  virtual void begin(const std::vector<int64_t>& prompt, const TargetPrompt& target) {
    (void)prompt;
    (void)target;
  }
  // Tokens a model draft ran forward passes on, and prompt tokens whose K/V it
  // took from the target instead (0 for sources without a model).
  virtual int64_t computed_tokens() const { return 0; }
  virtual int64_t reused_tokens() const { return 0; }
  // Up to k tokens to follow `tokens` (prompt and accepted tokens so far);
  // `probs`, when the source is probabilistic, receives per drafted token its
  // draft distribution over the vocabulary (else left empty: one-hot).
  virtual std::vector<int64_t> propose(const std::vector<int64_t>& tokens, int64_t k,
                                       std::vector<std::vector<double>>* probs) = 0;
  virtual void end() {}
  // The tokens the target kept in a step (`added`, appended to `before`):
  // for sources that learn from what the model writes (prompt lookup's
  // n-gram history). Default: nothing.
  virtual void observe(const std::vector<int64_t>& before, const std::vector<int64_t>& added) {
    (void)before;
    (void)added;
  }
  // Drafting together with other sequences: queue what propose(tokens, k,
  // probs) would compute and return the work that computes it for every
  // source of its batch at once (StepWork::run()); take() then returns the
  // drafts (and fills `probs` as propose() does), or throws what the work
  // failed with. nullptr: this source drafts alone (the default).
  virtual StepWork* queue(const std::vector<int64_t>& tokens, int64_t k, bool want_probs) {
    (void)tokens;
    (void)k;
    (void)want_probs;
    return nullptr;
  }
  virtual std::vector<int64_t> take(std::vector<std::vector<double>>* probs) {
    (void)probs;
    return {};
  }
  // Forward passes of a draft model this source took part in (0 without one).
  virtual int64_t passes() const { return 0; }
};

// The draft model's passes for several sequences at once (issue #25): the
// model drafts of one batch keep their K/V in one cache, each under its own
// id, and every step the draft model runs one forward pass per drafted
// position over all the sequences that queued drafts (ragged: each feeds
// the tokens its cache lacks), instead of one pass per sequence. Safe to use
// from several threads (one lock).
class DraftBatch;
std::shared_ptr<DraftBatch> make_draft_batch(const LlamaModel& draft);
// Forward passes the batch ran; the K/V bytes its cache holds (0 once every
// sequence drafting in it has ended).
int64_t draft_batch_passes(const DraftBatch& batch);
int64_t draft_batch_bytes(const DraftBatch& batch);

class NgramHistory;
// The n-gram lookup source (no model): the latest earlier occurrence in the
// sequence (prompt and output) of its last n tokens, n from ngram_max down
// to ngram_min, and what followed it. With a history (shared by the
// decoder's sequences, fed by observe()): the sequence's matches of 2+
// tokens first, then the history's, then a match of 1 token.
std::unique_ptr<DraftSource> make_prompt_lookup_draft(int64_t ngram_max, int64_t ngram_min,
                                                      std::shared_ptr<NgramHistory> history = nullptr);
// A draft model driven greedily (or by `sampling`, whose distribution is then
// reported) over its own contiguous cache. The model must outlive the source.
// reuse_prompt_kv: begin() copies the prompt's K/V from the target's cache
// (for a draft that is the target model itself, quantised).
// batch: the DraftBatch it drafts in with others (queue()); nullptr: a batch
// of its own (it then drafts alone).
std::unique_ptr<DraftSource> make_model_draft(const LlamaModel& draft, const SamplingOptions& sampling,
                                              bool reuse_prompt_kv = false,
                                              std::shared_ptr<DraftBatch> batch = nullptr);

class SpeculativeDecoder final : public Decoder {
 public:
  // make_draft builds the source for one decode() call (sampling options of
  // that call given); the default is chosen from `options` in prepare().
  using DraftFactory = std::function<std::unique_ptr<DraftSource>(const SamplingOptions&)>;
  explicit SpeculativeDecoder(const SpeculativeOptions& options, DraftFactory make_draft = {});

  const char* name() const override { return "speculative"; }
  void prepare(const DecoderContext& context) override;
  std::vector<GenerationResult> decode(const LlamaModel& model, CacheStrategy& cache,
                                         const std::vector<std::vector<int64_t>>& prompts,
                                         const GenerationOptions& options,
                                         const TokenCallback& on_token) const override;
  DecoderStats stats() const override;
  std::unique_ptr<SequenceDecoder> start_sequence(const GenerationOptions& options,
                                                  const StepContext& context) const override;
  bool runs_in_batch() const override { return true; }
  // The drafts of a round sit in the cache until verified.
  SequenceFootprint footprint() const override { return {1, options_.k_max + 1}; }

 private:
  SpeculativeOptions options_;
  DraftFactory make_draft_;
  std::shared_ptr<const LlamaModel> draft_model_;  // draft-model / self-int4
  std::shared_ptr<DraftBatch> draft_batch_;        // their drafts, batched across sequences
  std::shared_ptr<NgramHistory> history_;          // prompt-lookup: what the sequences wrote
  mutable DecoderStats stats_;
};

}  // namespace udaci
