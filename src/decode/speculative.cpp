#include "decode/speculative.hpp"

#include <algorithm>
#include <chrono>

#include "cache/sequence_slots.hpp"
#include "core/error.hpp"
#include "core/strategy_options.hpp"

namespace udaci {

SpeculativeOptions SpeculativeOptions::from(const StrategyOptions& o) {
  const std::string owner = "decoder 'speculative'";
  o.expect_only(owner, {"draft", "draft_model", "draft_quantizer", "k", "k_min", "k_max", "adaptive",
                        "follow_load", "ngram_max", "ngram_min", "reuse_prompt_kv"});
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
  s.ngram_max = o.get_int(owner, "ngram_max", s.ngram_max);
  s.ngram_min = o.get_int(owner, "ngram_min", s.ngram_min);
  UDACI_CHECK(s.ngram_min >= 1 && s.ngram_max >= s.ngram_min,
              "{}: need 1 <= ngram_min <= ngram_max, got {} and {}", owner, s.ngram_min, s.ngram_max);
  return s;
}

namespace {

class PromptLookupDraft final : public DraftSource {
 public:
  PromptLookupDraft(int64_t ngram_max, int64_t ngram_min) : max_(ngram_max), min_(ngram_min) {}

  std::vector<int64_t> propose(const std::vector<int64_t>& tokens, int64_t k,
                               std::vector<std::vector<double>>* probs) override {
    if (probs) probs->clear();
    const int64_t len = static_cast<int64_t>(tokens.size());
    for (int64_t n = std::min(max_, len - 1); n >= min_; --n) {
      const int64_t suffix = len - n;
      // The latest earlier occurrence of the last n tokens.
      for (int64_t i = suffix - 1; i >= 0; --i) {
        if (!std::equal(tokens.begin() + i, tokens.begin() + i + n, tokens.begin() + suffix)) continue;
        const int64_t from = i + n;
        const int64_t to = std::min(len, from + k);
        if (to > from) return std::vector<int64_t>(tokens.begin() + from, tokens.begin() + to);
      }
    }
    return {};
  }

 private:
  int64_t max_, min_;
};

class ModelDraft final : public DraftSource {
 public:
  ModelDraft(const LlamaModel& model, const SamplingOptions& sampling, bool reuse_prompt_kv)
      : model_(model),
        sampler_(sampling),
        cache_(make_contiguous_cache(model.cache_shape())),
        reuse_prompt_kv_(reuse_prompt_kv) {
    row_.resize(static_cast<size_t>(model.config().vocab_size));
  }
  ~ModelDraft() override { end(); }

  void begin(const std::vector<int64_t>& prompt, const TargetPrompt& target) override {
    end();
    cache_->add_sequence(kSeq, static_cast<int64_t>(prompt.size()) + 64);
    fed_.clear();
    active_ = true;
    if (!reuse_prompt_kv_ || target.cache == nullptr) return;
    // The target has just computed the prompt: take its K/V instead of
    // computing (roughly) the same numbers a second time.
    const int64_t held = std::min<int64_t>(target.cache->cached_length(target.seq),
                                           static_cast<int64_t>(prompt.size()));
    if (held == 0) return;
    const CacheShape ds = model_.cache_shape();
    for (int64_t l = 0; l < ds.num_layers; ++l) {
      auto [k, v] = target.cache->committed_kv(l, target.seq);
      UDACI_CHECK_S(Status::kInternal, k.size(1) == ds.num_kv_heads && k.size(2) == ds.head_dim,
                    "draft: the target's K/V [{}, {}] do not fit the draft's [{}, {}]", k.size(1),
                    k.size(2), ds.num_kv_heads, ds.head_dim);
      cache_->append(l, kSeq, k.narrow(0, 0, held).to(ds.dtype), v.narrow(0, 0, held).to(ds.dtype));
    }
    cache_->commit(kSeq, held);
    fed_.assign(prompt.begin(), prompt.begin() + held);
    reused_ += held;
  }
  int64_t computed_tokens() const override { return computed_; }
  int64_t reused_tokens() const override { return reused_; }
  void end() override {
    if (active_ && cache_->has_sequence(kSeq)) cache_->free_sequence(kSeq);
    active_ = false;
  }

  std::vector<int64_t> propose(const std::vector<int64_t>& tokens, int64_t k,
                               std::vector<std::vector<double>>* probs) override {
    UDACI_CHECK_S(Status::kInternal, active_ && !tokens.empty(), "draft model used before begin()");
    if (probs) probs->clear();
    // Keep what the draft cache holds of `tokens` (its own rejected drafts go),
    // then feed the rest; the last token is always fed, for its logits.
    size_t common = 0;
    const size_t limit = std::min(fed_.size(), tokens.size() - 1);
    while (common < limit && fed_[common] == tokens[common]) ++common;
    cache_->truncate(kSeq, static_cast<int64_t>(common));
    ForwardBatch b;
    b.add(kSeq, std::vector<int64_t>(tokens.begin() + static_cast<int64_t>(common), tokens.end()));
    computed_ += static_cast<int64_t>(tokens.size() - common);
    at::Tensor logits = model_.forward(b, *cache_).contiguous();
    fed_ = tokens;
    std::vector<int64_t> out;
    std::vector<int64_t> history = tokens;
    const int64_t vocab = static_cast<int64_t>(row_.size());
    for (int64_t i = 0; i < k; ++i) {
      const float* src = logits.data_ptr<float>();
      std::copy(src, src + vocab, row_.begin());
      int64_t tok;
      if (sampler_.greedy() || probs == nullptr) {
        tok = sampler_.sample(row_.data(), vocab, history);
      } else {
        std::vector<double> q;
        sampler_.distribution(row_.data(), vocab, history, q);
        tok = sampler_.draw(q);
        probs->push_back(std::move(q));
      }
      out.push_back(tok);
      history.push_back(tok);
      if (i + 1 < k) {
        ForwardBatch next;
        next.add(kSeq, {tok});
        ++computed_;
        logits = model_.forward(next, *cache_).contiguous();
        fed_.push_back(tok);
      }
    }
    return out;
  }

 private:
  static constexpr SeqId kSeq = 0;
  const LlamaModel& model_;
  Sampler sampler_;
  std::unique_ptr<CacheStrategy> cache_;
  std::vector<int64_t> fed_;  // tokens whose K/V the draft cache holds
  std::vector<float> row_;
  bool active_ = false;
  bool reuse_prompt_kv_ = false;
  int64_t computed_ = 0;  // tokens the draft model ran forward
  int64_t reused_ = 0;    // prompt tokens taken from the target's cache
};

}  // namespace

std::unique_ptr<DraftSource> make_prompt_lookup_draft(int64_t ngram_max, int64_t ngram_min) {
  return std::make_unique<PromptLookupDraft>(ngram_max, ngram_min);
}

std::unique_ptr<DraftSource> make_model_draft(const LlamaModel& draft, const SamplingOptions& sampling,
                                              bool reuse_prompt_kv) {
  return std::make_unique<ModelDraft>(draft, sampling, reuse_prompt_kv);
}

SpeculativeDecoder::SpeculativeDecoder(const SpeculativeOptions& options, DraftFactory make_draft)
    : options_(options), make_draft_(std::move(make_draft)) {
  if (!make_draft_ && options_.draft == "prompt-lookup") {
    const int64_t hi = options_.ngram_max, lo = options_.ngram_min;
    make_draft_ = [hi, lo](const SamplingOptions&) { return make_prompt_lookup_draft(hi, lo); };
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
  make_draft_ = [dm, reuse](const SamplingOptions& s) { return make_model_draft(*dm, s, reuse); };
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
  }

  DraftWish draft_wish(const std::vector<int64_t>& tokens) const override {
    DraftWish w;
    w.k = std::max<int64_t>(0, wanted(tokens));
    // This sequence's kept share, shrunk towards the decoder's over all
    // sequences so far (a new sequence has little history of its own).
    const double pooled = static_cast<double>(stats_->accepted + 1) / static_cast<double>(stats_->drafted + 2);
    w.acceptance = (static_cast<double>(accepted_) + 4.0 * pooled) / (static_cast<double>(drafted_) + 4.0);
    w.follow_load = spec_.follow_load;
    return w;
  }

  void rows(const std::vector<int64_t>& tokens, int64_t max_draft, std::vector<StepRows>& out) override {
    int64_t want = wanted(tokens);
    if (max_draft >= 0) want = std::min(want, max_draft);
    drafts_.clear();
    q_.clear();
    if (want > 0) drafts_ = draft_->propose(tokens, want, &q_);
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
