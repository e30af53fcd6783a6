#include "decode/beam_search.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "core/error.hpp"
#include "core/strategy_options.hpp"
#include "model/elementwise.hpp"

namespace udaci {

BeamOptions BeamOptions::from(const StrategyOptions& o) {
  const std::string owner = "decoder 'beam'";
  o.expect_only(owner, {"width", "length_penalty", "n_best", "early_stopping", "no_repeat_ngram"});
  BeamOptions b;
  b.width = o.get_int(owner, "width", b.width);
  UDACI_CHECK(b.width >= 1 && b.width <= 256, "{}: width must be in [1, 256], got {}", owner, b.width);
  b.length_penalty = o.get_double(owner, "length_penalty", b.length_penalty);
  UDACI_CHECK(std::isfinite(b.length_penalty), "{}: length_penalty must be finite", owner);
  b.n_best = o.get_int(owner, "n_best", b.n_best);
  UDACI_CHECK(b.n_best >= 1 && b.n_best <= b.width, "{}: n_best must be in [1, width = {}], got {}", owner,
              b.width, b.n_best);
  const int64_t early = o.get_int(owner, "early_stopping", 1);
  UDACI_CHECK(early == 0 || early == 1, "{}: early_stopping must be 0 or 1, got {}", owner, early);
  b.early_stopping = early == 1;
  b.no_repeat_ngram = o.get_int(owner, "no_repeat_ngram", b.no_repeat_ngram);
  UDACI_CHECK(b.no_repeat_ngram >= 0, "{}: no_repeat_ngram must be >= 0, got {}", owner, b.no_repeat_ngram);
  return b;
}

namespace {

struct Beam {
  SeqId slot = 0;
  std::vector<int64_t> tokens;  // new tokens
  double score = 0;             // sum of log-probabilities
};

struct Candidate {
  double score;
  size_t beam;
  int64_t token;
};

// Tokens that would complete an n-gram already present in `seq`.
std::set<int64_t> banned_tokens(const std::vector<int64_t>& seq, int64_t n) {
  std::set<int64_t> out;
  const int64_t len = static_cast<int64_t>(seq.size());
  if (n <= 0 || len < n) return out;
  // The last n - 1 tokens, followed by what came after each earlier match.
  for (int64_t i = 0; i + n <= len; ++i) {
    if (std::equal(seq.begin() + i, seq.begin() + i + n - 1, seq.end() - (n - 1)))
      out.insert(seq[static_cast<size_t>(i + n - 1)]);
  }
  return out;
}

double normalised(double score, size_t length, double penalty) {
  return score / std::pow(static_cast<double>(std::max<size_t>(length, 1)), penalty);
}

}  // namespace

namespace {

// One prompt's search as a SequenceDecoder: each consume() extends every live
// beam by one token; the answer comes out whole when the search ends.
class BeamSequence final : public SequenceDecoder {
 public:
  BeamSequence(const BeamOptions& beam, const GenerationOptions& options, const StepContext& context)
      : opt_(beam), options_(options), ctx_(context) {}

  ~BeamSequence() override {
    for (const Beam& b : live_)
      if (ctx_.cache->has_sequence(b.slot)) ctx_.cache->free_sequence(b.slot);
  }

  void rows(const std::vector<int64_t>&, int64_t, std::vector<StepRows>& out) override {
    // The tokens each beam's cache sequence lacks.
    for (const Beam& b : live_) {
      std::vector<int64_t> seq = prompt_;
      seq.insert(seq.end(), b.tokens.begin(), b.tokens.end());
      const int64_t held = ctx_.cache->cached_length(b.slot);
      out.push_back({b.slot, std::vector<int64_t>(seq.begin() + held, seq.end()), false});
    }
  }

  StepOutcome consume(const float* logits, int64_t n_rows, const std::vector<int64_t>& tokens) override {
    if (!started_) {  // the prompt's logits: one beam, in the sequence's own slot
      started_ = true;
      prompt_ = tokens;
      live_.assign(1, Beam{ctx_.slot, {}, 0});
    }
    UDACI_CHECK_S(Status::kInternal, n_rows == static_cast<int64_t>(live_.size()),
                  "beam search: {} rows of logits for {} beams", n_rows, live_.size());
    const int64_t vocab = ctx_.vocab;
    const size_t width = static_cast<size_t>(opt_.width);
    const double lp = opt_.length_penalty;

    // Each beam's 2 * width best extensions. log p = logit - logsumexp(row)
    // (model/elementwise.hpp: vector exps in float, summed in double, as
    // transformers' float log-softmax is accurate to ~1e-7); the best
    // extensions are the largest logits (ties: the lower id), one pass over
    // each row with a heap of the best so far.
    const size_t take = std::min(static_cast<size_t>(vocab), 2 * width);
    std::vector<Candidate> cands;
    std::vector<std::pair<float, int64_t>> best;  // a heap whose top is the worst kept
    const auto worse = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    for (size_t bi = 0; bi < live_.size(); ++bi) {
      const float* row = logits + static_cast<int64_t>(bi) * vocab;
      std::set<int64_t> banned;
      if (opt_.no_repeat_ngram > 0) {
        std::vector<int64_t> seq = prompt_;
        seq.insert(seq.end(), live_[bi].tokens.begin(), live_[bi].tokens.end());
        banned = banned_tokens(seq, opt_.no_repeat_ngram);
      }
      best.clear();
      float thr = -std::numeric_limits<float>::infinity();  // the worst kept, once `take` are
      const auto offer = [&](int64_t v) {
        // Ids come in increasing order: a tie with the worst kept never beats it.
        if (best.size() == take && !(row[v] > thr)) return;
        if (!banned.empty() && banned.count(v) != 0) return;
        if (best.size() == take) {
          std::pop_heap(best.begin(), best.end(), worse);
          best.pop_back();
        }
        best.emplace_back(row[v], v);
        std::push_heap(best.begin(), best.end(), worse);
        if (best.size() == take) thr = best.front().first;
      };
      int64_t v = 0;
      for (; v < vocab && best.size() < take; ++v) offer(v);
      // Then 16 logits at a time, looked at one by one only when one of them
      // beats the worst kept (a vectorised test; rare once the heap is good).
      constexpr int64_t kChunk = 16;
      for (; v + kChunk <= vocab; v += kChunk) {
        bool any = false;
        for (int64_t j = 0; j < kChunk; ++j) any |= row[v + j] > thr;
        if (!any) continue;
        for (int64_t j = 0; j < kChunk; ++j) offer(v + j);
      }
      for (; v < vocab; ++v) offer(v);
      std::sort_heap(best.begin(), best.end(), worse);  // best first
      const double lse = log_sum_exp(row, vocab);
      for (const auto& [logit, v] : best) {
        const double l = static_cast<double>(logit) - lse;
        if (std::isinf(l) || std::isnan(l)) break;
        cands.push_back({live_[bi].score + l, bi, v});
      }
    }
    std::stable_sort(cands.begin(), cands.end(),
                     [](const Candidate& a, const Candidate& b) { return a.score > b.score; });

    std::vector<Beam> next;
    std::vector<size_t> parent;
    for (size_t rank = 0; rank < cands.size() && next.size() < width; ++rank) {
      const Candidate& c = cands[rank];
      std::vector<int64_t> toks = live_[c.beam].tokens;
      toks.push_back(c.token);
      const auto& eos_ids = options_.eos_ids;
      const bool eos = std::find(eos_ids.begin(), eos_ids.end(), c.token) != eos_ids.end();
      const bool complete = !eos && options_.is_complete && options_.is_complete(toks);
      const bool full = static_cast<int64_t>(toks.size()) >= options_.max_new_tokens;
      if (eos || complete || full) {
        // An ending extension counts only among the `width` best.
        if (rank < width)
          finished_.push_back({toks, normalised(c.score, toks.size(), lp),
                               eos ? FinishReason::kEos : complete ? FinishReason::kStopped : FinishReason::kLength});
        continue;
      }
      next.push_back({0, std::move(toks), c.score});
      parent.push_back(c.beam);
    }

    bool done = next.empty();
    if (!done && finished_.size() >= width) {
      if (opt_.early_stopping) {
        done = true;
      } else {
        std::vector<double> s;
        for (const Hypothesis& h : finished_) s.push_back(h.score);
        std::sort(s.rbegin(), s.rend());
        const double worst_kept = s[width - 1];
        double best_live = -std::numeric_limits<double>::infinity();
        for (const Beam& b : next) best_live = std::max(best_live, normalised(b.score, b.tokens.size(), lp));
        done = best_live <= worst_kept;
      }
    }
    // Cache sequences for the next beams: a parent's first child keeps its
    // sequence, further children fork it, parents without children go.
    std::vector<int> children(live_.size(), 0);
    if (!done) {
      for (size_t k = 0; k < next.size(); ++k) {
        const Beam& p = live_[parent[k]];
        if (children[parent[k]]++ == 0) {
          next[k].slot = p.slot;
        } else {
          next[k].slot = ctx_.new_slot();
          ctx_.cache->fork(p.slot, next[k].slot);
        }
      }
    }
    for (size_t bi = 0; bi < live_.size(); ++bi)
      if (children[bi] == 0 && ctx_.cache->has_sequence(live_[bi].slot)) ctx_.cache->free_sequence(live_[bi].slot);
    live_ = done ? std::vector<Beam>{} : std::move(next);
    if (!done) return {};

    std::stable_sort(finished_.begin(), finished_.end(),
                     [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
    UDACI_CHECK_S(Status::kInternal, !finished_.empty(), "beam search ended without a candidate");
    StepOutcome out;
    out.final = true;
    out.tokens = finished_[0].tokens;
    out.finish = finished_[0].finish;
    finished_.resize(std::min(finished_.size(), static_cast<size_t>(opt_.n_best)));
    out.n_best = std::move(finished_);
    return out;
  }

 private:
  BeamOptions opt_;
  GenerationOptions options_;
  StepContext ctx_;
  bool started_ = false;
  std::vector<int64_t> prompt_;
  std::vector<Beam> live_;
  std::vector<Hypothesis> finished_;
};

}  // namespace

std::unique_ptr<SequenceDecoder> BeamSearchDecoder::start_sequence(const GenerationOptions& options,
                                                                   const StepContext& context) const {
  return std::make_unique<BeamSequence>(options_, options, context);
}

std::vector<GenerationResult> BeamSearchDecoder::decode(const LlamaModel& model, CacheStrategy& cache,
                                                          const std::vector<std::vector<int64_t>>& prompts,
                                                          const GenerationOptions& options,
                                                          const TokenCallback& on_token) const {
  return decode_alone(*this, model, cache, prompts, options, on_token);
}

}  // namespace udaci
