// HeadlineEngine: summary text in, one clean headline out. Owns the model, the
// tokenizer, the prompt builder and the cache strategy; every front end (CLI,
// C ABI, Python, benchmark) goes through it. All generation runs on the
// engine's Scheduler thread (engine/scheduler.hpp): the summaries of every
// generate() and submit() call, from any thread, share one continuously
// batched decode loop. Its public faces are the C ABI
// (include/udaci/udaci.h), udaci.hpp over it, and the Python module.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cache/cache_strategy.hpp"
#include "engine/engine_config.hpp"
#include "engine/registry.hpp"
#include "engine/scheduler.hpp"
#include "decode/generate.hpp"
#include "model/model_loader.hpp"
#include "model/llama_model.hpp"
#include "text/prompt_builder.hpp"
#include "text/tokenizer.hpp"

namespace udaci {

// Bytes the weights of `store` will hold once bound to kernels in `dtype`:
// formats that run as stored (int8/int4/nf4 parts, packed 2:4, GGUF blocks
// under gguf-native) at their size, everything else at numel x dtype size.
// An upper-bound estimate, computed from the (memory-mapped) store alone.
int64_t estimate_resident_weight_bytes(const WeightStore& store, at::ScalarType dtype,
                                       bool native_gguf_blocks);

struct HeadlineOptions {
  int64_t max_new_tokens = 32;
  SamplingOptions sampling;
  // Stop a sequence once its text has a complete non-empty first line: the
  // headline is that line, so later tokens would be discarded anyway.
  bool stop_at_newline = true;
  // Streaming: called with each new piece of decoded text (complete UTF-8,
  // special tokens skipped) of summary `index`, in order. Return false to
  // cancel that summary (its result then has finish reason kCancelled and
  // keeps the text so far). Runs on the generating thread.
  std::function<bool(size_t index, const std::string& piece)> on_text;
  // Repetition stop: when the last `repetition_stop` new tokens repeat a run
  // of tokens the summary already produced (the loops of "Liz Cambage: Liz
  // Cambage: Liz ..."), stop it and cut where the repeat began: finish
  // reason kRepetition, new_ids/raw_text end before the repeat, and the
  // headline also loses a dangling separator and a short word after it.
  // Greedy output stays a prefix of plain greedy. 0: off. kEngineDefault
  // (the default): the engine's config, `"generation": {"repetition_stop"}`,
  // 8 tokens unless the config says otherwise: on 200 news articles 8 took
  // repetitive headlines from 20.5% to 7.5% with ROUGE-L up 0.003
  // (docs/BENCHMARKS.md "M16"); 6 removed more repeats but cut more real
  // phrases short.
  static constexpr int64_t kEngineDefault = -1;
  static constexpr int64_t kMaxRepetitionStop = udaci::kMaxRepetitionStop;
  int64_t repetition_stop = kEngineDefault;
};

// One of a search decoder's best candidates (beam search with n_best > 1),
// cut where the repetition stop would have cut it (finish kRepetition), as
// the headline is; score: the search's, of the whole hypothesis.
struct HeadlineCandidate {
  std::string headline;  // cleaned as HeadlineResult::headline
  std::vector<int32_t> new_ids;
  double score = 0;  // beam search: sum of log-probabilities / length ** length_penalty
  FinishReason finish = FinishReason::kLength;
};

struct HeadlineResult {
  std::string headline;        // cleaned: one line, no quotes, no "Headline:"
  std::string raw_text;        // decoded new tokens, special tokens skipped
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> new_ids;
  FinishReason finish = FinishReason::kLength;
  double prefill_ms = 0;
  double decode_ms = 0;
  double latency_ms = 0;       // from the call (generate/submit) to this headline's end
  double queue_ms = 0;         // of which waiting for a place in the batch
  int64_t drafted = 0;         // speculative decoding: drafted tokens verified
  int64_t accepted = 0;        // of which kept
  // A search decoder's n best, best first (the first is the headline above);
  // empty for decoders that produce one sequence.
  std::vector<HeadlineCandidate> candidates;
};

// The handle of an asynchronous request (HeadlineEngine::submit). get() waits
// and returns the results (or rethrows the request's error); cancel() asks the
// generation to stop at its next token, after which each unfinished result has
// FinishReason::kCancelled. A handle belongs to one thread; the engine must
// outlive it.
class PendingHeadlines {
 public:
  bool ready() const;
  void wait() const;
  // Waits at most `timeout`; true when the results are ready.
  bool wait_for(std::chrono::milliseconds timeout) const;
  std::vector<HeadlineResult> get();
  void cancel() { cancelled_->store(true); }

 private:
  friend class HeadlineEngine;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  std::future<std::vector<HeadlineResult>> future_;
};

class HeadlineEngine {
 public:
  // tokenizer = kOptional: a model without a tokenizer still loads, for
  // generate_ids() alone (`udaci generate --ids` on a bare checkpoint);
  // tokenizer(), prompt_ids() and generate() then throw Error(kNotFound).
  enum class TokenizerNeed { kRequired, kOptional };
  explicit HeadlineEngine(const EngineConfig& config, TokenizerNeed tokenizer = TokenizerNeed::kRequired);
  // Finishes or cancels every request, then releases the other ranks of a
  // parallel plan.
  ~HeadlineEngine();
  HeadlineEngine(const HeadlineEngine&) = delete;
  HeadlineEngine& operator=(const HeadlineEngine&) = delete;

  // Under a parallel plan over several processes, rank 0 is the leader: it
  // alone takes requests. Every other rank calls serve(), which runs the
  // leader's forward passes until the leader's engine is destroyed (then it
  // returns) or dies (Error(kDistributed) within the plan's timeout).
  bool leader() const;
  int rank() const;
  void serve() const;

  // Every request, running, queued or made later, ends at its next step with
  // FinishReason::kCancelled: for shutting an engine down with calls in flight.
  void cancel_all() const;
  ParallelStats parallel_stats() const;

  // Prompt token ids for a summary (chat template or completion prompt, BOS
  // as the tokenizer's config says, special tokens in the template parsed).
  std::vector<int32_t> prompt_ids(const std::string& summary) const;

  // One result per summary, in order. Throws Error(kInvalidArgument) for a
  // bad summary (empty, invalid UTF-8, too long) before any work starts.
  std::vector<HeadlineResult> generate(const std::vector<std::string>& summaries,
                                       const HeadlineOptions& options) const;

  // Queues the summaries and returns at once; they join the running batch
  // between two decode steps. A bad summary fails the request (get() throws).
  PendingHeadlines submit(std::vector<std::string> summaries, HeadlineOptions options) const;

  // Generation from token ids (no prompt building, no cleaning). All generate
  // functions are safe to call from many threads at once: their sequences
  // are batched together. Not from a streaming callback (Error).
  std::vector<GenerationResult> generate_ids(const std::vector<std::vector<int64_t>>& prompts,
                                             const GenerationOptions& options,
                                             const TokenCallback& on_token = {}) const;

  const LlamaModel& model() const { return *model_; }
  const Tokenizer& tokenizer() const;
  const PromptBuilder& prompt_builder() const;
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  const std::string& model_path() const { return model_path_; }
  // The configuration this engine runs: what it was built from, with the
  // model path resolved and the quantizer "auto" (as-stored) resolved to what
  // it chose. Built again, it gives the same engine.
  const EngineConfig& config() const { return config_; }
  // Its canonical recipe (engine/recipe.hpp), defaults spelled out.
  std::string recipe() const { return config_.recipe(); }
  const std::string& model_format() const { return model_format_; }
  std::vector<int64_t> eos_ids() const;
  // What the quantizer and pruner did at load.
  const QuantizeReport& quantize_report() const { return quantize_report_; }
  const PruneReport& prune_report() const { return prune_report_; }
  // The cache strategy's current and peak K/V bytes (peak since load or
  // reset_cache_peak()).
  int64_t cache_bytes() const;
  int64_t cache_peak_bytes() const;
  void reset_cache_peak();
  // What the cache strategy did so far (prefix hits, blocks, evictions).
  CacheStats cache_stats() const;
  // Names of the bound strategies, in the order cache, quantizer, pruner,
  // decoder, parallel plan.
  std::vector<std::string> strategy_names() const;
  // What the decoder did so far (speculative decoding's acceptance).
  DecoderStats decoder_stats() const {
    return scheduler_->with_cache([this](const CacheStrategy&) { return decoder_->stats(); });
  }
  // What the scheduler did so far (steps, admitted, peak batch, tokens).
  SchedulerStats scheduler_stats() const { return scheduler_->stats(); }
  const SchedulerOptions& scheduler_options() const { return scheduler_->options(); }

 private:
  // A job for the scheduler's batch, decoded by this engine's decoder.
  SequenceJob batch_job(std::vector<int64_t> prompt, const GenerationOptions& options) const;

  EngineConfig config_;
  std::string model_path_;
  std::string model_format_;
  int64_t max_prompt_tokens_ = 0;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string no_tokenizer_;  // why tokenizer_ is null (TokenizerNeed::kOptional)
  std::unique_ptr<PromptBuilder> prompt_;
  std::unique_ptr<CacheStrategy> cache_;
  std::unique_ptr<Quantizer> quantizer_;
  std::unique_ptr<Pruner> pruner_;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<ParallelPlan> parallel_;
  QuantizeReport quantize_report_;
  PruneReport prune_report_;
  // Last, so that it stops (and cancels what runs) before anything it uses goes.
  std::unique_ptr<Scheduler> scheduler_;

  struct Pending;
  std::future<std::vector<HeadlineResult>> enqueue(const std::vector<std::string>& summaries,
                                                   const HeadlineOptions& options,
                                                   std::shared_ptr<std::atomic<bool>> cancelled) const;
};


}  // namespace udaci
