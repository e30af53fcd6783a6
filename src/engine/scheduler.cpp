#include "engine/scheduler.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <future>

#include "core/threads.hpp"
#include "core/error.hpp"
#include "core/strategy_options.hpp"

namespace udaci {

using Clock = std::chrono::steady_clock;

void SchedulerOptions::validate() const {
  UDACI_CHECK(max_sequences >= 1, "scheduler: max_sequences must be >= 1, got {}", max_sequences);
  UDACI_CHECK(max_cache_bytes >= 0, "scheduler: max_cache_bytes must be >= 0, got {}", max_cache_bytes);
  UDACI_CHECK(prefill_chunk >= 1, "scheduler: prefill_chunk must be >= 1, got {}", prefill_chunk);
}

SchedulerOptions SchedulerOptions::from(const StrategyOptions& o) {
  const char* owner = "scheduler";
  o.expect_only(owner, {"max_sequences", "max_cache_bytes", "prefill_chunk", "batch_invariant"});
  SchedulerOptions s;
  s.max_sequences = o.get_int(owner, "max_sequences", s.max_sequences);
  s.max_cache_bytes = o.get_int(owner, "max_cache_bytes", s.max_cache_bytes);
  s.prefill_chunk = o.get_int(owner, "prefill_chunk", s.prefill_chunk);
  const int64_t inv = o.get_int(owner, "batch_invariant", s.batch_invariant ? 1 : 0);
  UDACI_CHECK(inv == 0 || inv == 1, "scheduler: batch_invariant must be 0 or 1, got {}", inv);
  s.batch_invariant = inv == 1;
  s.validate();
  return s;
}

int StepCostModel::bucket(int64_t rows) {
  int b = 0;
  while (b + 1 < kBuckets && (int64_t{1} << (b + 1)) <= rows) ++b;
  return b;
}

// The weight of the n-th measurement (n from 0) in a running average: the
// mean of the first 8, then an exponential average (a change of machine
// speed shows within a few steps).
namespace {
double average_weight(int64_t n) { return n < 8 ? 1.0 / static_cast<double>(n + 1) : 0.125; }
}  // namespace

void StepCostModel::record(int64_t rows, double ms) {
  if (rows < 1 || !(ms > 0)) return;
  const int b = bucket(rows);
  const double w = average_weight(seen_[b]);
  rows_[b] += w * (static_cast<double>(rows) - rows_[b]);
  ms_[b] += w * (ms - ms_[b]);
  ++seen_[b];
}

double StepCostModel::predict(int64_t rows) const {
  const double r = static_cast<double>(rows);
  int lo = -1, hi = -1;  // the nearest measured buckets at or below r, and above
  for (int b = 0; b < kBuckets; ++b) {
    if (seen_[b] == 0) continue;
    if (rows_[b] <= r) lo = b;
    if (rows_[b] > r && hi < 0) hi = b;
  }
  if (lo < 0 && hi < 0) return -1.0;
  if (lo < 0) return ms_[hi];  // below every measurement: no cheaper than the smallest
  if (hi < 0) return ms_[lo] * std::max(1.0, r / rows_[lo]);  // above: proportional to rows
  const double f = (r - rows_[lo]) / (rows_[hi] - rows_[lo]);
  return ms_[lo] + f * (ms_[hi] - ms_[lo]);
}

std::vector<int64_t> allow_drafts(const StepCostModel& cost, const std::vector<DraftWish>& wishes,
                                  int64_t base_rows, double base_tokens, double draft_pass_ms) {
  std::vector<int64_t> allowed(wishes.size(), 0);
  std::vector<size_t> order;
  for (size_t i = 0; i < wishes.size(); ++i) {
    if (wishes[i].k <= 0) continue;
    if (!wishes[i].follow_load || cost.predict(base_rows) <= 0) {
      allowed[i] = wishes[i].k;
      continue;
    }
    order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return wishes[a].acceptance > wishes[b].acceptance; });
  // gains[n][d]: the tokens d drafts of the n-th sequence in `order` add.
  std::vector<std::vector<double>> gains;
  int64_t most_passes = 0;  // the longest wish of a sequence drafting with a model
  for (size_t i : order) {
    const double a = std::min(std::max(wishes[i].acceptance, 0.0), 0.999);
    std::vector<double> e(static_cast<size_t>(wishes[i].k) + 1, 0.0);
    double term = 1;
    for (size_t d = 1; d < e.size(); ++d) {
      term *= a;
      e[d] = e[d - 1] + term;
    }
    gains.push_back(std::move(e));
    if (wishes[i].model_passes) most_passes = std::max(most_passes, wishes[i].k);
  }
  const double pass_ms = std::max(draft_pass_ms, 0.0);
  auto step_ms = [&](int64_t r, int64_t p) { return cost.predict(r) + static_cast<double>(p) * pass_ms; };
  // The sequences drafting with a model share its passes, so what pays for
  // one depends on how many the step runs: every pass count P is tried (0:
  // no draft model runs) and the allocation with the best rate is kept.
  std::vector<int64_t> best(order.size(), 0), trial(order.size(), 0);
  double best_rate = -1;
  for (int64_t passes = 0; passes <= most_passes; ++passes) {
    int64_t rows = base_rows;
    double tokens = std::max(base_tokens, 1e-9);
    for (size_t n = 0; n < order.size(); ++n) {
      const DraftWish& w = wishes[order[n]];
      trial[n] = 0;
      const int64_t cap = w.model_passes ? std::min(w.k, passes) : w.k;
      // The d with the most tokens a millisecond (the longest of equals), if
      // that does not fall below the step's rate without it.
      double rate = tokens / step_ms(rows, passes);
      for (int64_t d = cap; d >= 1; --d) {
        const double r_d = (tokens + gains[n][static_cast<size_t>(d)]) / step_ms(rows + d, passes);
        if (r_d > rate || (trial[n] == 0 && r_d == rate)) {
          trial[n] = d;
          rate = r_d;
        }
      }
      rows += trial[n];
      tokens += gains[n][static_cast<size_t>(trial[n])];
    }
    const double rate = tokens / step_ms(rows, passes);
    if (rate > best_rate) {
      best_rate = rate;
      best = trial;
    }
  }
  for (size_t n = 0; n < order.size(); ++n) allowed[order[n]] = best[n];
  return allowed;
}

// One submit() call.
struct Scheduler::Request {
  std::vector<SequenceJob> jobs;
  std::vector<GenerationResult> results;
  std::shared_ptr<std::atomic<bool>> cancelled;
  RequestDone done;
  Clock::time_point submitted;
  size_t unfinished = 0;
  bool completed = false;  // done() has been called (finished, failed or cancelled)

  bool is_cancelled() const { return cancelled && cancelled->load(); }
};

// A sequence admitted to the batch.
struct Scheduler::Live {
  std::shared_ptr<Request> request;
  size_t index = 0;
  SeqId slot = 0;
  std::vector<int64_t> tokens;  // prompt + generated
  int64_t charged = 0;          // bytes counted in reserved_
  bool started = false;         // its prompt has been offered to the cache
  bool prefilled = false;       // the whole prompt has been computed
  bool done = false;            // finished; leaves the batch after this step
  std::unique_ptr<SequenceDecoder> decoder;  // from the prompt's end on
  std::vector<SeqId> extra;     // further cache sequences the decoder took (beams)

  Live(std::shared_ptr<Request> r, size_t i, SeqId s) : request(std::move(r)), index(i), slot(s) {}
  SequenceJob& job() { return request->jobs[index]; }
  GenerationResult& result() { return request->results[index]; }
};

// A request whose sequences are not all admitted yet, or an exclusive task.
struct Scheduler::Queued {
  std::shared_ptr<Request> request;
  size_t next = 0;  // first job not admitted
  std::function<void(CacheStrategy&)> exclusive;
  std::shared_ptr<std::promise<void>> exclusive_done;
};

Scheduler::Scheduler(const LlamaModel& model, CacheStrategy& cache, const SchedulerOptions& options)
    : model_(model), cache_(cache), options_(options) {
  options_.validate();
  byte_cap_ = options_.max_cache_bytes > 0 ? options_.max_cache_bytes : cache_.byte_limit();
  if (options_.max_cache_bytes > 0 && cache_.byte_limit() > 0)
    byte_cap_ = std::min(byte_cap_, cache_.byte_limit());
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::submit(std::vector<SequenceJob> jobs, std::shared_ptr<std::atomic<bool>> cancelled,
                       RequestDone done) {
  for (const SequenceJob& j : jobs) check_generation_inputs(model_, {j.prompt}, j.options);
  UDACI_CHECK(!on_scheduler_thread(),
              "a request cannot be made from a token callback (it would wait for itself)");
  auto r = std::make_shared<Request>();
  r->results.resize(jobs.size());
  r->jobs = std::move(jobs);
  r->cancelled = std::move(cancelled);
  r->done = std::move(done);
  r->submitted = Clock::now();
  r->unfinished = r->jobs.size();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_ && !r->jobs.empty()) {
      queue_.push_back(Queued{r, 0, {}, {}});
      stats_.queued += static_cast<int64_t>(r->jobs.size());
      cv_.notify_all();
      return;
    }
  }
  // Nothing to do (no sequences), or shutting down: answer on this thread.
  if (r->jobs.empty()) {
    complete(*r);
  } else {
    fail(r, std::make_exception_ptr(Error(Status::kCancelled, "the engine is shutting down")));
  }
}

void Scheduler::run_exclusive(const std::function<void(CacheStrategy&)>& fn) {
  UDACI_CHECK(!on_scheduler_thread(),
              "a request cannot be made from a token callback (it would wait for itself)");
  auto promise = std::make_shared<std::promise<void>>();
  std::future<void> f = promise->get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    UDACI_CHECK_S(Status::kCancelled, !stop_, "the engine is shutting down");
    queue_.push_back(Queued{nullptr, 0, fn, promise});
  }
  cv_.notify_all();
  f.get();
}

void Scheduler::submit_exclusive(std::function<void(CacheStrategy&)> fn) {
  UDACI_CHECK(!on_scheduler_thread(),
              "a request cannot be made from a token callback (it would wait for itself)");
  {
    std::lock_guard<std::mutex> lock(mu_);
    UDACI_CHECK_S(Status::kCancelled, !stop_, "the engine is shutting down");
    queue_.push_back(Queued{nullptr, 0, std::move(fn), std::make_shared<std::promise<void>>()});
  }
  cv_.notify_all();
}

void Scheduler::cancel_all() {
  cancel_all_.store(true);
  cv_.notify_all();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Scheduler::complete(Request& r) {
  if (r.completed) return;
  r.completed = true;
  const double now_ms = std::chrono::duration<double, std::milli>(Clock::now() - r.submitted).count();
  for (GenerationResult& g : r.results)
    if (g.latency_ms == 0) g.latency_ms = now_ms;
  try {
    if (r.done) r.done(r.results, nullptr);
  } catch (...) {
    // done() belongs to the engine and reports through its own promise; an
    // exception here has nowhere to go and must not stop the loop.
  }
}

void Scheduler::fail(const std::shared_ptr<Request>& r, std::exception_ptr error) {
  if (r->completed) return;
  r->completed = true;
  try {
    if (r->done) r->done(r->results, error);
  } catch (...) {
  }
}

void Scheduler::finish(Live& s, FinishReason reason) {
  GenerationResult& g = s.result();
  g.finish = reason;
  g.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - s.request->submitted).count();
  release(s);
  s.done = true;
  if (--s.request->unfinished == 0) completed_.push_back(s.request);
}

void Scheduler::release(Live& s) {
  s.decoder.reset();  // it may free slots of its own first
  if (cache_.has_sequence(s.slot)) cache_.free_sequence(s.slot);
  for (SeqId e : s.extra)
    if (cache_.has_sequence(e)) cache_.free_sequence(e);
  s.extra.clear();
  reserved_ -= s.charged;
  s.charged = 0;
}

void Scheduler::sweep() {
  for (auto it = live_.begin(); it != live_.end();) {
    Live& s = *it;
    if (s.request->completed) {  // failed meanwhile
      release(s);
      it = live_.erase(it);
    } else if (s.request->is_cancelled() || cancel_all_.load()) {
      finish(s, FinishReason::kCancelled);
      it = live_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Scheduler::admit() {
  // Pull sequences from the head of the queue while the caps allow.
  std::unique_lock<std::mutex> lock(mu_);
  while (!queue_.empty()) {
    Queued& q = queue_.front();
    if (q.exclusive) {
      if (!live_.empty()) break;  // runs once the batch has drained
      auto fn = std::move(q.exclusive);
      auto promise = std::move(q.exclusive_done);
      queue_.pop_front();
      lock.unlock();
      try {
        fn(cache_);
        promise->set_value();
      } catch (...) {
        promise->set_exception(std::current_exception());
      }
      lock.lock();
      continue;
    }
    std::shared_ptr<Request> r = q.request;
    if (r->completed || r->is_cancelled() || cancel_all_.load()) {
      // Sequences never admitted finish empty.
      const int64_t left = static_cast<int64_t>(r->jobs.size() - q.next);
      stats_.queued -= left;
      queue_.pop_front();
      lock.unlock();
      if (!r->completed) {
        for (size_t i = q.next; i < r->jobs.size(); ++i) r->results[i].finish = FinishReason::kCancelled;
        r->unfinished -= static_cast<size_t>(left);
        if (r->unfinished == 0) complete(*r);
      }
      lock.lock();
      continue;
    }
    if (static_cast<int64_t>(live_.size()) >= options_.max_sequences) break;
    const SequenceJob& job = r->jobs[q.next];
    const int64_t tokens =
        static_cast<int64_t>(job.prompt.size()) + job.options.max_new_tokens + job.footprint.extra_tokens;
    const int64_t need = cache_.bytes_for_tokens(tokens) * std::max<int64_t>(1, job.footprint.sequences);
    if (byte_cap_ > 0 && reserved_ + need > byte_cap_) {
      if (!live_.empty()) break;  // wait for memory; nothing overtakes this request
      const size_t left = r->jobs.size() - q.next;
      stats_.queued -= static_cast<int64_t>(left);
      queue_.pop_front();
      lock.unlock();
      fail(r, std::make_exception_ptr(Error(
                  Status::kOutOfMemory,
                  fmt::format("a sequence of {} tokens (prompt + max_new_tokens) needs {} bytes of "
                              "K/V, over the scheduler's cap of {} bytes",
                              tokens, need, byte_cap_))));
      lock.lock();
      continue;
    }
    const size_t index = q.next++;
    --stats_.queued;
    if (q.next == r->jobs.size()) queue_.pop_front();
    ++stats_.admitted;
    lock.unlock();

    if (job.options.max_new_tokens == 0) {  // nothing to generate
      if (--r->unfinished == 0) complete(*r);
      lock.lock();
      continue;
    }
    live_.emplace_back(r, index, next_slot_++);
    Live& s = live_.back();
    s.result().queue_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - r->submitted).count();
    s.tokens = job.prompt;
    try {
      cache_.add_sequence(s.slot, tokens);
      s.charged = need;
      reserved_ += need;
      StepContext ctx;
      ctx.cache = &cache_;
      ctx.slot = s.slot;
      ctx.vocab = model_.config().vocab_size;
      Live* sp = &s;  // list elements stay put
      ctx.new_slot = [this, sp] {
        sp->extra.push_back(next_slot_++);
        return sp->extra.back();
      };
      s.decoder = job.start ? job.start(ctx) : make_sampled_sequence(job.options.sampling, ctx);
      UDACI_CHECK_S(Status::kInternal, s.decoder != nullptr, "no sequence decoder for a request");
    } catch (...) {
      release(s);
      live_.pop_back();
      fail(r, std::current_exception());
    }
    lock.lock();
  }
  stats_.running = static_cast<int64_t>(live_.size());
  stats_.peak_running = std::max(stats_.peak_running, stats_.running);
  return !live_.empty();
}

void Scheduler::step() {
  const bool retains = cache_.retains_kv();
  const int64_t chunk = options_.prefill_chunk;
  // Which sequences take part, with how many new tokens each.
  std::vector<Live*> members;
  std::vector<int64_t> counts;
  int64_t budget = chunk;
  const int64_t share = options_.batch_invariant ? 0 : cache_.prefix_share_tokens();
  for (Live& s : live_) {
    if (!s.started) {
      if (budget <= 0 && retains) continue;
      if (share > 0 && waits_for_shared_prefix(s, share)) continue;
      // A prefix-sharing cache may hold the start of the prompt already (the
      // invariant mode computes every prompt itself).
      try {
        if (!options_.batch_invariant) cache_.begin_prompt(s.slot, s.tokens);
      } catch (...) {
        fail(s.request, std::current_exception());
        continue;
      }
      s.started = true;
    }
    if (s.prefilled) {  // decoding: the rows its decoder asks for
      members.push_back(&s);
      counts.push_back(0);
      continue;
    }
    const int64_t held = cache_.cached_length(s.slot);
    const int64_t pending = static_cast<int64_t>(s.tokens.size()) - held;
    int64_t n = pending;
    if (retains) {
      if (options_.batch_invariant) {
        // Chunk boundaries at multiples of `chunk`, whatever else is running.
        n = std::min(pending, chunk - held % chunk);
        if (budget < chunk && n > budget) continue;  // next step
      } else {
        if (budget <= 0) continue;
        n = std::min(pending, budget);
      }
      budget -= n;
    } else {
      // A cache that keeps nothing recomputes the whole sequence every step,
      // so its prompt cannot be split; newcomers still queue for the budget.
      if (budget <= 0 && !members.empty()) continue;
      budget -= n;
    }
    members.push_back(&s);
    counts.push_back(n);
  }
  if (members.empty()) {
    flush_completed();
    return;
  }

  // The rows of the pass, member by member: a prompt chunk, or what the
  // member's decoder asks for (a decoder that fails fails its request).
  const auto t_plan = Clock::now();  // the step's time includes drafting (a draft model's passes)
  std::vector<std::vector<StepRows>> plan(members.size());
  // Prompt chunks and the rows of members that do not draft first; then
  // adaptive speculation: how many drafts each speculating member may
  // verify, given the rows the step has without them.
  std::vector<DraftWish> wishes(members.size());
  int64_t base_rows = 0;
  double base_tokens = 0;
  auto ask = [&](size_t m, int64_t max_draft) {
    Live& s = *members[m];
    try {
      s.decoder->rows(s.tokens, max_draft, plan[m]);
      UDACI_CHECK_S(Status::kInternal, !plan[m].empty(), "a sequence decoder asked for no rows");
    } catch (...) {
      plan[m].clear();
      fail(s.request, std::current_exception());
    }
  };
  for (size_t m = 0; m < members.size(); ++m) {
    Live& s = *members[m];
    if (!s.prefilled) {
      const int64_t held = cache_.cached_length(s.slot);
      plan[m].push_back(
          {s.slot, std::vector<int64_t>(s.tokens.begin() + held, s.tokens.begin() + held + counts[m]), false, true});
      base_rows += counts[m];
      base_tokens += static_cast<double>(counts[m]);  // prompt rows are useful work too
      continue;
    }
    base_tokens += 1;
    try {
      wishes[m] = s.decoder->draft_wish(s.tokens);
    } catch (...) {
      wishes[m] = DraftWish{};
    }
    if (wishes[m].k > 0) {
      base_rows += 1;  // its newest token
      continue;
    }
    ask(m, -1);
    for (const StepRows& r : plan[m]) base_rows += static_cast<int64_t>(r.tokens.size());
  }
  std::vector<int64_t> allowed = allow_drafts(cost_, wishes, base_rows, base_tokens, draft_pass_ms_);
  // Every 16th step that has wishes lets one sequence's drafts through (in
  // turn): the cost model measures row counts it would otherwise only
  // interpolate, at a cost of at most k rows in 16 steps. A draft model that
  // does not pay drafts one token every 64th step instead (which times its
  // pass): k passes would cost as much as k steps. And a step whose
  // rows without drafts were never measured runs without them once (a lone
  // sequence that always drafts would otherwise never time a one-row step,
  // the cost its drafts are weighed against).
  std::vector<size_t> wishing;
  for (size_t m = 0; m < members.size(); ++m)
    if (wishes[m].k > 0) wishing.push_back(m);
  if (!wishing.empty() && ++draft_steps_ % 16 == 0) {
    const size_t m = wishing[static_cast<size_t>(draft_steps_ / 16) % wishing.size()];
    if (!wishes[m].model_passes) {
      allowed[m] = wishes[m].k;
    } else if (allowed[m] == 0 && draft_steps_ % 64 == 0) {
      allowed[m] = 1;
    }
  } else if (!wishing.empty() && cost_.predict(base_rows) > 0 && !cost_.measured(base_rows)) {
    std::fill(allowed.begin(), allowed.end(), 0);
  }
  int64_t wished = 0, let = 0;
  // Drafting members queue their drafts first, so that a draft model runs
  // its passes for all of them together; then each gives its rows.
  std::vector<StepWork*> works;
  for (size_t m = 0; m < members.size(); ++m) {
    if (wishes[m].k <= 0 || allowed[m] <= 0) continue;
    try {
      StepWork* w = members[m]->decoder->prepare(members[m]->tokens, allowed[m]);
      if (w != nullptr && std::find(works.begin(), works.end(), w) == works.end()) works.push_back(w);
    } catch (...) {
      // rows() drafts alone, and fails the request if that fails too.
    }
  }
  const auto t_draft = Clock::now();
  for (StepWork* w : works) w->run();
  int64_t model_passes = 0;  // the draft model's passes of this step (shared by its sequences)
  for (size_t m = 0; m < members.size(); ++m) {
    if (wishes[m].k <= 0) continue;
    wished += wishes[m].k;
    let += allowed[m];
    if (wishes[m].model_passes) model_passes = std::max(model_passes, allowed[m]);
    ask(m, allowed[m]);  // drafts here unless its draft ran with works above
  }
  const double draft_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_draft).count();
  if (model_passes > 0) {  // what one pass costs (the first measurement has weight 1)
    const double per_pass = draft_ms / static_cast<double>(model_passes);
    draft_pass_ms_ += average_weight(draft_passes_timed_++) * (per_pass - draft_pass_ms_);
  }

  std::vector<const float*> first_row(members.size(), nullptr);  // per member: its logits
  std::vector<int64_t> n_rows(members.size(), 0);
  std::vector<at::Tensor> outputs;  // keep the logits alive
  try {
    auto run = [&](size_t from, size_t to) {
      // Prompt chunks first, as LlamaModel::forward computes them (it would
      // otherwise reorder the batch and copy the logits back).
      std::vector<size_t> order;
      for (bool prompt : {true, false})
        for (size_t m = from; m < to; ++m)
          if (!plan[m].empty() && plan[m].front().prompt == prompt) order.push_back(m);
      ForwardBatch batch;
      for (size_t m : order)
        for (const StepRows& r : plan[m]) batch.add(r.slot, r.tokens, r.all_logits, r.prompt);
      if (batch.seqs.empty()) return;
      at::Tensor logits = model_.forward(batch, cache_).contiguous();
      outputs.push_back(logits);
      const float* p = logits.data_ptr<float>();
      const int64_t vocab = logits.size(1);
      for (size_t m : order) {
        int64_t n = 0;
        for (const StepRows& r : plan[m]) n += r.all_logits ? static_cast<int64_t>(r.tokens.size()) : 1;
        first_row[m] = p;
        n_rows[m] = n;
        p += n * vocab;
      }
    };
    if (options_.batch_invariant) {
      for (size_t m = 0; m < members.size(); ++m) run(m, m + 1);
    } else {
      run(0, members.size());
    }
  } catch (...) {
    // The error is not one sequence's: every request in the step fails, and
    // their sequences leave the cache; the other requests go on.
    std::exception_ptr e = std::current_exception();
    for (Live* s : members) fail(s->request, e);
    sweep();
    flush_completed();
    return;
  }

  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t_plan).count();

  int64_t prefill_tokens = 0, new_tokens = 0;
  for (size_t m = 0; m < members.size(); ++m) {
    Live& s = *members[m];
    if (s.request->completed || plan[m].empty()) continue;
    GenerationResult& g = s.result();
    (s.prefilled ? g.decode_ms : g.prefill_ms) += ms;
    if (!s.prefilled) {
      prefill_tokens += counts[m];
      // A chunk that does not end the prompt produces no token.
      if (retains && cache_.cached_length(s.slot) < static_cast<int64_t>(s.tokens.size())) continue;
      s.prefilled = true;
    }
    const SequenceJob& job = s.job();
    try {
      StepOutcome o = s.decoder->consume(first_row[m], n_rows[m], s.tokens);
      g.drafted += o.drafted;
      g.accepted += o.accepted;
      if (o.final) {  // a search's whole answer
        s.tokens.insert(s.tokens.end(), o.tokens.begin(), o.tokens.end());
        g.tokens = o.tokens;
        g.n_best = std::move(o.n_best);
        new_tokens += static_cast<int64_t>(o.tokens.size());
        if (job.on_token)
          for (int64_t tok : o.tokens) job.on_token(tok);
        finish(s, o.finish);
        continue;
      }
      for (int64_t tok : o.tokens) {
        s.tokens.push_back(tok);
        g.tokens.push_back(tok);
        ++new_tokens;
        const auto& eos = job.options.eos_ids;
        const bool is_eos = std::find(eos.begin(), eos.end(), tok) != eos.end();
        const bool keep_going = job.on_token ? job.on_token(tok) : true;
        if (is_eos) {
          finish(s, FinishReason::kEos);
        } else if (!keep_going) {
          finish(s, FinishReason::kStopped);
        } else if (static_cast<int64_t>(g.tokens.size()) >= job.options.max_new_tokens) {
          finish(s, FinishReason::kLength);
        }
        if (s.done) break;  // the decoder's further tokens are dropped
      }
    } catch (...) {
      fail(s.request, std::current_exception());
    }
  }
  if (!options_.batch_invariant) {  // what the step cost, consume() (verification) included
    int64_t rows = 0;
    for (const auto& p : plan)
      for (const StepRows& r : p) rows += static_cast<int64_t>(r.tokens.size());
    // Drafting is timed apart (draft_pass_ms_): the model is of the rows alone.
    const double total = std::chrono::duration<double, std::milli>(Clock::now() - t_plan).count();
    cost_.record(rows, std::max(total - draft_ms, 1e-3));
  }
  // Finished sequences leave the batch now.
  live_.remove_if([](const Live& s) { return s.done; });
  sweep();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.steps;
    stats_.prefill_tokens += prefill_tokens;
    stats_.decode_tokens += new_tokens;
    stats_.drafts_wished += wished;
    stats_.drafts_allowed += let;
    if (let < wished) ++stats_.steps_cutting_drafts;
    stats_.running = static_cast<int64_t>(live_.size());
  }
  flush_completed();
}

bool Scheduler::waits_for_shared_prefix(const Live& s, int64_t share) const {
  // Wait only for blocks another sequence is computing right now that the
  // cache cannot serve yet.
  const int64_t have = cache_.prefix_available(s.tokens);
  for (const Live& p : live_) {
    if (&p == &s || !p.started || p.prefilled) continue;
    const size_t limit = std::min(s.tokens.size(), p.tokens.size()) - 1;
    size_t common = 0;
    while (common < limit && s.tokens[common] == p.tokens[common]) ++common;
    const int64_t shared = static_cast<int64_t>(common) / share * share;
    if (shared > have) return true;
  }
  return false;
}

void Scheduler::flush_completed() {
  std::vector<std::shared_ptr<Request>> done;
  done.swap(completed_);
  for (auto& r : done) complete(*r);
}

void Scheduler::shutdown() {
  flush_completed();
  std::deque<Queued> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued.swap(queue_);
    stats_.queued = 0;
  }
  auto error = std::make_exception_ptr(Error(Status::kCancelled, "the engine was destroyed"));
  for (Queued& q : queued) {
    if (q.exclusive_done) q.exclusive_done->set_exception(error);
    if (q.request) fail(q.request, error);
  }
  for (Live& s : live_) {
    fail(s.request, error);
    if (cache_.has_sequence(s.slot)) cache_.free_sequence(s.slot);
  }
  live_.clear();
  reserved_ = 0;
}

void Scheduler::loop() {
  at::init_num_threads();  // ATen's process-wide setting, once (it is not cheap)
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !live_.empty(); });
      if (stop_) break;
    }
    // ATen's thread count is per thread under OpenMP: follow udaci's setting
    // (set_threads from any thread).
    adopt_requested_threads();
    // Callers waiting in with_cache go first (a few microseconds each); the
    // bound keeps a stream of them from stalling the batch.
    for (int spins = 0; step_waiters_.load() > 0 && spins < 10000; ++spins) std::this_thread::yield();
    std::lock_guard<std::mutex> step_lock(step_mu_);
    sweep();
    flush_completed();
    if (!admit()) continue;
    step();
  }
  std::lock_guard<std::mutex> step_lock(step_mu_);
  shutdown();
}

}  // namespace udaci
