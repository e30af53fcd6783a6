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
                        "ngram_max", "ngram_min", "reuse_prompt_kv"});
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

std::vector<GenerationResult> SpeculativeDecoder::decode(const LlamaModel& model, CacheStrategy& cache,
                                                           const std::vector<std::vector<int64_t>>& prompts,
                                                           const GenerationOptions& options,
                                                           const TokenCallback& on_token) const {
  using Clock = std::chrono::steady_clock;
  UDACI_CHECK_S(Status::kInternal, make_draft_ != nullptr, "decoder 'speculative' was not prepared");
  check_generation_inputs(model, prompts, options);
  const int64_t vocab = model.config().vocab_size;
  std::vector<GenerationResult> results(prompts.size());
  if (options.max_new_tokens == 0) return results;
  std::vector<float> row(static_cast<size_t>(vocab));
  std::vector<double> p, residual;

  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationResult& res = results[i];
    SequenceSlots slots(cache);
    const SeqId slot = slots.add(static_cast<int64_t>(prompts[i].size()) + options.max_new_tokens +
                                 options_.k_max + 1);
    cache.begin_prompt(slot, prompts[i]);
    Sampler target(options.sampling);
    std::unique_ptr<DraftSource> draft = make_draft_(options.sampling);
    std::vector<int64_t> tokens = prompts[i];
    bool live = true;
    // Appends one token; false once the sequence has ended.
    auto emit = [&](int64_t tok) {
      tokens.push_back(tok);
      res.tokens.push_back(tok);
      const bool eos = std::find(options.eos_ids.begin(), options.eos_ids.end(), tok) != options.eos_ids.end();
      const bool go_on = on_token ? on_token(i, tok) : true;
      if (eos) {
        res.finish = FinishReason::kEos;
      } else if (!go_on) {
        res.finish = FinishReason::kStopped;
      } else if (static_cast<int64_t>(res.tokens.size()) >= options.max_new_tokens) {
        res.finish = FinishReason::kLength;
      } else {
        return true;
      }
      live = false;
      return false;
    };
    // Runs the tokens the cache lacks plus `extra`; logits of the last
    // extra.size() + 1 positions.
    auto forward = [&](const std::vector<int64_t>& extra) {
      const int64_t held = cache.cached_length(slot);
      std::vector<int64_t> fresh(tokens.begin() + held, tokens.end());
      fresh.insert(fresh.end(), extra.begin(), extra.end());
      ForwardBatch b;
      b.add(slot, fresh, /*all_logits=*/!extra.empty());
      at::Tensor logits = model.forward(b, cache).contiguous();
      const int64_t rows = static_cast<int64_t>(extra.size()) + 1;
      return logits.narrow(0, logits.size(0) - rows, rows);
    };
    auto row_of = [&](const at::Tensor& logits, int64_t r) {
      const float* src = logits.data_ptr<float>() + r * vocab;
      std::copy(src, src + vocab, row.begin());
      return row.data();
    };

    auto t0 = Clock::now();
    {
      at::Tensor logits = forward({});
      res.prefill_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      emit(target.sample(row_of(logits, 0), vocab, tokens));
    }
    draft->begin(prompts[i], TargetPrompt{&cache, slot});
    t0 = Clock::now();
    int64_t k = options_.k;
    while (live) {
      const int64_t room = options.max_new_tokens - static_cast<int64_t>(res.tokens.size());
      const int64_t want = std::min(k, room - 1);
      std::vector<std::vector<double>> q;
      std::vector<int64_t> drafts;
      if (want > 0) drafts = draft->propose(tokens, want, &q);
      if (drafts.size() > static_cast<size_t>(want)) drafts.resize(static_cast<size_t>(want));
      if (drafts.empty()) {  // nothing to verify: one plain step
        at::Tensor logits = forward({});
        emit(target.sample(row_of(logits, 0), vocab, tokens));
        continue;
      }
      const int64_t n = static_cast<int64_t>(drafts.size());
      at::Tensor logits = forward(drafts);  // [n + 1, vocab]
      const size_t base = tokens.size();    // the cache now holds base - 1 + n + 1 positions
      int64_t kept = 0;
      bool replaced = false;
      for (int64_t j = 0; j < n && live; ++j) {
        target.distribution(row_of(logits, j), vocab, tokens, p);
        const int64_t d = drafts[static_cast<size_t>(j)];
        const bool one_hot = q.empty();
        const double qd = one_hot ? 1.0 : q[static_cast<size_t>(j)][static_cast<size_t>(d)];
        const double pd = p[static_cast<size_t>(d)];
        // Greedy: p is one-hot, so the draft is kept exactly when it is the argmax.
        const bool accept = pd >= qd || (!target.greedy() && target.uniform() * qd < pd);
        if (accept) {
          ++kept;
          emit(d);
          continue;
        }
        residual = p;
        if (one_hot) {
          residual[static_cast<size_t>(d)] = 0.0;
        } else {
          for (size_t v = 0; v < residual.size(); ++v)
            residual[v] = std::max(0.0, p[v] - q[static_cast<size_t>(j)][v]);
        }
        emit(target.draw(residual));
        replaced = true;
        break;
      }
      if (live && !replaced) emit(target.sample(row_of(logits, n), vocab, tokens));  // all kept: a bonus token
      ++stats_.rounds;
      stats_.drafted += n;
      stats_.accepted += kept;
      stats_.emitted += static_cast<int64_t>(tokens.size() - base);
      // Keep the K/V of the tokens that stand, except the newest (fed next round).
      if (live) {
        const int64_t keep = static_cast<int64_t>(tokens.size()) - 1;
        if (cache.cached_length(slot) > keep) cache.truncate(slot, keep);
      }
      if (options_.adaptive) {
        if (kept == n) k = std::min(k + 1, options_.k_max);
        if (kept == 0) k = std::max(k - 1, options_.k_min);
      }
    }
    res.decode_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    draft->end();
    stats_.draft_computed += draft->computed_tokens();
    stats_.draft_reused += draft->reused_tokens();
  }
  return results;
}

}  // namespace udaci
