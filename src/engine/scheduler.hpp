// Continuous batching: one thread owns the model and the cache and runs decode
// steps over every live sequence; requests from any thread join the running
// batch between two steps and leave it as soon as they finish (iteration-level
// scheduling, Yu et al., "Orca", OSDI 2022). Prompts of newcomers are prefilled
// in chunks of at most `prefill_chunk` tokens per step, all newcomers together,
// so the sequences already decoding keep getting one token per step.
//
// Admission is first come, first served, one sequence at a time, under two
// caps: the number of live sequences and the K/V memory they may need (each
// sequence is charged CacheStrategy::bytes_for_tokens(prompt + max_new_tokens)
// when admitted, so a running sequence never runs out of cache). A request
// that does not fit waits at the head of the queue; nothing behind it is let
// in first, so no request starves.
//
// Batch invariance: by default the linear layers run once over the tokens of
// all sequences of a step, so a sequence's logits can differ in the last bits
// with the company it keeps. With batch_invariant = true every sequence is
// computed by its own forward pass, its prompt in chunks at fixed offsets
// (multiples of prefill_chunk) and without prefix sharing, so its tokens are
// exactly those it gets alone: the same arithmetic, in the same order.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cache/cache_strategy.hpp"
#include "decode/decoder.hpp"
#include "model/llama_model.hpp"

namespace udaci {

class StrategyOptions;

struct SchedulerOptions {
  int64_t max_sequences = 64;    // live sequences at once (>= 1)
  int64_t max_cache_bytes = 0;   // K/V bytes the live sequences may need; 0: the
                                 // cache strategy's own cap (byte_limit()), if any
  int64_t prefill_chunk = 256;   // prompt tokens computed per step (>= 1)
  bool batch_invariant = false;  // see above

  // Throws Error(kInvalidArgument) naming the option that is out of range.
  void validate() const;
  // From "max_sequences=32,max_cache_bytes=1e9,prefill_chunk=128,batch_invariant=1".
  static SchedulerOptions from(const StrategyOptions& o);
};

// One sequence to generate.
struct SequenceJob {
  std::vector<int64_t> prompt;
  GenerationOptions options;
  // Called on the scheduler thread after each new token; false ends the
  // sequence (FinishReason::kStopped). An exception fails the whole request.
  std::function<bool(int64_t token)> on_token;
  // The sequence's decoder in the batch (beam search, speculative ...;
  // Decoder::start_sequence) and what it holds in the cache; unset: one
  // token a step by options.sampling.
  std::function<std::unique_ptr<SequenceDecoder>(const StepContext&)> start;
  SequenceFootprint footprint;
};

// Called once per request on the scheduler thread when its last sequence has
// finished (results in job order), or with `error` set when it failed.
// Sequences of a cancelled request finish with FinishReason::kCancelled.
using RequestDone = std::function<void(std::vector<GenerationResult>& results, std::exception_ptr error)>;

struct SchedulerStats {
  int64_t steps = 0;              // forward steps run
  int64_t admitted = 0;           // sequences admitted since construction
  int64_t peak_running = 0;       // most sequences live in one step
  int64_t prefill_tokens = 0;     // prompt tokens computed (prefix-cache hits excluded)
  int64_t decode_tokens = 0;      // tokens generated
  int64_t queued = 0;             // sequences waiting now
  int64_t running = 0;            // sequences live now
  // Adaptive speculation: drafted tokens the sequences wished to verify,
  // those the cost model let through, and steps in which it cut some.
  int64_t drafts_wished = 0;
  int64_t drafts_allowed = 0;
  int64_t steps_cutting_drafts = 0;
};

// The time of a forward step against its rows (tokens computed), measured
// on the running machine: an exponential average per power-of-two bucket of
// rows, read by linear interpolation between the buckets seen (flat below
// the first, proportional above the last). In one step of 16 that has
// drafts the scheduler lets one sequence's drafts through whatever the
// model says, so that row counts get measured. The scheduler asks it whether a
// sequence's drafts pay for the rows they add.
class StepCostModel {
 public:
  void record(int64_t rows, double ms);
  // Predicted milliseconds, or a negative number before any measurement.
  double predict(int64_t rows) const;
  // Whether a step of this many rows (its power-of-two bucket) was measured.
  bool measured(int64_t rows) const { return rows >= 1 && seen_[bucket(rows)] > 0; }

 private:
  static constexpr int kBuckets = 24;
  static int bucket(int64_t rows);
  double rows_[kBuckets] = {};
  double ms_[kBuckets] = {};
  int64_t seen_[kBuckets] = {};
};

// How many drafted tokens each speculating sequence may verify in the next
// step (issue #25): sequences in order of acceptance, each given the d <=
// its wish with the most useful rows per millisecond, (U + e(d)) / t(R + d),
// if that is not below U / t(R) (else none; the largest d that did not fall
// was longer than pays). R are the rows and U the useful ones so far
// (prompt rows and one token per decoding sequence: work that has to be
// done anyway) and e(d) = a + a^2 + ... + a^d the tokens d
// drafts add at acceptance a (the other d - e(d) rows are wasted). When a
// step's fixed cost dominates (one sequence, memory-bound) drafts pass; when
// its rows do (a full batch, compute-bound) they do not. `base_rows`: rows
// of the step without drafts; `base_tokens`: its useful rows. A draft
// model's passes count too: `draft_pass_ms` is what one of its passes costs
// (measured), added to t: the sequences drafting with it in a step share
// its passes, so every pass count P from 0 to the longest such wish is
// tried (those sequences' d capped at P, the step charged P passes) and the
// allocation whose step has the best rate kept. So a draft that costs as
// much as the target (an int4 copy of a 4-bit model) is not run.
// Sequences that do not follow the load, or any when the model has no
// measurement yet, get their whole wish.
std::vector<int64_t> allow_drafts(const StepCostModel& cost, const std::vector<DraftWish>& wishes,
                                  int64_t base_rows, double base_tokens, double draft_pass_ms = 0.0);

class Scheduler {
 public:
  Scheduler(const LlamaModel& model, CacheStrategy& cache, const SchedulerOptions& options);
  ~Scheduler();  // cancels what is queued or running (their requests fail with kCancelled)
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues the sequences of one request. Checks them first (Error
  // kInvalidArgument: empty prompt, id outside the vocabulary, bad options).
  // `cancelled`, when set, is polled before every step.
  void submit(std::vector<SequenceJob> jobs, std::shared_ptr<std::atomic<bool>> cancelled,
              RequestDone done);

  // Runs fn on the scheduler thread once every sequence admitted before it
  // has finished and before anything queued after it starts (for decoders
  // that drive the model themselves). Blocks; rethrows fn's exception.
  void run_exclusive(const std::function<void(CacheStrategy&)>& fn);
  // The same without waiting; fn reports its own outcome (it is dropped
  // unrun when the scheduler shuts down first).
  void submit_exclusive(std::function<void(CacheStrategy&)> fn);

  // Runs fn between two steps (the cache is not in use meanwhile); called
  // from a token callback (the scheduler thread, inside a step) it runs at once.
  // The loop lets a waiting caller in before its next step (std::mutex alone
  // is not fair: the loop would take it back at once, and a caller such as a
  // metrics scrape waited for as long as a sequence ran).
  template <typename F>
  auto with_cache(F&& fn) const {
    if (on_scheduler_thread()) return fn(static_cast<const CacheStrategy&>(cache_));
    StepLock lock(*this);
    return fn(static_cast<const CacheStrategy&>(cache_));
  }
  template <typename F>
  auto with_mutable_cache(F&& fn) {
    if (on_scheduler_thread()) return fn(cache_);
    StepLock lock(*this);
    return fn(cache_);
  }
  // True on the thread that runs the steps (and so the token callbacks).
  bool on_scheduler_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

  // From now on every request, running, queued or submitted later, ends at
  // its next step with FinishReason::kCancelled (before an engine goes away).
  void cancel_all();

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Request;
  struct Live;
  struct Queued;

  std::atomic<bool> cancel_all_{false};

  void loop();
  bool admit();                      // step_mu_ held; true when something is live
  void step();                       // step_mu_ held
  void finish(Live& s, FinishReason reason);
  void release(Live& s);             // frees the sequence's cache slots and its charge
  void fail(const std::shared_ptr<Request>& r, std::exception_ptr error);
  void complete(Request& r);
  void sweep();                      // drops sequences of completed or cancelled requests
  void flush_completed();            // calls done() of requests that finished in this step
  bool waits_for_shared_prefix(const Live& s, int64_t share) const;
  void shutdown();

  const LlamaModel& model_;
  CacheStrategy& cache_;
  SchedulerOptions options_;
  int64_t byte_cap_ = 0;

  mutable std::mutex mu_;            // queue_, stop_, stats_
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  bool stop_ = false;
  SchedulerStats stats_;

  mutable std::mutex step_mu_;       // the cache and model while a step runs
  mutable std::atomic<int> step_waiters_{0};  // callers waiting for step_mu_ (with_cache)
  // step_mu_ for a caller other than the loop, announced in step_waiters_.
  class StepLock {
   public:
    explicit StepLock(const Scheduler& s) : s_(s) {
      s_.step_waiters_.fetch_add(1);
      s_.step_mu_.lock();
      s_.step_waiters_.fetch_sub(1);
    }
    ~StepLock() { s_.step_mu_.unlock(); }
    StepLock(const StepLock&) = delete;
    StepLock& operator=(const StepLock&) = delete;

   private:
    const Scheduler& s_;
  };
  std::list<Live> live_;             // admission order; scheduler thread only
  std::vector<std::shared_ptr<Request>> completed_;  // finished, done() not yet called
  int64_t reserved_ = 0;             // bytes charged to live sequences
  SeqId next_slot_ = 0;
  StepCostModel cost_;               // scheduler thread only
  int64_t draft_steps_ = 0;          // steps in which some sequence wished to draft
  double draft_pass_ms_ = -1.0;      // a draft model's pass (average), < 0 before one was timed
  int64_t draft_passes_timed_ = 0;

  std::thread thread_;
};

}  // namespace udaci
