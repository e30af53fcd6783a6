// Beam search (decode/beam_search.hpp) on the golden fixtures: width 1 is
// greedy decoding, width = vocabulary finds the exhaustive optimum of two
// tokens, width 4 equals a plain reference implementation that recomputes
// every beam from scratch, every cache gives the same result and is left
// empty, no_repeat_ngram holds, options are checked, and the engine's beam
// decoder writes a clean headline with the default model.
#include "udaci_catch.hpp"

#include <cmath>
#include <map>
#include <set>

#include "decode/beam_search.hpp"
#include "decode/generate.hpp"
#include "engine/headline_engine.hpp"
#include "engine/registry.hpp"
#include "model/llama_model.hpp"
#include "test_util.hpp"

using namespace udaci;
using udaci_test::make_cache;

using udaci_test::Golden;
using udaci_test::load_golden;

namespace {

BeamSearchDecoder beam(std::map<std::string, std::string> o) {
  return BeamSearchDecoder(BeamOptions::from(StrategyOptions(std::move(o))));
}

// log-softmax of the next-token logits after `seq`, computed from scratch.
std::vector<double> next_logp(const LlamaModel& model, const std::vector<int64_t>& seq) {
  auto cache = make_no_cache(model.cache_shape());
  cache->add_sequence(0, 0);
  ForwardBatch b;
  b.add(0, seq);
  at::Tensor l = model.forward(b, *cache).to(at::kDouble).log_softmax(-1).contiguous();
  const double* p = l.data_ptr<double>();
  return std::vector<double>(p, p + l.size(-1));
}

// Plain beam search over fixed-length continuations (no EOS): keep the
// `width` best of all extensions of all beams at every step.
std::vector<std::pair<std::vector<int64_t>, double>> reference_beam(const LlamaModel& model,
                                                                    const std::vector<int64_t>& prompt,
                                                                    size_t width, size_t length) {
  std::vector<std::pair<std::vector<int64_t>, double>> beams = {{{}, 0.0}};
  for (size_t step = 0; step < length; ++step) {
    std::vector<std::pair<std::vector<int64_t>, double>> all;
    for (const auto& [toks, score] : beams) {
      std::vector<int64_t> seq = prompt;
      seq.insert(seq.end(), toks.begin(), toks.end());
      const std::vector<double> lp = next_logp(model, seq);
      for (size_t v = 0; v < lp.size(); ++v) {
        auto t = toks;
        t.push_back(static_cast<int64_t>(v));
        all.push_back({t, score + lp[v]});
      }
    }
    std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    all.resize(width);
    beams = all;
  }
  return beams;
}

}  // namespace

TEST_CASE("beam: options are checked", "[beam]") {
  using udaci_test::expect_error;
  expect_error([] { beam({{"width", "0"}}); }, Status::kInvalidArgument, "width");
  expect_error([] { beam({{"n_best", "5"}}); }, Status::kInvalidArgument, "n_best");
  expect_error([] { beam({{"early_stopping", "2"}}); }, Status::kInvalidArgument, "early_stopping");
  expect_error([] { beam({{"no_repeat_ngram", "-1"}}); }, Status::kInvalidArgument, "no_repeat_ngram");
  expect_error([] { beam({{"length_penalty", "x"}}); }, Status::kInvalidArgument, "length_penalty");
  expect_error([] { beam({{"beams", "4"}}); }, Status::kInvalidArgument, "beams");
  CHECK(std::string(beam({{"width", "2"}}).name()) == "beam");
}

TEST_CASE("beam: width 1 is greedy decoding", "[beam]") {
  for (const std::string fixture : {"tiny-gqa-tied", "tiny-llama3-rope"}) {
    Golden g = load_golden(fixture);
    LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
    auto cache = make_cache("contiguous", model.cache_shape());
    GenerationOptions o;
    o.max_new_tokens = 16;
    o.eos_ids = {2};
    const auto ref = decode_sampled(model, *cache, {g.prompt}, o);
    const auto got = beam({{"width", "1"}}).decode(model, *cache, {g.prompt}, o, {});
    CHECK(got[0].tokens == ref[0].tokens);
    CHECK(got[0].finish == ref[0].finish);
    CHECK(cache->bytes_reserved() == 0);
  }
}

TEST_CASE("beam: width = vocabulary finds the exhaustive best two tokens", "[beam]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  const std::vector<int64_t> prompt(g.prompt.begin(), g.prompt.begin() + 8);
  const int64_t vocab = model.config().vocab_size;
  // Brute force over every pair (v, u).
  const std::vector<double> first = next_logp(model, prompt);
  double best = -1e300;
  std::vector<int64_t> best_pair;
  for (int64_t v = 0; v < vocab; ++v) {
    std::vector<int64_t> seq = prompt;
    seq.push_back(v);
    const std::vector<double> second = next_logp(model, seq);
    for (int64_t u = 0; u < vocab; ++u) {
      const double s = first[static_cast<size_t>(v)] + second[static_cast<size_t>(u)];
      if (s > best) {
        best = s;
        best_pair = {v, u};
      }
    }
  }
  auto cache = make_cache("contiguous", model.cache_shape());
  GenerationOptions o;
  o.max_new_tokens = 2;
  const auto got = beam({{"width", std::to_string(vocab)}, {"n_best", "3"}})
                       .decode(model, *cache, {prompt}, o, {});
  CHECK(got[0].tokens == best_pair);
  REQUIRE(got[0].n_best.size() == 3);
  CHECK(got[0].n_best[0].score == Approx(best / 2).epsilon(1e-6));  // divided by length 2
  CHECK(got[0].n_best[0].score >= got[0].n_best[1].score);
  CHECK(got[0].n_best[1].score >= got[0].n_best[2].score);
  CHECK(cache->bytes_reserved() == 0);
}

TEST_CASE("beam: width 4 equals a from-scratch reference, on every cache", "[beam]") {
  for (const std::string fixture : {"tiny-gqa-tied", "tiny-llama3-rope"}) {
    Golden g = load_golden(fixture);
    LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
    const std::vector<int64_t> prompt(g.prompt.begin(), g.prompt.begin() + 12);
    const auto ref = reference_beam(model, prompt, 4, 6);
    for (const std::string cache_name : {"contiguous", "paged", "paged-prefix", "none"}) {
      INFO(fixture << " " << cache_name);
      auto cache = make_cache(cache_name, model.cache_shape());
      GenerationOptions o;
      o.max_new_tokens = 6;
      // Length penalty 0: scores are plain sums, as in the reference.
      const auto got = beam({{"width", "4"}, {"n_best", "4"}, {"length_penalty", "0"}})
                           .decode(model, *cache, {prompt, prompt}, o, {});
      for (const auto& r : got) {
        CHECK(r.tokens == ref[0].first);
        REQUIRE(r.n_best.size() == 4);
        for (size_t k = 0; k < 4; ++k) {
          CHECK(r.n_best[k].tokens == ref[k].first);
          CHECK(r.n_best[k].score == Approx(ref[k].second).epsilon(1e-5));
        }
      }
      CHECK(cache->bytes_reserved() == 0);
    }
  }
}

TEST_CASE("beam: EOS, is_complete, no_repeat_ngram and streaming", "[beam]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  auto cache = make_cache("contiguous", model.cache_shape());
  const std::vector<int64_t> prompt = {5, 6, 7, 5, 6, 7, 5, 6};
  GenerationOptions o;
  o.max_new_tokens = 12;
  const auto free_run = beam({{"width", "3"}}).decode(model, *cache, {prompt}, o, {})[0];
  REQUIRE(free_run.tokens.size() == 12);
  // Any of the best beam's tokens as EOS ends the search no later.
  o.eos_ids = {free_run.tokens[3]};
  const auto eos_run = beam({{"width", "3"}}).decode(model, *cache, {prompt}, o, {})[0];
  CHECK(eos_run.tokens.size() <= 12);
  if (eos_run.finish == FinishReason::kEos) CHECK(eos_run.tokens.back() == free_run.tokens[3]);
  o.eos_ids.clear();
  // A completion rule ends candidates as EOS would.
  o.is_complete = [](const std::vector<int64_t>& t) { return t.size() >= 5; };
  const auto complete = beam({{"width", "3"}}).decode(model, *cache, {prompt}, o, {})[0];
  CHECK(complete.tokens.size() == 5);
  CHECK(complete.finish == FinishReason::kStopped);
  o.is_complete = nullptr;
  // No bigram of prompt + output occurs twice once its second token is new.
  const auto norep = beam({{"width", "3"}, {"no_repeat_ngram", "2"}}).decode(model, *cache, {prompt}, o, {})[0];
  std::vector<int64_t> seq = prompt;
  std::set<std::pair<int64_t, int64_t>> seen;
  for (size_t i = 0; i + 1 < seq.size(); ++i) seen.insert({seq[i], seq[i + 1]});
  for (int64_t t : norep.tokens) {
    CHECK(seen.insert({seq.back(), t}).second);
    seq.push_back(t);
  }
  // The chosen tokens are streamed once search ends.
  std::vector<int64_t> streamed;
  const auto r = beam({{"width", "2"}}).decode(model, *cache, {prompt}, o, [&](size_t i, int64_t t) {
    CHECK(i == 0);
    streamed.push_back(t);
    return true;
  })[0];
  CHECK(streamed == r.tokens);
  CHECK(cache->bytes_reserved() == 0);
}

TEST_CASE("beam: the engine's beam decoder writes a clean headline", "[beam][engine][smollm2]") {
  const std::string path = udaci_test::default_model_gguf();
  if (path.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  EngineConfig c;
  c.model_path = path;
  c.decoder = "beam";
  c.decoder_options = StrategyOptions(std::map<std::string, std::string>{{"width", "4"}});
  HeadlineEngine e(c);
  HeadlineOptions o;
  o.max_new_tokens = 24;
  const auto r = e.generate({"The city council voted on Monday to expand the bike lane network across "
                             "downtown, adding 20 miles of protected lanes by 2025."},
                            o);
  CHECK(!r[0].headline.empty());
  CHECK(r[0].headline.find('\n') == std::string::npos);
  CHECK(r[0].new_ids.size() <= 24);
  CHECK(e.cache_bytes() == 0);
}
