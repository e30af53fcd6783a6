// HeadlineEngine on the default model: prompt tokens, greedy determinism,
// clean single-line headlines, and errors for bad summaries.
#include "udaci_catch.hpp"

#include "core/error.hpp"
#include "engine/headline_engine.hpp"
#include "test_util.hpp"

using namespace udaci;

namespace {

// The fp32 reference: the submit() test compares headlines decoded in
// batches of different composition, which the as-stored Q4_1 kernels do not
// compute identically (issue #22).
const HeadlineEngine* engine() { return udaci_test::default_engine_with("no-quant"); }

const char* kSummary =
    "The city council voted on Monday to expand the bike lane network across downtown, "
    "adding 20 miles of protected lanes by 2025.";

// Loops under greedy decoding on the fp32 default model ("The Office of
// Inspector General (OIG) has confirmed that the Office of ...").
const char* kLoopingSummary =
    "Despite entering false information, their work wasn't redone fully and in some cases the census takers "
    "received bonuses, the Office of Inspector General reported.";

}  // namespace

TEST_CASE("engine: SmolLM2 prompt is chat-templated and tokenized with specials", "[unit][engine][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  std::vector<int32_t> ids = e->prompt_ids(kSummary);
  const int32_t im_start = e->tokenizer().token_to_id("<|im_start|>");
  REQUIRE(im_start >= 0);
  CHECK(ids.front() == im_start);
  CHECK(std::count(ids.begin(), ids.end(), im_start) == 3);  // system, user, assistant
  const std::string text = e->tokenizer().decode(ids);
  CHECK(text.find("Write one concise headline") != std::string::npos);
  CHECK(text.substr(text.size() - 22) == "<|im_start|>assistant\n");
}

TEST_CASE("engine: greedy headlines are deterministic single lines", "[unit][engine][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  HeadlineOptions o;
  o.max_new_tokens = 24;
  auto a = e->generate({kSummary}, o);
  auto b = e->generate({kSummary}, o);
  REQUIRE(a.size() == 1);
  CHECK(a[0].headline == b[0].headline);
  CHECK(a[0].new_ids == b[0].new_ids);
  CHECK(!a[0].headline.empty());
  CHECK(a[0].headline.find('\n') == std::string::npos);
  CHECK(a[0].new_ids.size() <= 24);
  // The newline stop ends generation once the first line is complete.
  HeadlineOptions no_stop = o;
  no_stop.stop_at_newline = false;
  auto c = e->generate({kSummary}, no_stop);
  CHECK(c[0].headline == a[0].headline);
  CHECK(c[0].new_ids.size() >= a[0].new_ids.size());
}

TEST_CASE("engine: bad summaries are rejected before any work", "[unit][engine][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  HeadlineOptions o;
  CHECK_THROWS_AS(e->generate({"   "}, o), Error);
  CHECK_THROWS_AS(e->generate({std::string("bad \xff utf8")}, o), Error);
  CHECK_THROWS_AS(e->generate({std::string(20000, 'a')}, o), Error);
}

TEST_CASE("engine: streaming pieces add up to the text, and cancellation stops", "[unit][engine][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  HeadlineOptions o;
  o.max_new_tokens = 16;
  o.stop_at_newline = false;
  std::string streamed;
  o.on_text = [&](size_t i, const std::string& piece) {
    CHECK(i == 0);
    streamed += piece;
    return true;
  };
  auto full = e->generate({kSummary}, o);
  CHECK(streamed == full[0].raw_text);
  CHECK(full[0].finish != FinishReason::kCancelled);

  int pieces = 0;
  o.on_text = [&](size_t, const std::string&) { return ++pieces < 3; };
  auto cut = e->generate({kSummary}, o);
  CHECK(cut[0].finish == FinishReason::kCancelled);
  CHECK(cut[0].new_ids.size() < full[0].new_ids.size());
}

TEST_CASE("engine: submit() runs asynchronously and can be cancelled", "[unit][engine][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  HeadlineOptions o;
  o.max_new_tokens = 20;
  auto sync = e->generate({kSummary, "Storms closed schools across the state on Friday."}, o);
  PendingHeadlines a = e->submit({kSummary, "Storms closed schools across the state on Friday."}, o);
  PendingHeadlines b = e->submit({kSummary}, o);
  auto ra = a.get();
  auto rb = b.get();
  REQUIRE(ra.size() == 2);
  CHECK(ra[0].headline == sync[0].headline);
  CHECK(ra[1].headline == sync[1].headline);
  CHECK(rb[0].headline == sync[0].headline);
  CHECK(a.ready());
  CHECK_THROWS_AS(a.get(), Error);

  // Cancelled from the first streamed piece on: the request ends early.
  HeadlineOptions slow = o;
  slow.stop_at_newline = false;
  slow.max_new_tokens = 64;
  std::atomic<int> pieces{0};
  slow.on_text = [&](size_t, const std::string&) {
    ++pieces;
    return true;
  };
  PendingHeadlines c = e->submit({kSummary}, slow);
  c.cancel();
  auto rc = c.get();
  CHECK(rc[0].finish == FinishReason::kCancelled);
  CHECK(rc[0].new_ids.size() <= 1);
  CHECK(pieces.load() == 0);

  PendingHeadlines bad = e->submit({"   "}, o);
  CHECK_THROWS_AS(bad.get(), Error);
}

TEST_CASE("engine: the repetition stop cuts a looping sequence before its repeat and changes nothing else",
          "[unit][engine][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  // The first two loop under greedy decoding (news sample articles: "...:
  // Pro-Bait: Pro-Bait: Pro-Bait", "The Office of Inspector General (OIG)
  // has confirmed that the Office of ..."); the others do not.
  const std::vector<std::string> summaries = {
      "Conservative activist Virginia Thomas, the wife of Supreme Court Justice Clarence Thomas, has agreed to "
      "participate in a voluntary interview with the House panel investigating the Jan. 6 insurrection.",
      kLoopingSummary,
      kSummary,
      "One man's claims that he scammed people on the platform caused several popular streamers to consider a "
      "Twitch boycott.",
      "Scientists have found signs of liquid water beneath the south pole of Mars, raising hopes of finding life.",
  };
  HeadlineOptions on;  // the default: the engine's, on
  CHECK(on.repetition_stop == HeadlineOptions::kEngineDefault);
  const int64_t n = e->config().generation.repetition_stop;
  REQUIRE(n == 8);
  HeadlineOptions off = on;
  off.repetition_stop = 0;
  const auto plain = e->generate(summaries, off);
  const auto cut = e->generate(summaries, on);
  int stops = 0;
  for (size_t i = 0; i < summaries.size(); ++i) {
    INFO("summary " << i << ": " << plain[i].raw_text << " -> " << cut[i].headline);
    const auto& p = plain[i].new_ids;
    const auto& c = cut[i].new_ids;
    // Greedy with the stop is a prefix of greedy without it.
    REQUIRE(c.size() <= p.size());
    CHECK(std::equal(c.begin(), c.end(), p.begin()));
    if (cut[i].finish != FinishReason::kRepetition) {
      CHECK(c == p);
      CHECK(cut[i].finish == plain[i].finish);
      continue;
    }
    ++stops;
    // The n tokens after the cut repeat a run that starts earlier.
    REQUIRE(p.size() >= c.size() + static_cast<size_t>(n));
    const auto run = p.begin() + static_cast<std::ptrdiff_t>(c.size());
    bool earlier = false;
    for (size_t j = 0; j < c.size() && !earlier; ++j)
      earlier = std::equal(run, run + n, p.begin() + static_cast<std::ptrdiff_t>(j));
    CHECK(earlier);
    // The kept part repeats no run of n tokens.
    for (size_t a = 0; a + static_cast<size_t>(n) <= c.size(); ++a)
      for (size_t b = a + 1; b + static_cast<size_t>(n) <= c.size(); ++b)
        CHECK_FALSE(std::equal(c.begin() + static_cast<std::ptrdiff_t>(a),
                               c.begin() + static_cast<std::ptrdiff_t>(a) + n,
                               c.begin() + static_cast<std::ptrdiff_t>(b)));
    CHECK(std::string(finish_reason_name(cut[i].finish)) == "repetition");
    CHECK(!cut[i].headline.empty());
  }
  CHECK(stops >= 2);
  for (int64_t v : {int64_t{-2}, HeadlineOptions::kMaxRepetitionStop + 1}) {
    HeadlineOptions bad = on;
    bad.repetition_stop = v;
    udaci_test::expect_error([&] { e->generate({kSummary}, bad); }, Status::kInvalidArgument, "repetition_stop");
  }
}

TEST_CASE("engine: a request that leaves the repetition stop unset gets its config's", "[unit][engine][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  // Loops under greedy decoding with the default stop of 8 (see above).
  const std::vector<std::string> looping = {
      kLoopingSummary,
      kSummary};
  EngineConfig c = e->config();
  c.generation.repetition_stop = 0;  // off for every request that does not say
  const HeadlineEngine off_engine(c);
  CHECK(off_engine.config().generation.repetition_stop == 0);
  HeadlineOptions unset;
  HeadlineOptions stop0, stop8;
  stop0.repetition_stop = 0;
  stop8.repetition_stop = 8;
  const auto by_config = off_engine.generate(looping, unset);
  const auto plain = e->generate(looping, stop0);
  const auto cut = e->generate(looping, stop8);
  const auto default_cut = e->generate(looping, unset);
  const auto asked = off_engine.generate(looping, stop8);  // a request's own value wins
  bool any_cut = false;
  for (size_t i = 0; i < looping.size(); ++i) {
    INFO("summary " << i);
    CHECK(by_config[i].new_ids == plain[i].new_ids);
    CHECK(by_config[i].finish != FinishReason::kRepetition);
    CHECK(default_cut[i].new_ids == cut[i].new_ids);
    CHECK(asked[i].new_ids == cut[i].new_ids);
    any_cut = any_cut || cut[i].finish == FinishReason::kRepetition;
  }
  CHECK(any_cut);  // the stop changes something, so the equalities above mean something
  // The config's value round-trips through the config file and is checked.
  CHECK(EngineConfig::from_json(c.to_json()).generation.repetition_stop == 0);
  udaci_test::expect_error(
      [] { EngineConfig::from_json(R"({"schema": "udaci-config/1", "generation": {"repetition_stop": 65}})"); },
      Status::kInvalidArgument, "/generation/repetition_stop");
  udaci_test::expect_error(
      [] { EngineConfig::from_json(R"({"schema": "udaci-config/1", "generation": {"stop": 4}})"); },
      Status::kInvalidArgument, "/generation/stop");
}

TEST_CASE("engine: a beam's n best are cut by the repetition stop as its headline is", "[unit][engine][smollm2]") {
  // The default model's beam-4 loops on the first summary ("The Stock Market
  // Fizzled: A Moody Job Report Fizzles: A Moody ..."); the server returns
  // the n best as candidates, the best as the headline: both must be cut.
  const HeadlineEngine* e = udaci_test::default_engine_with("beam{width=4,n_best=3}");
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const std::vector<std::string> summaries = {
      "The stock market fell sharply on Monday after a weak jobs report rattled investors.", kLoopingSummary,
      kSummary};
  HeadlineOptions off;
  off.repetition_stop = 0;
  const auto plain = e->generate(summaries, off);
  const auto cut = e->generate(summaries, HeadlineOptions{});
  const int64_t n = e->config().generation.repetition_stop;
  int cut_candidates = 0;
  for (size_t i = 0; i < summaries.size(); ++i) {
    INFO("summary " << i << ": " << cut[i].headline);
    REQUIRE(cut[i].candidates.size() == 3);
    REQUIRE(plain[i].candidates.size() == 3);
    CHECK(cut[i].candidates[0].headline == cut[i].headline);
    for (size_t k = 0; k < 3; ++k) {
      const HeadlineCandidate& c = cut[i].candidates[k];
      const HeadlineCandidate& whole = plain[i].candidates[k];
      INFO("candidate " << k << ": " << whole.headline << " -> " << c.headline);
      // The same search; the stop only shortens what it reports.
      CHECK(c.score == whole.score);
      REQUIRE(c.new_ids.size() <= whole.new_ids.size());
      CHECK(std::equal(c.new_ids.begin(), c.new_ids.end(), whole.new_ids.begin()));
      CHECK(!c.headline.empty());
      if (c.finish != FinishReason::kRepetition) {
        CHECK(c.new_ids == whole.new_ids);
        continue;
      }
      ++cut_candidates;
      CHECK(c.new_ids.size() < whole.new_ids.size());
      for (size_t a = 0; a + static_cast<size_t>(n) <= c.new_ids.size(); ++a)
        for (size_t b = a + 1; b + static_cast<size_t>(n) <= c.new_ids.size(); ++b)
          CHECK_FALSE(std::equal(c.new_ids.begin() + static_cast<std::ptrdiff_t>(a),
                                 c.new_ids.begin() + static_cast<std::ptrdiff_t>(a) + n,
                                 c.new_ids.begin() + static_cast<std::ptrdiff_t>(b)));
    }
  }
  CHECK(cut_candidates >= 1);
}
