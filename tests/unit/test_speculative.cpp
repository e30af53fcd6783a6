// Speculative decoding (decode/speculative.hpp): greedy output identical to
// plain greedy decoding on the golden fixtures with every kind of draft
// (n-gram lookup, the model itself, a quantised copy, a draft that is always
// wrong) and every cache, the cache released after each request, the
// rejection rule keeping the target's sampling distribution (statistically),
// option errors, and the engine's speculative decoder on the default model.
#include "udaci_catch.hpp"

#include <map>
#include <random>

#include "decode/generate.hpp"
#include "decode/ngram_history.hpp"
#include "decode/speculative.hpp"
#include "engine/headline_engine.hpp"
#include "engine/registry.hpp"
#include "model/llama_model.hpp"
#include "test_util.hpp"

using namespace udaci;
using udaci_test::make_cache;

using udaci_test::Golden;
using udaci_test::load_golden;

namespace {

// Proposes k random tokens: almost never what the target would choose.
class WrongDraft final : public DraftSource {
 public:
  explicit WrongDraft(int64_t vocab) : vocab_(vocab) {}
  std::vector<int64_t> propose(const std::vector<int64_t>&, int64_t k,
                               std::vector<std::vector<double>>* probs) override {
    if (probs) probs->clear();
    std::vector<int64_t> out;
    for (int64_t i = 0; i < k; ++i) out.push_back(static_cast<int64_t>(rng_() % vocab_));
    return out;
  }

 private:
  int64_t vocab_;
  std::mt19937_64 rng_{5};
};

// Prompts with repeated n-grams, so that prompt lookup has something to find.
std::vector<std::vector<int64_t>> lookup_prompts(const Golden& g) {
  std::vector<int64_t> rep(g.prompt.begin(), g.prompt.begin() + 12);
  std::vector<int64_t> twice = rep;
  twice.insert(twice.end(), rep.begin(), rep.end());
  return {g.prompt, twice, {5, 6, 7, 5, 6, 7, 5, 6}};
}

std::vector<std::vector<int64_t>> token_lists(const std::vector<GenerationResult>& rs) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& r : rs) out.push_back(r.tokens);
  return out;
}

}  // namespace

TEST_CASE("speculative: options are checked", "[speculative]") {
  using udaci_test::expect_error;
  auto parse = [](std::map<std::string, std::string> m) { return SpeculativeOptions::from(StrategyOptions(m)); };
  expect_error([&] { parse({{"draft", "oracle"}}); }, Status::kInvalidArgument, "draft");
  expect_error([&] { parse({{"draft", "draft-model"}}); }, Status::kInvalidArgument, "draft_model");
  expect_error([&] { parse({{"k", "0"}}); }, Status::kInvalidArgument, "k");
  expect_error([&] { parse({{"k", "9"}}); }, Status::kInvalidArgument, "k");
  expect_error([&] { parse({{"k_max", "100"}}); }, Status::kInvalidArgument, "k_max");
  expect_error([&] { parse({{"ngram_min", "0"}}); }, Status::kInvalidArgument, "ngram_min");
  expect_error([&] { parse({{"adaptive", "yes"}}); }, Status::kInvalidArgument, "adaptive");
  expect_error([&] { parse({{"reuse_prompt_kv", "2"}}); }, Status::kInvalidArgument, "reuse_prompt_kv");
  expect_error([&] { parse({{"draft", "draft-model"}, {"draft_model", "x.gguf"}, {"reuse_prompt_kv", "1"}}); },
               Status::kInvalidArgument, "reuse_prompt_kv");
  CHECK(parse({{"draft", "self-int4"}}).reuse_prompt_kv);
  CHECK(!parse({{"draft", "self-int4"}, {"reuse_prompt_kv", "0"}}).reuse_prompt_kv);
  CHECK(parse({}).batch_drafts);
  CHECK(!parse({{"batch_drafts", "0"}}).batch_drafts);
  expect_error([&] { parse({{"batch_drafts", "2"}}); }, Status::kInvalidArgument, "batch_drafts");
  CHECK(!parse({{"draft", "prompt-lookup"}}).reuse_prompt_kv);
  expect_error([&] { parse({{"colour", "red"}}); }, Status::kInvalidArgument, "colour");
  const SpeculativeOptions o = parse({{"k", "6"}, {"k_max", "10"}, {"adaptive", "0"}});
  CHECK(o.k == 6);
  CHECK(o.k_max == 10);
  CHECK(!o.adaptive);
  CHECK(o.draft == "prompt-lookup");
  CHECK(o.history == 16384);
  CHECK(parse({{"history", "0"}}).history == 0);
  expect_error([&] { parse({{"history", "-1"}}); }, Status::kInvalidArgument, "history");
  expect_error([&] { parse({{"history", "99999999"}}); }, Status::kInvalidArgument, "history");
}

TEST_CASE("speculative: the n-gram history drafts the most frequent continuation, within its capacity",
          "[speculative]") {
  using udaci_test::expect_error;
  expect_error([] { NgramHistory(0, 4); }, Status::kInvalidArgument, "capacity");
  expect_error([] { NgramHistory(10, 9); }, Status::kInvalidArgument, "n_max");
  NgramHistory h(1000, 3);
  CHECK(h.draft({1, 2}, 4, 1).empty());  // nothing seen yet
  // Three outputs after the same prompt end (0): "5 6 7", "5 6 8", "5 6 7".
  for (const std::vector<int64_t>& out : {std::vector<int64_t>{5, 6, 7}, {5, 6, 8}, {5, 6, 7}}) {
    std::vector<int64_t> seq = {9, 0};
    seq.insert(seq.end(), out.begin(), out.end());
    h.observe(seq, static_cast<int64_t>(out.size()));  // the prompt's own tokens are not counted
  }
  CHECK(h.tokens() == 9);
  // After "0": 5, then 6, then 7 (seen twice, 8 once); nothing follows 7.
  CHECK(h.draft({3, 0}, 4, 1) == std::vector<int64_t>{5, 6, 7});
  CHECK(h.draft({3, 0}, 2, 1) == std::vector<int64_t>{5, 6});
  CHECK(h.draft({3, 0}, 0, 1).empty());
  // The longest context decides: "8 ... " never continued, but after "5 6"
  // the longer match of "0 5 6" is the same; a context whose 2-gram is
  // unknown falls back to its last token unless n_min forbids it.
  CHECK(h.draft({4, 6}, 1, 1) == std::vector<int64_t>{7});
  CHECK(h.draft({4, 6}, 1, 2).empty());
  // Equal counts: the smaller id, whatever the order seen.
  NgramHistory tie(100, 2);
  tie.observe({1, 30}, 1);
  tie.observe({1, 20}, 1);
  CHECK(tie.draft({1}, 1, 1) == std::vector<int64_t>{20});
  // Capacity: the n-grams of the oldest tokens are subtracted again.
  NgramHistory small(4, 2);
  small.observe({1, 2, 3, 4, 5}, 4);  // 2, 3, 4, 5 after their contexts
  CHECK(small.tokens() == 4);
  CHECK(small.draft({1}, 1, 1) == std::vector<int64_t>{2});
  small.observe({5, 6}, 1);  // pushes out "2 after 1"
  CHECK(small.tokens() == 4);
  CHECK(small.draft({1}, 1, 1).empty());
  CHECK(small.draft({4}, 2, 1) == std::vector<int64_t>{5, 6});
  const int64_t keys = small.keys();
  for (int64_t t = 10; t < 60; ++t) small.observe({t, t + 1}, 1);
  CHECK(small.tokens() == 4);
  CHECK(small.keys() <= keys + 4);  // bounded: 4 tokens, at most 2 n-grams each
}

TEST_CASE("speculative: prompt lookup with a history prefers the context's longer matches", "[speculative]") {
  auto h = std::make_shared<NgramHistory>(1000, 4);
  auto d = make_prompt_lookup_draft(3, 1, h);
  std::vector<std::vector<double>> q;
  // Nothing in the context or the history.
  CHECK(d->propose({1, 2, 3}, 4, &q).empty());
  // What the target keeps is learnt: 7 8 9 after the prompt's end (3).
  d->observe({1, 2, 3}, {7, 8});
  d->observe({1, 2, 3, 7, 8}, {9});
  CHECK(h->tokens() == 3);
  CHECK(d->propose({4, 5, 3}, 4, &q) == std::vector<int64_t>{7, 8, 9});
  CHECK(q.empty());
  // A 2-token match in the context wins over the history ("5 3" -> 6).
  CHECK(d->propose({5, 3, 6, 4, 5, 3}, 2, &q) == std::vector<int64_t>{6, 4});
  // A 1-token context match loses to the history's longer context ...
  CHECK(d->propose({3, 1, 7, 3}, 1, &q) == std::vector<int64_t>{7});
  CHECK(d->propose({2, 3, 1, 7}, 1, &q) == std::vector<int64_t>{8});
  // ... and serves when the history knows nothing.
  CHECK(d->propose({11, 12, 13, 11}, 2, &q) == std::vector<int64_t>{12, 13});
  // Without a history the sequence is the only source, as before.
  auto plain = make_prompt_lookup_draft(3, 1);
  plain->observe({1, 2, 3}, {7, 8});
  CHECK(plain->propose({4, 5, 3}, 4, &q).empty());
}

TEST_CASE("speculative: prompt lookup proposes what followed the latest match", "[speculative]") {
  auto d = make_prompt_lookup_draft(3, 1);
  std::vector<std::vector<double>> q;
  // "1 2" occurred before, followed by 3 4 1.
  CHECK(d->propose({1, 2, 3, 4, 1, 2}, 3, &q) == std::vector<int64_t>{3, 4, 1});
  CHECK(q.empty());  // one-hot drafts
  // The longest suffix wins: "7 1 2" matches at 4, not "1 2" at 0.
  CHECK(d->propose({1, 2, 9, 9, 7, 1, 2, 5, 7, 1, 2}, 2, &q) == std::vector<int64_t>{5, 7});
  // Up to the end of the text only.
  CHECK(d->propose({4, 8, 4}, 5, &q) == std::vector<int64_t>{8, 4});
  CHECK(d->propose({1, 2, 3}, 4, &q).empty());
  CHECK(d->propose({1}, 4, &q).empty());
}

TEST_CASE("speculative: greedy output equals plain greedy with every draft and cache", "[speculative]") {
  for (const std::string fixture : {"tiny-gqa-tied", "tiny-llama3-rope"}) {
    Golden g = load_golden(fixture);
    LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
    const auto prompts = lookup_prompts(g);
    GenerationOptions opt;
    opt.max_new_tokens = 24;
    opt.eos_ids = {2};
    auto ref_cache = make_cache("contiguous", model.cache_shape());
    const auto ref = token_lists(decode_sampled(model, *ref_cache, prompts, opt));
    REQUIRE(ref[0] == std::vector<int64_t>(g.greedy.begin(), g.greedy.begin() + ref[0].size()));

    const int64_t vocab = model.config().vocab_size;
    std::map<std::string, SpeculativeDecoder::DraftFactory> drafts = {
        {"prompt-lookup", [](const SamplingOptions&) { return make_prompt_lookup_draft(3, 1); }},
        // The decoder's own: lookup with the n-gram history its sequences share.
        {"prompt-lookup-history", {}},
        {"self", [&model](const SamplingOptions& s) { return make_model_draft(model, s); }},
        {"self-reuse", [&model](const SamplingOptions& s) { return make_model_draft(model, s, true); }},
        {"wrong", [vocab](const SamplingOptions&) { return std::make_unique<WrongDraft>(vocab); }},
    };
    for (const auto& [draft_name, factory] : drafts) {
      for (const std::string cache_name : {"contiguous", "paged", "paged-prefix", "none"}) {
        for (const std::string k : {"1", "4"}) {
          INFO(fixture << " draft " << draft_name << " cache " << cache_name << " k " << k);
          SpeculativeOptions so = SpeculativeOptions::from(StrategyOptions(std::map<std::string, std::string>{{"k", k}}));
          SpeculativeDecoder dec(so, factory);
          auto cache = make_cache(cache_name, model.cache_shape());
          CHECK(token_lists(dec.decode(model, *cache, prompts, opt, {})) == ref);
          CHECK(cache->bytes_reserved() == 0);
          const DecoderStats st = dec.stats();
          CHECK(st.rounds > 0);
          CHECK(st.accepted <= st.drafted);
          if (draft_name.rfind("self", 0) == 0) CHECK(st.acceptance_rate() == Approx(1.0));
          if (draft_name == "wrong") CHECK(st.acceptance_rate() < 0.2);
          int64_t prompt_tokens = 0;
          for (const auto& p : prompts) prompt_tokens += static_cast<int64_t>(p.size());
          if (draft_name == "self") {
            // The draft prefilled every prompt itself.
            CHECK(st.draft_reused == 0);
            CHECK(st.draft_computed >= prompt_tokens);
          }
          if (draft_name == "self-reuse") {
            // It took every prompt's K/V from the target (none when the target
            // keeps no K/V) and computed only the tokens after it.
            CHECK(st.draft_reused == (cache_name == "none" ? 0 : prompt_tokens));
            if (cache_name != "none") CHECK(st.draft_computed < prompt_tokens);
          }
        }
      }
    }
  }
}

TEST_CASE("speculative: callbacks, EOS and max_new_tokens end a sequence as in plain decoding",
          "[speculative]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  auto cache = make_cache("contiguous", model.cache_shape());
  const auto prompts = lookup_prompts(g);
  SpeculativeDecoder dec(SpeculativeOptions{}, [&model](const SamplingOptions& s) { return make_model_draft(model, s); });
  for (int64_t n : {1, 2, 5, 9}) {
    GenerationOptions opt;
    opt.max_new_tokens = n;
    auto plain = decode_sampled(model, *cache, prompts, opt);
    auto spec = dec.decode(model, *cache, prompts, opt, {});
    for (size_t i = 0; i < prompts.size(); ++i) {
      CHECK(spec[i].tokens == plain[i].tokens);
      CHECK(spec[i].finish == plain[i].finish);
    }
  }
  // Stop after the third token, and an EOS id that occurs in the output.
  GenerationOptions opt;
  opt.max_new_tokens = 20;
  const auto full = decode_sampled(model, *cache, {prompts[0]}, opt)[0].tokens;
  int seen = 0;
  auto spec = dec.decode(model, *cache, {prompts[0]}, opt, [&](size_t, int64_t) { return ++seen < 3; });
  CHECK(spec[0].finish == FinishReason::kStopped);
  CHECK(spec[0].tokens == std::vector<int64_t>(full.begin(), full.begin() + 3));
  opt.eos_ids = {full[4]};
  auto plain_eos = decode_sampled(model, *cache, {prompts[0]}, opt)[0];
  auto spec_eos = dec.decode(model, *cache, {prompts[0]}, opt, {})[0];
  CHECK(spec_eos.finish == FinishReason::kEos);
  CHECK(spec_eos.tokens == plain_eos.tokens);
  CHECK(cache->bytes_reserved() == 0);
}

TEST_CASE("speculative: with sampling, the rejection rule keeps the target's distribution",
          "[speculative]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  auto cache = make_cache("contiguous", model.cache_shape());
  const std::vector<int64_t> prompt(g.prompt.begin(), g.prompt.begin() + 10);
  SamplingOptions target;
  target.temperature = 0.8f;
  target.top_k = 4;
  SamplingOptions flat = target;  // the draft: a flatter distribution than the target's
  flat.temperature = 3.0f;
  flat.top_k = 8;
  SpeculativeDecoder dec(SpeculativeOptions::from(StrategyOptions(std::map<std::string, std::string>{{"k", "3"}, {"adaptive", "0"}})),
                         [&model, flat](const SamplingOptions& s) {
                           SamplingOptions d = flat;
                           d.seed = s.seed + 1000003;
                           return make_model_draft(model, d);
                         });
  const int runs = 3000;
  // Empirical distribution of the (second, third) generated tokens.
  auto histogram = [&](const std::function<std::vector<int64_t>(uint64_t)>& run) {
    std::map<std::pair<int64_t, int64_t>, double> h;
    for (int s = 0; s < runs; ++s) {
      const auto t = run(static_cast<uint64_t>(s));
      REQUIRE(t.size() == 3);
      h[{t[1], t[2]}] += 1.0 / runs;
    }
    return h;
  };
  auto tv = [](const std::map<std::pair<int64_t, int64_t>, double>& a,
               const std::map<std::pair<int64_t, int64_t>, double>& b) {
    std::map<std::pair<int64_t, int64_t>, double> d = a;
    for (const auto& kv : b) d[kv.first] -= kv.second;
    double sum = 0;
    for (const auto& kv : d) sum += std::abs(kv.second);
    return sum / 2;
  };
  auto plain_with = [&](const SamplingOptions& base) {
    return [&, base](uint64_t seed) {
      GenerationOptions o;
      o.max_new_tokens = 3;
      o.sampling = base;
      o.sampling.seed = seed;
      return decode_sampled(model, *cache, {prompt}, o)[0].tokens;
    };
  };
  const auto plain = histogram(plain_with(target));
  const auto plain_again = histogram([&](uint64_t seed) { return plain_with(target)(seed + runs); });
  const auto spec = histogram([&](uint64_t seed) {
    GenerationOptions o;
    o.max_new_tokens = 3;
    o.sampling = target;
    o.sampling.seed = seed + 7 * runs;
    return dec.decode(model, *cache, {prompt}, o, {})[0].tokens;
  });
  const auto draft_like = histogram(plain_with(flat));
  const double noise = tv(plain, plain_again);  // two samples of the same distribution
  INFO("TV plain/plain " << noise << ", plain/speculative " << tv(plain, spec) << ", plain/draft "
                         << tv(plain, draft_like) << ", acceptance " << dec.stats().acceptance_rate());
  CHECK(tv(plain, spec) < noise + 0.04);
  CHECK(tv(plain, draft_like) > 3 * (noise + 0.04));  // the test could tell the draft apart
  CHECK(dec.stats().acceptance_rate() > 0.05);
  CHECK(dec.stats().acceptance_rate() < 0.95);  // both branches of the rule ran
}

TEST_CASE("speculative: the engine's decoder on the default model matches greedy headlines",
          "[speculative][engine][smollm2]") {
  const std::string path = udaci_test::default_model_gguf();
  if (path.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const std::vector<std::string> summaries = {
      "The city council voted on Monday to expand the bike lane network across downtown, adding 20 "
      "miles of protected lanes by 2025.",
      "Scientists found water ice in a crater near the moon's south pole, NASA said on Thursday.",
  };
  HeadlineOptions o;
  o.max_new_tokens = 24;
  EngineConfig base;
  base.model_path = path;
  base.set_recipe("no-quant+greedy");  // fp32: verifying k rows at once equals k single steps
  HeadlineEngine greedy(base);
  const auto ref = greedy.generate(summaries, o);
  for (const std::string draft : {"prompt-lookup", "self-int4"}) {
    INFO(draft);
    EngineConfig c = base;
    c.decoder = "speculative";
    // follow_load=0: always draft, whatever the step-cost model measures (the
    // two summaries share the batch; adaptive drafting is tested in
    // test_batch_decoding.cpp and does not change greedy output).
    c.decoder_options =
        StrategyOptions(std::map<std::string, std::string>{{"draft", draft}, {"follow_load", "0"}});
    HeadlineEngine spec(c);
    const auto got = spec.generate(summaries, o);
    for (size_t i = 0; i < summaries.size(); ++i) CHECK(got[i].new_ids == ref[i].new_ids);
    const DecoderStats st = spec.decoder_stats();
    CHECK(st.rounds > 0);
    CHECK(st.accepted > 0);
    CHECK(spec.cache_bytes() == 0);
  }
  EngineConfig bad = base;
  bad.decoder = "speculative";
  bad.decoder_options = StrategyOptions(std::map<std::string, std::string>{{"draft", "draft-model"}, {"draft_model", "/nonexistent/draft.gguf"}});
  CHECK(udaci_test::status_of([&] { HeadlineEngine e(bad); }) == Status::kNotFound);
}
