#include "decode/speculative.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>

#include "cache/sequence_slots.hpp"
#include "core/error.hpp"
#include "core/strategy_options.hpp"
#include "decode/ngram_history.hpp"

namespace udaci {

SpeculativeOptions SpeculativeOptions::from(const StrategyOptions& o) {
  const std::string owner = "decoder 'speculative'";
  o.expect_only(owner, {"draft", "draft_model", "draft_quantizer", "k", "k_min", "k_max", "adaptive",
                        "follow_load", "ngram_max", "ngram_min", "reuse_prompt_kv", "batch_drafts", "history"});
  SpeculativeOptions s;
  s.draft = o.get_string(owner, "draft", s.draft);
  UDACI_CHECK(s.draft == "prompt-lookup" || s.draft == "draft-model" || s.draft == "self-int4",
              "{}: draft must be prompt-lookup, draft-model or self-int4, got '{}'", owner, s.draft);
  s.draft_model = o.get_string(owner, "draft_model", s.draft_model);
  UDACI_CHECK(s.draft != "draft-model" || !s.draft_model.empty(),
              "{}: draft=draft-model needs draft_model=PATH (a smaller model with the same vocabulary)",
              owner);
  s.draft_quantizer = o.get_string(owner, "draft_quantizer", s.draft_quantizer);
  s.k_min = o.get_int(owner, "k_min", s.k_min);
  s.k_max = o.get_int(owner, "k_max", s.k_max);
  s.k = o.get_int(owner, "k", s.k);
  UDACI_CHECK(s.k_min >= 1, "{}: k_min must be >= 1, got {}", owner, s.k_min);
  UDACI_CHECK(s.k_max >= s.k_min && s.k_max <= 64, "{}: k_max must be in [k_min, 64], got {}", owner,
              s.k_max);
  UDACI_CHECK(s.k >= s.k_min && s.k <= s.k_max, "{}: k must be in [k_min, k_max] = [{}, {}], got {}",
              owner, s.k_min, s.k_max, s.k);
  const int64_t adaptive = o.get_int(owner, "adaptive", 1);
  UDACI_CHECK(adaptive == 0 || adaptive == 1, "{}: adaptive must be 0 or 1, got {}", owner, adaptive);
  s.adaptive = adaptive == 1;
  const int64_t follow = o.get_int(owner, "follow_load", 1);
  UDACI_CHECK(follow == 0 || follow == 1, "{}: follow_load must be 0 or 1, got {}", owner, follow);
  s.follow_load = follow == 1;
  const int64_t reuse = o.get_int(owner, "reuse_prompt_kv", s.draft == "self-int4" ? 1 : 0);
  UDACI_CHECK(reuse == 0 || reuse == 1, "{}: reuse_prompt_kv must be 0 or 1, got {}", owner, reuse);
  UDACI_CHECK(reuse == 0 || s.draft == "self-int4",
              "{}: reuse_prompt_kv=1 needs draft=self-int4 (only the target's own weights, quantised, "
              "read the target's K/V the same way)",
              owner);
  s.reuse_prompt_kv = reuse == 1;
  const int64_t batch = o.get_int(owner, "batch_drafts", 1);
  UDACI_CHECK(batch == 0 || batch == 1, "{}: batch_drafts must be 0 or 1, got {}", owner, batch);
  s.batch_drafts = batch == 1;
  s.ngram_max = o.get_int(owner, "ngram_max", s.ngram_max);
  s.ngram_min = o.get_int(owner, "ngram_min", s.ngram_min);
  UDACI_CHECK(s.ngram_min >= 1 && s.ngram_max >= s.ngram_min,
              "{}: need 1 <= ngram_min <= ngram_max, got {} and {}", owner, s.ngram_min, s.ngram_max);
  s.history = o.get_int(owner, "history", s.history);
  UDACI_CHECK(s.history >= 0 && s.history <= (int64_t{1} << 24),
              "{}: history must be in [0, 16777216] tokens, got {}", owner, s.history);
  return s;
}

namespace {

// The longest n-grams the prompt-lookup history keeps: 4 tokens drafted
// best on 200 headlines of the default model (a simulation of lookup on
// its greedy output: 1.25 tokens a step from the context alone, 1.42 with
// a history of n <= 4 consulted after the context's 2+-token matches).
constexpr int kHistoryNgram = 4;

class PromptLookupDraft final : public DraftSource {
 public:
  PromptLookupDraft(int64_t ngram_max, int64_t ngram_min, std::shared_ptr<NgramHistory> history)
      : max_(ngram_max), min_(ngram_min), history_(std::move(history)) {}

  std::vector<int64_t> propose(const std::vector<int64_t>& tokens, int64_t k,
                               std::vector<std::vector<double>>* probs) override {
    if (probs) probs->clear();
    if (k <= 0) return {};
    if (!history_) return lookup(tokens, max_, min_, k);
    // A match of 2+ tokens in the sequence itself (a name or phrase of the
    // summary being copied) says more than the history; a single token's
    // match says less than the history's longer contexts.
    std::vector<int64_t> d = lookup(tokens, max_, std::max<int64_t>(min_, 2), k);
    if (d.empty()) d = history_->draft(tokens, k, static_cast<int>(min_));
    if (d.empty() && min_ <= 1) d = lookup(tokens, 1, 1, k);
    return d;
  }

  void observe(const std::vector<int64_t>& before, const std::vector<int64_t>& added) override {
    if (!history_ || added.empty()) return;
    // The new tokens after the few before them that their n-grams reach.
    const size_t reach = std::min(before.size(), static_cast<size_t>(history_->n_max()));
    std::vector<int64_t> all(before.end() - static_cast<std::ptrdiff_t>(reach), before.end());
    all.insert(all.end(), added.begin(), added.end());
    history_->observe(all, static_cast<int64_t>(added.size()));
  }

 private:
  // What followed the latest earlier occurrence of the last n tokens, n
  // from hi down to lo.
  static std::vector<int64_t> lookup(const std::vector<int64_t>& tokens, int64_t hi, int64_t lo, int64_t k) {
    const int64_t len = static_cast<int64_t>(tokens.size());
    for (int64_t n = std::min(hi, len - 1); n >= lo; --n) {
      const int64_t suffix = len - n;
      for (int64_t i = suffix - 1; i >= 0; --i) {
        if (!std::equal(tokens.begin() + i, tokens.begin() + i + n, tokens.begin() + suffix)) continue;
        const int64_t from = i + n;
        const int64_t to = std::min(len, from + k);
        if (to > from) return std::vector<int64_t>(tokens.begin() + from, tokens.begin() + to);
      }
    }
    return {};
  }

  int64_t max_, min_;
  std::shared_ptr<NgramHistory> history_;
};

}  // namespace

// A draft model's sequences and their K/V, drafted together.
class DraftBatch final : public StepWork {
 public:
  // What one sequence queued for the step, and what run() made of it.
  struct Slot {
    Sampler* sampler = nullptr;
    std::vector<int64_t>* fed = nullptr;  // tokens whose K/V the cache holds under `id`
    SeqId id = 0;
    std::vector<int64_t> tokens;          // prompt and kept tokens
    int64_t k = 0;
    bool want_probs = false;
    std::vector<int64_t> drafts;
    std::vector<std::vector<double>> probs;
    std::exception_ptr error;
    int64_t passes = 0;    // passes it took part in, all steps
    int64_t computed = 0;  // tokens it fed, all steps
  };

  explicit DraftBatch(const LlamaModel& model)
      : model_(model), cache_(make_contiguous_cache(model.cache_shape())) {
    row_.resize(static_cast<size_t>(model.config().vocab_size));
  }

  const LlamaModel& model() const { return model_; }
  std::mutex& mutex() { return mu_; }
  CacheStrategy& cache() { return *cache_; }  // under mutex()
  SeqId new_id() {
    std::lock_guard<std::mutex> lock(mu_);
    return next_id_++;
  }
  void add(Slot* s) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(s);
  }
  int64_t passes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return passes_;
  }
  int64_t bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cache_->bytes_reserved();
  }

  // One pass over the tokens each queued sequence's cache lacks (its own
  // rejected drafts dropped first), then one per further drafted position
  // over the sequences that want more.
  void run() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Slot*> live;
    live.swap(pending_);
    if (live.empty()) return;
    try {
      ForwardBatch first;
      for (Slot* s : live) {
        s->drafts.clear();
        s->probs.clear();
        s->error = nullptr;
        const std::vector<int64_t>& t = s->tokens;
        size_t common = 0;
        const size_t limit = std::min(s->fed->size(), t.size() - 1);  // the last token is always fed
        while (common < limit && (*s->fed)[common] == t[common]) ++common;
        cache_->truncate(s->id, static_cast<int64_t>(common));
        first.add(s->id, std::vector<int64_t>(t.begin() + static_cast<int64_t>(common), t.end()));
        s->computed += static_cast<int64_t>(t.size() - common);
        *s->fed = t;
      }
      std::vector<Slot*> members = live;
      at::Tensor logits = forward(first, members);
      for (;;) {
        ForwardBatch next;
        std::vector<Slot*> more;
        for (size_t i = 0; i < members.size(); ++i) {
          Slot* s = members[i];
          const int64_t tok = pick(*s, logits.data_ptr<float>() + static_cast<int64_t>(i) * logits.size(1));
          if (static_cast<int64_t>(s->drafts.size()) < s->k) {
            next.add(s->id, {tok});
            s->fed->push_back(tok);
            ++s->computed;
            more.push_back(s);
          }
        }
        if (more.empty()) break;
        members = std::move(more);
        logits = forward(next, members);
      }
    } catch (...) {
      for (Slot* s : live) s->error = std::current_exception();
    }
  }

 private:
  at::Tensor forward(const ForwardBatch& b, const std::vector<Slot*>& members) {
    at::Tensor logits = model_.forward(b, *cache_).contiguous();
    ++passes_;
    for (Slot* s : members) ++s->passes;
    return logits;
  }

  // The next draft of `s` from its logits row: greedy or sampled, with the
  // draft distribution when asked for.
  int64_t pick(Slot& s, const float* src) {
    const int64_t vocab = static_cast<int64_t>(row_.size());
    std::copy(src, src + vocab, row_.begin());
    std::vector<int64_t> history = s.tokens;
    history.insert(history.end(), s.drafts.begin(), s.drafts.end());
    int64_t tok;
    if (s.sampler->greedy() || !s.want_probs) {
      tok = s.sampler->sample(row_.data(), vocab, history);
    } else {
      std::vector<double> q;
      s.sampler->distribution(row_.data(), vocab, history, q);
      tok = s.sampler->draw(q);
      s.probs.push_back(std::move(q));
    }
    s.drafts.push_back(tok);
    return tok;
  }

  const LlamaModel& model_;
  std::unique_ptr<CacheStrategy> cache_;
  mutable std::mutex mu_;
  std::vector<Slot*> pending_;
  std::vector<float> row_;
  SeqId next_id_ = 0;
  int64_t passes_ = 0;
};

std::shared_ptr<DraftBatch> make_draft_batch(const LlamaModel& draft) { return std::make_shared<DraftBatch>(draft); }

int64_t draft_batch_passes(const DraftBatch& batch) { return batch.passes(); }

int64_t draft_batch_bytes(const DraftBatch& batch) { return batch.bytes(); }

namespace {

// A draft model driven greedily (or by the request's sampling) over its
// batch's cache, under an id of its own.
class ModelDraft final : public DraftSource {
 public:
  ModelDraft(const SamplingOptions& sampling, bool reuse_prompt_kv, std::shared_ptr<DraftBatch> batch)
      : batch_(std::move(batch)), sampler_(sampling), id_(batch_->new_id()), reuse_prompt_kv_(reuse_prompt_kv) {
    slot_.sampler = &sampler_;
    slot_.fed = &fed_;
    slot_.id = id_;
  }
  ~ModelDraft() override { end(); }

  void begin(const std::vector<int64_t>& prompt, const TargetPrompt& target) override {
    end();
    std::lock_guard<std::mutex> lock(batch_->mutex());
    CacheStrategy& cache = batch_->cache();
    cache.add_sequence(id_, static_cast<int64_t>(prompt.size()) + 64);
    fed_.clear();
    active_ = true;
    if (!reuse_prompt_kv_ || target.cache == nullptr) return;
    // The target has just computed the prompt: take its K/V instead of
    // computing (roughly) the same numbers a second time.
    const int64_t held = std::min<int64_t>(target.cache->cached_length(target.seq),
                                           static_cast<int64_t>(prompt.size()));
    if (held == 0) return;
    const CacheShape ds = batch_->model().cache_shape();
    for (int64_t l = 0; l < ds.num_layers; ++l) {
      auto [k, v] = target.cache->committed_kv(l, target.seq);
      UDACI_CHECK_S(Status::kInternal, k.size(1) == ds.num_kv_heads && k.size(2) == ds.head_dim,
                    "draft: the target's K/V [{}, {}] do not fit the draft's [{}, {}]", k.size(1),
                    k.size(2), ds.num_kv_heads, ds.head_dim);
      cache.append(l, id_, k.narrow(0, 0, held).to(ds.dtype), v.narrow(0, 0, held).to(ds.dtype));
    }
    cache.commit(id_, held);
    fed_.assign(prompt.begin(), prompt.begin() + held);
    reused_ += held;
  }
  int64_t computed_tokens() const override { return slot_.computed; }
  int64_t reused_tokens() const override { return reused_; }
  int64_t passes() const override { return slot_.passes; }
  void end() override {
    if (!active_) return;
    std::lock_guard<std::mutex> lock(batch_->mutex());
    if (batch_->cache().has_sequence(id_)) batch_->cache().free_sequence(id_);
    active_ = false;
  }

  StepWork* queue(const std::vector<int64_t>& tokens, int64_t k, bool want_probs) override {
    UDACI_CHECK_S(Status::kInternal, active_ && !tokens.empty() && k > 0, "draft model used before begin()");
    slot_.tokens = tokens;
    slot_.k = k;
    slot_.want_probs = want_probs;
    slot_.drafts.clear();
    slot_.probs.clear();
    slot_.error = nullptr;
    batch_->add(&slot_);
    return batch_.get();
  }

  std::vector<int64_t> take(std::vector<std::vector<double>>* probs) override {
    if (slot_.error) std::rethrow_exception(slot_.error);
    if (probs) *probs = std::move(slot_.probs);
    slot_.probs.clear();
    return std::move(slot_.drafts);
  }

  std::vector<int64_t> propose(const std::vector<int64_t>& tokens, int64_t k,
                               std::vector<std::vector<double>>* probs) override {
    if (probs) probs->clear();
    if (k <= 0) return {};
    queue(tokens, k, probs != nullptr)->run();
    return take(probs);
  }

 private:
  std::shared_ptr<DraftBatch> batch_;
  Sampler sampler_;
  SeqId id_;
  DraftBatch::Slot slot_;
  std::vector<int64_t> fed_;  // tokens whose K/V the batch's cache holds under id_
  bool active_ = false;
  bool reuse_prompt_kv_ = false;
  int64_t reused_ = 0;  // prompt tokens taken from the target's cache
};

}  // namespace

std::unique_ptr<DraftSource> make_prompt_lookup_draft(int64_t ngram_max, int64_t ngram_min,
                                                      std::shared_ptr<NgramHistory> history) {
  return std::make_unique<PromptLookupDraft>(ngram_max, ngram_min, std::move(history));
}

std::unique_ptr<DraftSource> make_model_draft(const LlamaModel& draft, const SamplingOptions& sampling,
                                              bool reuse_prompt_kv, std::shared_ptr<DraftBatch> batch) {
  if (!batch) batch = make_draft_batch(draft);
  UDACI_CHECK_S(Status::kInternal, &batch->model() == &draft, "a draft batch serves one draft model");
  return std::make_unique<ModelDraft>(sampling, reuse_prompt_kv, std::move(batch));
}

SpeculativeDecoder::SpeculativeDecoder(const SpeculativeOptions& options, DraftFactory make_draft)
    : options_(options), make_draft_(std::move(make_draft)) {
  if (!make_draft_ && options_.draft == "prompt-lookup") {
    const int64_t hi = options_.ngram_max, lo = options_.ngram_min;
    if (options_.history > 0) history_ = std::make_shared<NgramHistory>(options_.history, kHistoryNgram);
    make_draft_ = [hi, lo, h = history_](const SamplingOptions&) { return make_prompt_lookup_draft(hi, lo, h); };
  }
}

void SpeculativeDecoder::prepare(const DecoderContext& context) {
  if (make_draft_) return;
  UDACI_CHECK_S(Status::kInternal, context.load_model != nullptr && context.model != nullptr,
                "decoder 'speculative': no model loader");
  if (options_.draft == "draft-model") {
    draft_model_ = context.load_model(options_.draft_model, "none");
  } else {
    draft_model_ = context.load_model(context.model_path, options_.draft_quantizer);
  }
  const int64_t dv = draft_model_->config().vocab_size, tv = context.model->config().vocab_size;
  UDACI_CHECK(dv == tv,
              "decoder 'speculative': the draft model's vocabulary has {} tokens, the target's {}; "
              "a draft must share the target's vocabulary",
              dv, tv);
  const LlamaModel* dm = draft_model_.get();
  const bool reuse = options_.reuse_prompt_kv;
  // Every sequence's drafts in one batch: the sequences that draft in a step
  // share the draft model's passes.
  if (options_.batch_drafts) draft_batch_ = make_draft_batch(*dm);
  std::shared_ptr<DraftBatch> batch = draft_batch_;  // nullptr: a batch per sequence
  make_draft_ = [dm, reuse, batch](const SamplingOptions& s) { return make_model_draft(*dm, s, reuse, batch); };
}

DecoderStats SpeculativeDecoder::stats() const {
  DecoderStats s = stats_;
  // Without a shared batch every sequence drafts alone.
  s.draft_passes = draft_batch_ ? draft_batch_passes(*draft_batch_) : s.draft_sequence_passes;
  return s;
}

namespace {

// One sequence's speculative decoding as a SequenceDecoder: each step drafts
// up to k tokens and asks for them to be scored with the newest token in one
// pass; consume() keeps the longest agreeing prefix plus one token of the
// target's and truncates the K/V of the rest.
class SpeculativeSequence final : public SequenceDecoder {
 public:
  SpeculativeSequence(const SpeculativeOptions& spec, std::unique_ptr<DraftSource> draft,
                      const GenerationOptions& options, const StepContext& context, DecoderStats* stats)
      : spec_(spec),
        draft_(std::move(draft)),
        options_(options),
        ctx_(context),
        stats_(stats),
        target_(options.sampling),
        row_(static_cast<size_t>(context.vocab)),
        k_(spec.k) {}

  ~SpeculativeSequence() override {
    if (!begun_) return;
    draft_->end();
    stats_->draft_computed += draft_->computed_tokens();
    stats_->draft_reused += draft_->reused_tokens();
    stats_->draft_sequence_passes += draft_->passes();
  }

  DraftWish draft_wish(const std::vector<int64_t>& tokens) const override {
    DraftWish w;
    w.k = std::max<int64_t>(0, wanted(tokens));
    // This sequence's kept share, shrunk towards the decoder's over all
    // sequences so far (a new sequence has little history of its own).
    const double pooled = static_cast<double>(stats_->accepted + 1) / static_cast<double>(stats_->drafted + 2);
    w.acceptance = (static_cast<double>(accepted_) + 4.0 * pooled) / (static_cast<double>(drafted_) + 4.0);
    w.follow_load = spec_.follow_load;
    w.model_passes = spec_.draft != "prompt-lookup";
    return w;
  }

  StepWork* prepare(const std::vector<int64_t>& tokens, int64_t max_draft) override {
    queued_ = false;
    if (!begun_) return nullptr;
    int64_t want = wanted(tokens);
    if (max_draft >= 0) want = std::min(want, max_draft);
    if (want <= 0) return nullptr;
    StepWork* work = draft_->queue(tokens, want, true);
    queued_ = work != nullptr;
    return work;
  }

  void rows(const std::vector<int64_t>& tokens, int64_t max_draft, std::vector<StepRows>& out) override {
    int64_t want = wanted(tokens);
    if (max_draft >= 0) want = std::min(want, max_draft);
    drafts_.clear();
    q_.clear();
    if (queued_) {  // drafted with the step's other sequences (prepare())
      queued_ = false;
      drafts_ = draft_->take(&q_);
    } else if (want > 0) {
      drafts_ = draft_->propose(tokens, want, &q_);
    }
    if (drafts_.size() > static_cast<size_t>(want)) drafts_.resize(static_cast<size_t>(want));
    // The tokens the cache lacks (the newest; all for a cache that keeps
    // nothing), then the drafts: with drafts, the logits of the last n + 1.
    const int64_t held = ctx_.cache->cached_length(ctx_.slot);
    std::vector<int64_t> fresh(tokens.begin() + held, tokens.end());
    fresh.insert(fresh.end(), drafts_.begin(), drafts_.end());
    out.push_back({ctx_.slot, std::move(fresh), !drafts_.empty()});
  }

  StepOutcome consume(const float* logits, int64_t n_rows, const std::vector<int64_t>& tokens) override {
    StepOutcome out = verify(logits, n_rows, tokens);
    draft_->observe(tokens, out.tokens);
    drafted_ += out.drafted;
    accepted_ += out.accepted;
    return out;
  }

 private:
  // Drafts the next step would verify: k, within what max_new_tokens leaves.
  int64_t wanted(const std::vector<int64_t>& tokens) const {
    const int64_t made = static_cast<int64_t>(tokens.size()) - prompt_len_;
    return std::min(k_, options_.max_new_tokens - made - 1);
  }

  StepOutcome verify(const float* logits, int64_t n_rows, const std::vector<int64_t>& tokens) {
    const int64_t vocab = ctx_.vocab;
    auto row_of = [&](int64_t r) {
      const float* src = logits + r * vocab;
      std::copy(src, src + vocab, row_.begin());
      return row_.data();
    };
    StepOutcome out;
    if (!begun_) {  // the prompt's logits: one token, then the draft source starts
      prompt_len_ = static_cast<int64_t>(tokens.size());
      out.tokens.push_back(target_.sample(row_of(n_rows - 1), vocab, tokens));
      draft_->begin(tokens, TargetPrompt{ctx_.cache, ctx_.slot});
      begun_ = true;
      return out;
    }
    if (drafts_.empty()) {  // nothing was drafted: one plain step
      out.tokens.push_back(target_.sample(row_of(n_rows - 1), vocab, tokens));
      return out;
    }
    const int64_t n = static_cast<int64_t>(drafts_.size());
    const int64_t first = n_rows - (n + 1);  // logits of the newest token, then of each draft
    std::vector<int64_t> history = tokens;
    const auto ends = [&](int64_t tok) {
      const auto& e = options_.eos_ids;
      return std::find(e.begin(), e.end(), tok) != e.end() ||
             static_cast<int64_t>(history.size()) - prompt_len_ >= options_.max_new_tokens;
    };
    int64_t kept = 0;
    bool stopped = false;  // an EOS or max_new_tokens among the kept tokens
    bool replaced = false;
    for (int64_t j = 0; j < n && !stopped; ++j) {
      if (target_.greedy()) {
        // p is one-hot at the argmax (and so is q: a greedy request drafts
        // greedily): keep the draft when it is the argmax, else the argmax.
        const int64_t best = target_.sample(row_of(first + j), vocab, history);
        const int64_t d = drafts_[static_cast<size_t>(j)];
        if (best == d) {
          ++kept;
          history.push_back(d);
          out.tokens.push_back(d);
          stopped = ends(d);
          continue;
        }
        out.tokens.push_back(best);
        replaced = true;
        break;
      }
      target_.distribution(row_of(first + j), vocab, history, p_);
      const int64_t d = drafts_[static_cast<size_t>(j)];
      const bool one_hot = q_.empty();
      const double qd = one_hot ? 1.0 : q_[static_cast<size_t>(j)][static_cast<size_t>(d)];
      const double pd = p_[static_cast<size_t>(d)];
      // Greedy: p is one-hot, so the draft is kept exactly when it is the argmax.
      const bool accept = pd >= qd || (!target_.greedy() && target_.uniform() * qd < pd);
      if (accept) {
        ++kept;
        history.push_back(d);
        out.tokens.push_back(d);
        stopped = ends(d);
        continue;
      }
      residual_ = p_;
      if (one_hot) {
        residual_[static_cast<size_t>(d)] = 0.0;
      } else {
        for (size_t v = 0; v < residual_.size(); ++v)
          residual_[v] = std::max(0.0, p_[v] - q_[static_cast<size_t>(j)][v]);
      }
      out.tokens.push_back(target_.draw(residual_));
      replaced = true;
      break;
    }
    if (!stopped && !replaced)  // all kept: a bonus token
      out.tokens.push_back(target_.sample(row_of(first + n), vocab, history));
    out.drafted = n;
    out.accepted = kept;
    ++stats_->rounds;
    stats_->drafted += n;
    stats_->accepted += kept;
    stats_->emitted += static_cast<int64_t>(out.tokens.size());
    // Keep the K/V of the tokens that stand, except the newest (fed next step).
    const int64_t keep = static_cast<int64_t>(tokens.size() + out.tokens.size()) - 1;
    if (ctx_.cache->cached_length(ctx_.slot) > keep) ctx_.cache->truncate(ctx_.slot, keep);
    if (spec_.adaptive) {
      if (kept == n) k_ = std::min(k_ + 1, spec_.k_max);
      if (kept == 0) k_ = std::max(k_ - 1, spec_.k_min);
    }
    return out;
  }

  SpeculativeOptions spec_;
  std::unique_ptr<DraftSource> draft_;
  GenerationOptions options_;
  StepContext ctx_;
  DecoderStats* stats_;
  Sampler target_;
  std::vector<float> row_;
  std::vector<double> p_, residual_;
  std::vector<int64_t> drafts_;
  std::vector<std::vector<double>> q_;
  int64_t k_;
  int64_t prompt_len_ = 0;
  int64_t drafted_ = 0, accepted_ = 0;  // this sequence's
  bool begun_ = false;
  bool queued_ = false;  // prepare() queued this step's drafts
};

}  // namespace

std::unique_ptr<SequenceDecoder> SpeculativeDecoder::start_sequence(const GenerationOptions& options,
                                                                    const StepContext& context) const {
  UDACI_CHECK_S(Status::kInternal, make_draft_ != nullptr, "decoder 'speculative' was not prepared");
  return std::make_unique<SpeculativeSequence>(options_, make_draft_(options.sampling), options, context, &stats_);
}

std::vector<GenerationResult> SpeculativeDecoder::decode(const LlamaModel& model, CacheStrategy& cache,
                                                           const std::vector<std::vector<int64_t>>& prompts,
                                                           const GenerationOptions& options,
                                                           const TokenCallback& on_token) const {
  UDACI_CHECK_S(Status::kInternal, make_draft_ != nullptr, "decoder 'speculative' was not prepared");
  return decode_alone(*this, model, cache, prompts, options, on_token);
}

}  // namespace udaci
