// `udaci tune`'s search (issue #26) on a fake measurement backend: figures
// from a known formula and a fake clock, so that the choice, the budgets,
// the pruning, the Pareto front, the explanations and the cache can be
// checked exactly, and the tuned choice compared with an exhaustive sweep.
#include "udaci_catch.hpp"
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "engine/engine_config.hpp"
#include "eval/headline_quality.hpp"
#include "tune/bench_backend.hpp"
#include "tune/measurement_cache.hpp"
#include "tune/tuner.hpp"
#include "test_util.hpp"

using namespace udaci;
namespace fs = std::filesystem;

namespace {

// Figures from a formula: quantizers differ in weight size, KL and speed;
// batch raises throughput with diminishing returns; spec-lookup helps alone
// and costs in a full batch; a repetition penalty removes repetitive
// headlines and costs a little ROUGE-L. Every measurement advances a fake
// clock by what it would take.
class FakeBackend : public TuneBackend {
 public:
  std::set<std::string> fail_weights;  // weight sets whose build throws
  double noise = 0;                    // relative, deterministic per call
  double one_thread_mb = 0;            // added to the peak of one-thread runs (memory noise)
  int weights_calls = 0, run_calls = 0;
  double clock = 0;

  static double weight_mb(const TuneCandidate& c) {
    static const std::map<std::string, double> q = {
        {"as-stored", 80}, {"no-quant", 540}, {"int8", 150}, {"int4", 95}, {"nf4", 95}};
    return q.at(c.quantizer) * (c.pruner == "prune-2of4" ? 0.6 : 1.0);
  }
  static double kld(const TuneCandidate& c) {
    static const std::map<std::string, double> q = {
        {"as-stored", 0.05}, {"no-quant", 0.0}, {"int8", 0.01}, {"int4", 0.09}, {"nf4", 0.07}};
    return q.at(c.quantizer) + (c.pruner == "prune-2of4" ? 0.6 : 0.0);
  }
  // The true throughput (what an exhaustive sweep would find).
  static double true_hps(const TuneCandidate& c) {
    static const std::map<std::string, double> q = {
        {"as-stored", 4.0}, {"no-quant", 1.4}, {"int8", 3.0}, {"int4", 3.6}, {"nf4", 3.2}};
    double h = q.at(c.quantizer) * std::pow(static_cast<double>(c.batch), 0.55);
    if (c.decoder == "spec-lookup") h *= c.batch <= 2 ? 1.15 : 0.9;
    if (c.cache == "paged-prefix") h *= 1.04;
    h *= std::pow(static_cast<double>(c.threads) / 2.0, 0.8);
    if (c.repetition_penalty != 1.0) h *= 0.98;
    // The stop's n-gram check costs a little here (on the real engine it
    // saves the tokens of a loop), so only the quality floor makes it win.
    if (c.repetition_stop > 0) h *= 0.99;
    return h;
  }
  double rouge_delta(const TuneCandidate& c) const {
    return -0.05 * kld(c) - (c.repetition_penalty != 1.0 ? 0.004 : 0.0);
  }

  WeightsFigures weights(const TuneCandidate& c) override {
    ++weights_calls;
    clock += 4;
    if (fail_weights.count(c.weights())) fail(Status::kBadModelFile, "weights {} refuse to build", c.weights());
    return WeightsFigures{weight_mb(c), kld(c), 1.0 - kld(c), 4};
  }

  RunFigures run(const TuneCandidate& c, size_t samples) override {
    ++run_calls;
    const double wobble = 1.0 + noise * std::sin(static_cast<double>(run_calls) * 1.7);
    RunFigures f;
    f.samples = samples;
    f.headlines_per_s = true_hps(c) * wobble;
    f.latency_p95_ms = 1000.0 * static_cast<double>(c.batch) / f.headlines_per_s * 1.3;
    f.weight_mb = weight_mb(c);
    f.peak_rss_mb = f.weight_mb + 120 + 6.0 * static_cast<double>(c.batch) + (c.threads == 1 ? one_thread_mb : 0);
    const double degenerate = c.repetition_penalty != 1.0 ? 0.02 : c.repetition_stop > 0 ? 0.07 : 0.12;
    double rsum = 0;
    size_t deg = 0;
    for (size_t i = 0; i < samples; ++i) {
      const double base = 0.2 + 0.1 * std::sin(static_cast<double>(i) * 2.3);
      RunItem it{static_cast<int64_t>(i), base + rouge_delta(c) + 0.01 * std::cos(static_cast<double>(i)),
                 std::fmod(static_cast<double>(i) * 0.618, 1.0) < degenerate};
      rsum += it.rougeL;
      deg += it.degenerate;
      f.items.push_back(it);
    }
    f.rougeL = rsum / static_cast<double>(samples);
    f.degenerate_share = static_cast<double>(deg) / static_cast<double>(samples);
    f.seconds = 3.0 + static_cast<double>(samples) / f.headlines_per_s;
    clock += f.seconds;
    return f;
  }
  double elapsed_s() const override { return clock; }
};

TuneSpec server_spec() {
  TuneSpec s = tune_preset(TuneScenario::kServer, 2);
  s.workload.input = "news.jsonl";
  s.workload.samples = 50;
  s.workload.short_samples = 8;
  s.budget_s = 600;
  return s;
}

const CandidateReport& chosen_of(const TuneResult& r) {
  REQUIRE(r.chosen.has_value());
  return r.candidates[*r.chosen];
}

// Every budget the chosen candidate's full run is held to.
void check_meets(const TuneSpec& s, const TuneResult& r) {
  const CandidateReport& c = chosen_of(r);
  REQUIRE(c.full_run.has_value());
  const TuneBudgets& b = s.budgets;
  if (b.max_memory_mb > 0) CHECK(c.full_run->peak_rss_mb <= b.max_memory_mb);
  if (b.max_latency_p95_ms > 0) CHECK(c.full_run->latency_p95_ms <= b.max_latency_p95_ms);
  if (b.min_headlines_per_s > 0) CHECK(c.full_run->headlines_per_s >= b.min_headlines_per_s);
  if (b.max_kld >= 0) CHECK(c.weights->mean_kld <= b.max_kld);
  if (b.max_rouge_drop >= 0) {
    REQUIRE(c.rouge_delta.has_value());
    CHECK((*c.rouge_delta >= -b.max_rouge_drop || *c.rouge_delta_high >= 0));
  }
  CHECK(c.full_run->degenerate_share <= r.max_degenerate_share);
  CHECK(c.misses.empty());
  CHECK(c.verdict == TuneVerdict::kChosen);
}

// The best feasible true throughput over the whole space, as an exhaustive
// sweep measures it.
double best_true(const TuneSpec& s, const std::function<bool(const TuneCandidate&)>& feasible) {
  double best = 0;
  for (const TuneCandidate& c : enumerate_candidates(s))
    if (feasible(c)) best = std::max(best, FakeBackend::true_hps(c));
  return best;
}

}  // namespace

TEST_CASE("tune: the space enumerates every combination once, penalties with greedy only", "[unit][tune]") {
  TuneSpec s = server_spec();
  s.space.caches = {"kv-cache", "paged-prefix"};
  s.space.quantizers = {"as-stored", "int4"};
  s.space.decoders = {"greedy", "spec-lookup"};
  s.space.repetition_penalties = {1.0, 1.15};
  s.space.batches = {1, 4, 32};
  s.space.threads = {2};
  s.workload.concurrency = 8;
  const std::vector<TuneCandidate> all = enumerate_candidates(s);
  // 2 caches × 2 quantizers × (greedy × 2 penalties + spec-lookup) × batches {1, 4} (32 > 8 in flight).
  CHECK(all.size() == 2 * 2 * 3 * 2);
  std::set<std::string> labels;
  for (const TuneCandidate& c : all) {
    CHECK(labels.insert(c.label()).second);
    CHECK(c.batch <= 8);
    if (c.decoder != "greedy") CHECK(c.repetition_penalty == 1.0);
  }
  // The penalty travels in the recipe, as the greedy decoder's option, and
  // the recipe parses back into an engine configuration.
  TuneCandidate pen{"paged-prefix", "int4", "no-prune", "greedy", 1.15, 4, 2};
  CHECK(pen.recipe() == "paged-prefix+int4+no-prune+greedy{repetition_penalty=1.15}");
  EngineConfig ec;
  ec.set_recipe(pen.recipe());
  CHECK(ec.decoder == "greedy");
  CHECK(ec.decoder_options.get_double("t", "repetition_penalty", 0) == Approx(1.15));
  // Every batch above the concurrency: the smallest stays.
  s.space.batches = {16, 32};
  s.workload.concurrency = 4;
  for (const TuneCandidate& c : enumerate_candidates(s)) CHECK(c.batch == 16);
}

TEST_CASE("tune: server picks the fastest candidate that meets every budget, near the exhaustive best", "[unit][tune]") {
  TuneSpec s = server_spec();
  FakeBackend fake;
  fake.noise = 0.03;
  const TuneResult r = run_tune(s, fake);
  check_meets(s, r);
  // Fewer measurements than the space has candidates: the search pruned.
  const size_t space = enumerate_candidates(s).size();
  CHECK(r.short_runs + r.full_runs < space);
  CHECK(fake.run_calls == static_cast<int>(r.short_runs + r.full_runs));
  CHECK(r.weights_measured == 4);
  // Against the exhaustive sweep of the same space, under the same floor
  // (ROUGE drop 0.02 is -0.05 × KL + ... : every weight set passes here).
  const double best = best_true(s, [](const TuneCandidate&) { return true; });
  CHECK(FakeBackend::true_hps(chosen_of(r).candidate) >= 0.9 * best);
  CHECK(r.elapsed_s <= s.budget_s);

  // The exhaustive sweep measures every candidate fully and finds the best.
  TuneSpec ex = s;
  ex.exhaustive = true;
  ex.budget_s = 1e6;
  FakeBackend fake2;
  const TuneResult all = run_tune(ex, fake2);
  size_t full = 0;
  for (const CandidateReport& c : all.candidates) full += c.full_run.has_value();
  CHECK(full == space);
  CHECK(FakeBackend::true_hps(chosen_of(all).candidate) == Approx(best));
}

TEST_CASE("tune: memory and KL budgets discard weight sets before any run", "[unit][tune]") {
  TuneSpec s = server_spec();
  s.budgets.max_memory_mb = 300;  // no-quant's 540 MB of weights cannot fit
  s.budgets.max_kld = 0.06;       // int4 (0.09) is out
  FakeBackend fake;
  const TuneResult r = run_tune(s, fake);
  check_meets(s, r);
  for (const CandidateReport& c : r.candidates) {
    if (c.candidate.quantizer == "no-quant") {
      CHECK(c.verdict == TuneVerdict::kDiscarded);
      CHECK(c.why.find("weights alone take 540 MB > --max-memory-mb 300") != std::string::npos);
      CHECK(!c.short_run.has_value());
    }
    if (c.candidate.quantizer == "int4") {
      CHECK(c.verdict == TuneVerdict::kDiscarded);
      CHECK(c.why.find("KL divergence from fp32 0.0900 > --max-kld 0.0600") != std::string::npos);
      CHECK(!c.short_run.has_value());
    }
  }
  CHECK(chosen_of(r).candidate.quantizer == "as-stored");
  // The reference still runs (the ROUGE floor is paired with it), outside the space's budgets.
  REQUIRE(r.reference.has_value());
}

TEST_CASE("tune: infeasible budgets give the closest candidates and what each misses", "[unit][tune]") {
  TuneSpec s = server_spec();
  s.budgets.min_headlines_per_s = 100;  // ~12 is the fastest here
  s.budgets.max_memory_mb = 250;
  FakeBackend fake;
  const TuneResult r = run_tune(s, fake);
  CHECK(!r.chosen.has_value());
  REQUIRE(!r.closest.empty());
  CHECK(r.closest.size() <= 3);
  for (size_t i : r.closest) {
    const CandidateReport& c = r.candidates[i];
    REQUIRE(c.full_run.has_value());
    CHECK(c.verdict == TuneVerdict::kInfeasible);
    bool names_rate = false;
    for (const std::string& m : c.misses) names_rate |= m.find("headlines/s < 100.00") != std::string::npos;
    CHECK(names_rate);
  }
  // Nearest first: the first misses the throughput floor by the least.
  const double first = r.candidates[r.closest.front()].full_run->headlines_per_s;
  for (size_t i : r.closest) CHECK(r.candidates[i].full_run->headlines_per_s <= first + 1e-9);
  const std::string md = tune_markdown(s, r);
  CHECK(md.find("No candidate meets every budget") != std::string::npos);
}

TEST_CASE("tune: latency budget and the realtime scenario", "[unit][tune]") {
  TuneSpec s = tune_preset(TuneScenario::kRealtime, 2);
  s.workload.input = "news.jsonl";
  s.budget_s = 900;
  FakeBackend fake;
  const TuneResult r = run_tune(s, fake);
  check_meets(s, r);
  // One request at a time: batch 1, the lowest p95 among fully measured feasible ones.
  const CandidateReport& c = chosen_of(r);
  CHECK(c.candidate.batch == 1);
  for (const CandidateReport& o : r.candidates)
    if (o.full_run && o.misses.empty()) CHECK(c.full_run->latency_p95_ms <= o.full_run->latency_p95_ms);
  // At batch 1, spec-lookup is the faster decoder of this formula.
  CHECK(c.candidate.decoder == "spec-lookup");

  TuneSpec tight = s;
  tight.budgets.max_latency_p95_ms = 200;  // ~300 ms is the best here
  FakeBackend fake2;
  const TuneResult r2 = run_tune(tight, fake2);
  CHECK(!r2.chosen.has_value());
  REQUIRE(!r2.closest.empty());
  CHECK(r2.candidates[r2.closest.front()].misses.front().find("p95 latency") != std::string::npos);
}

TEST_CASE("tune: the degenerate-headline floor picks the repetition penalty", "[unit][tune]") {
  TuneSpec s = tune_preset(TuneScenario::kEdge, 2);
  s.workload.input = "news.jsonl";
  s.budget_s = 1800;
  s.budgets.max_degenerate_share = 0.05;  // the penalty-free runs have 7% (with the stop) or 12%
  FakeBackend fake;
  const TuneResult r = run_tune(s, fake);
  check_meets(s, r);
  CHECK(chosen_of(r).candidate.repetition_penalty == Approx(1.15));
  CHECK(chosen_of(r).candidate.recipe().find("greedy{repetition_penalty=1.15}") != std::string::npos);
  // Edge: least memory, so 2:4-pruned weights if their quality passes — it
  // does not here (KL 0.6 costs 0.03 ROUGE-L > the 0.02 floor).
  CHECK(chosen_of(r).candidate.pruner != "prune-2of4");
}

TEST_CASE("tune: edge takes the fastest of the candidates whose peak memory is within 2% of the least",
          "[unit][tune]") {
  TuneSpec s = tune_preset(TuneScenario::kEdge, 2);
  s.workload.input = "news.jsonl";
  s.budget_s = 1800;
  s.space.pruners = {"no-prune"};
  s.space.repetition_penalties = {1.0};
  s.space.repetition_stops = {8};
  s.space.caches = {"kv-cache"};
  s.max_full_runs = 8;
  FakeBackend fake;
  fake.one_thread_mb = -4;  // one thread reads 4 MB less: noise, not a reason to run at half speed
  const TuneResult r = run_tune(s, fake);
  check_meets(s, r);
  const CandidateReport& c = chosen_of(r);
  CHECK(c.candidate.quantizer == "as-stored");  // 80 MB of weights against int4's 95: a real difference
  CHECK(c.candidate.threads == 2);
  CHECK(c.why.find("within 2%") != std::string::npos);
  bool one_thread_measured = false;
  for (const CandidateReport& k : r.candidates)
    one_thread_measured = one_thread_measured || (k.full_run && k.candidate.threads == 1 &&
                                                  k.candidate.weights() == c.candidate.weights());
  CHECK(one_thread_measured);  // the less memory of one thread was seen, and set aside
}

TEST_CASE("tune: the degenerate-headline floor picks the repetition stop", "[unit][tune]") {
  TuneSpec s = tune_preset(TuneScenario::kEdge, 2);
  s.workload.input = "news.jsonl";
  s.budget_s = 1800;
  s.space.repetition_penalties = {1.0};
  s.space.repetition_stops = {0, 4, 8};  // the probe starts without a stop
  s.space.pruners = {"no-prune"};
  {
    // No degenerate floor: the stop only costs here, so it is left off.
    s.budgets.max_degenerate_share = 1;
    FakeBackend fake;
    const TuneResult r = run_tune(s, fake);
    check_meets(s, r);
    CHECK(chosen_of(r).candidate.repetition_stop == 0);
  }
  s.budgets.max_degenerate_share = 0.12;  // over 50 articles: 14% without the stop, 10% with it
  FakeBackend fake;
  const TuneResult r = run_tune(s, fake);
  check_meets(s, r);
  const TuneCandidate& c = chosen_of(r).candidate;
  CHECK(c.repetition_stop > 0);
  CHECK((c.label().find("repetition_stop=") == std::string::npos) == (c.repetition_stop == kDefaultRepetitionStop));
  // The stop is the engine's setting, not the recipe's: the recipe does not
  // change with it, the label does.
  TuneCandidate off = c;
  off.repetition_stop = 0;
  CHECK(off.recipe() == c.recipe());
  CHECK(off.label() != c.label());
  CHECK(off.label().find("repetition_stop=0") != std::string::npos);
  // Every stop without a degenerate miss measured fully was outranked or
  // ruled out with a reason.
  for (const CandidateReport& k : r.candidates)
    if (k.full_run && k.candidate.repetition_stop == 0 && k.candidate.weights() == c.weights())
      CHECK(k.full_run->degenerate_share > r.max_degenerate_share);
}

TEST_CASE("tune: the Pareto front and the explanation of every candidate", "[unit][tune]") {
  TuneSpec s = server_spec();
  s.max_full_runs = 6;
  FakeBackend fake;
  const TuneResult r = run_tune(s, fake);
  REQUIRE(r.chosen.has_value());
  std::vector<size_t> full;
  for (size_t i = 0; i < r.candidates.size(); ++i)
    if (r.candidates[i].full_run) full.push_back(i);
  REQUIRE(full.size() >= 3);
  auto dominates = [](const RunFigures& a, const RunFigures& b) {
    return a.headlines_per_s >= b.headlines_per_s && a.latency_p95_ms <= b.latency_p95_ms &&
           a.peak_rss_mb <= b.peak_rss_mb && a.rougeL >= b.rougeL &&
           (a.headlines_per_s > b.headlines_per_s || a.latency_p95_ms < b.latency_p95_ms ||
            a.peak_rss_mb < b.peak_rss_mb || a.rougeL > b.rougeL);
  };
  const std::set<size_t> front(r.pareto.begin(), r.pareto.end());
  REQUIRE(!front.empty());
  for (size_t i : full) {
    bool dominated = false;
    for (size_t j : full) dominated |= j != i && dominates(*r.candidates[j].full_run, *r.candidates[i].full_run);
    CHECK(front.count(i) == !dominated);
  }
  // Every candidate has a verdict and a reason; the JSON carries them.
  for (const CandidateReport& c : r.candidates) CHECK(!c.why.empty());
  const nlohmann::json doc = tune_result_json(s, r);
  CHECK(doc["schema"] == "udaci-tune/1");
  CHECK(doc["candidates"].size() == r.candidates.size());
  CHECK(doc["chosen"] == *r.chosen);
  CHECK(doc["candidates"][*r.chosen]["verdict"] == "chosen");
  const std::string explain = tune_explain(s, r);
  CHECK(explain.find("not on the search's path") != std::string::npos);
  CHECK(explain.find("short run (8 articles)") != std::string::npos);
}

TEST_CASE("tune: the time budget bounds the search", "[unit][tune]") {
  for (double budget : {40.0, 120.0, 300.0}) {
    TuneSpec s = server_spec();
    s.budget_s = budget;
    FakeBackend fake;
    const TuneResult r = run_tune(s, fake);
    INFO("budget " << budget);
    // No measurement starts unless it is predicted to fit; the first of each
    // kind can only be predicted once one ran, so one short run may overrun.
    CHECK(r.elapsed_s <= budget + 3.0 + 8.0 / 1.4 + 4.0);
    CHECK(r.budget_ran_out == (budget < 300.0));
  }
}

TEST_CASE("tune: a weight set that fails is reported, the others go on", "[unit][tune]") {
  TuneSpec s = server_spec();
  FakeBackend fake;
  fake.fail_weights = {"int4+no-prune"};
  const TuneResult r = run_tune(s, fake);
  REQUIRE(r.chosen.has_value());
  for (const CandidateReport& c : r.candidates)
    if (c.candidate.quantizer == "int4") {
      CHECK(c.verdict == TuneVerdict::kFailed);
      CHECK(c.why.find("refuse to build") != std::string::npos);
    }
}

TEST_CASE("tune: the cache context names the kernel family, so UDACI_KERNELS runs measure apart",
          "[unit][tune]") {
  EngineConfig base;
  TuneWorkload w;
  w.input = "news.jsonl";
  const std::string best = tune_cache_context(base, w, "/proc/self/exe");
  set_kernel_isa_override(KernelIsa::kScalar);
  const std::string scalar = tune_cache_context(base, w, "/proc/self/exe");
  set_kernel_isa_override(std::nullopt);
  CHECK(best.find(std::string(" kernels ") + kernel_isa_name(detected_kernel_isa()) + "\n") != std::string::npos);
  CHECK(scalar.find(" kernels scalar\n") != std::string::npos);
  if (detected_kernel_isa() != KernelIsa::kScalar) CHECK(best != scalar);
}

TEST_CASE("tune: measurements are cached, so a second run resumes without measuring", "[unit][tune]") {
  const fs::path dir = fs::temp_directory_path() / ("udaci_tune_cache_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string path = (dir / "sub" / "measurements.jsonl").string();
  TuneSpec s = server_spec();
  FakeBackend fake;
  CachedTuneBackend cached(fake, path, "context A");
  const TuneResult first = run_tune(s, cached);
  REQUIRE(first.chosen.has_value());
  const int runs = fake.run_calls, weights = fake.weights_calls;
  CHECK(runs > 0);

  FakeBackend fake2;
  CachedTuneBackend again(fake2, path, "context A");
  CHECK(again.stored() == static_cast<size_t>(runs + weights));
  const TuneResult second = run_tune(s, again);
  CHECK(fake2.run_calls == 0);
  CHECK(fake2.weights_calls == 0);
  CHECK(again.hits() == static_cast<size_t>(runs + weights));
  REQUIRE(second.chosen.has_value());
  CHECK(second.candidates[*second.chosen].candidate.label() == first.candidates[*first.chosen].candidate.label());
  CHECK(second.candidates[*second.chosen].full_run->items.size() == s.workload.samples);

  // Another context (model, machine, build or workload) measures again; a
  // line cut short by a killed run is skipped, not fatal.
  { std::ofstream(path, std::ios::app) << "{\"key\": \"12\", \"figu"; }
  FakeBackend fake3;
  CachedTuneBackend other(fake3, path, "context B");
  run_tune(s, other);
  CHECK(fake3.run_calls > 0);
  fs::remove_all(dir);
}

TEST_CASE("tune: bad budgets and contradictory settings are refused before anything runs", "[unit][tune]") {
  auto refused = [](const std::function<void(TuneSpec&)>& edit, const std::string& words) {
    TuneSpec s = server_spec();
    edit(s);
    FakeBackend fake;
    INFO(words);
    try {
      run_tune(s, fake);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.status() == Status::kInvalidArgument);
      CHECK(std::string(e.what()).find(words) != std::string::npos);
    }
    CHECK(fake.run_calls + fake.weights_calls == 0);
  };
  refused([](TuneSpec& s) { s.budgets.max_memory_mb = -5; }, "--max-memory-mb");
  refused([](TuneSpec& s) { s.budgets.max_memory_mb = 0.5; }, "below any model's size");
  refused([](TuneSpec& s) { s.budgets.max_latency_p95_ms = NAN; }, "--max-latency-p95-ms");
  refused([](TuneSpec& s) { s.budgets.min_headlines_per_s = -1; }, "--min-headlines-per-s");
  refused([](TuneSpec& s) { s.budgets.max_kld = -0.5; }, "--max-kld");
  refused([](TuneSpec& s) { s.budgets.max_rouge_drop = 2; }, "--max-rouge-drop");
  refused([](TuneSpec& s) { s.budgets.max_degenerate_share = 1.5; }, "--max-degenerate");
  refused([](TuneSpec& s) { s.budget_s = 0; }, "--budget-minutes");
  refused([](TuneSpec& s) { s.workload.short_samples = 80; }, "--short-samples");
  refused([](TuneSpec& s) { s.workload.samples = 1; }, "--samples");
  refused([](TuneSpec& s) {
    s.scenario = TuneScenario::kRealtime;
    s.workload.concurrency = 16;
  }, "--concurrency 16 contradicts it");
  refused([](TuneSpec& s) { s.space.caches = {"int4"}; }, "--caches value 'int4' chooses the quantizer, not the cache");
  refused([](TuneSpec& s) { s.space.quantizers = {"int4{group=48}"}; }, "group must be 32, 64 or 128");
  refused([](TuneSpec& s) { s.space.decoders = {"warp-drive"}; }, "unknown technique 'warp-drive'");
  refused([](TuneSpec& s) { s.space.batches = {}; }, "--batches lists no value");
  refused([](TuneSpec& s) { s.space.batches = {0}; }, "--batches values must be in [1, 1024]");
  refused([](TuneSpec& s) {
    s.space.decoders = {"spec-lookup"};
    s.space.repetition_penalties = {1.15};
  }, "the space is empty");
  refused([](TuneSpec& s) { s.space.repetition_penalties = {0.1}; }, "--repetition-penalties");
}

TEST_CASE("headline quality: empty, repetitive and overlong headlines", "[unit][tune]") {
  CHECK(classify_headline("", FinishReason::kEos) == Degeneracy::kEmpty);
  CHECK(classify_headline(" -- !", FinishReason::kEos) == Degeneracy::kEmpty);
  CHECK(classify_headline("Liz Cambage: Liz Cambage", FinishReason::kRepetition) == Degeneracy::kRepetitive);
  CHECK(classify_headline("A New Investigation Into Power and a New Investigation", FinishReason::kEos) ==
        Degeneracy::kRepetitive);  // case-insensitive bigram "a new"
  CHECK(classify_headline("Go go go", FinishReason::kEos) == Degeneracy::kRepetitive);  // overlapping "go go"
  CHECK(classify_headline("City Council Approves River Trees Plan", FinishReason::kStopped) == Degeneracy::kNone);
  CHECK(classify_headline("City Council Approves River Trees Plan and", FinishReason::kLength) ==
        Degeneracy::kOverlong);
  CHECK(classify_headline("Café Owner's Café Owner's Day", FinishReason::kEos) == Degeneracy::kRepetitive);
  CHECK(headline_words("Trump's 2024 Bid, Explained") ==
        std::vector<std::string>{"trump's", "2024", "bid", "explained"});
  CHECK(!repeats_word_ngram("one two one three", 2));
  CHECK(repeats_word_ngram("one two one three", 1));
}

namespace {

struct CliRun {
  int status = -1;
  std::string out, err;
};

CliRun run_udaci(const std::string& args, const fs::path& dir) {
  const std::string cmd = std::string(UDACI_CLI_PATH) + " " + args + " > " + (dir / "out.txt").string() + " 2> " +
                          (dir / "err.txt").string() + " < /dev/null";
  CliRun r;
  const int raw = std::system(cmd.c_str());
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = udaci_test::read_file((dir / "out.txt").string());
  r.err = udaci_test::read_file((dir / "err.txt").string());
  return r;
}

}  // namespace

TEST_CASE("cli: tune refuses bad budgets and contradictory flags before anything runs", "[unit][cli][tune]") {
  const fs::path dir = fs::temp_directory_path() / ("udaci_tune_bad_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / "never").string();
  // The model does not exist: reaching it would say not_found instead.
  const std::string base = "tune --model /nonexistent/model.gguf --out '" + out + "' ";
  const std::pair<const char*, const char*> cases[] = {
      {"--max-memory-mb -5", "--max-memory-mb must be >= 0"},
      {"--max-memory-mb 0", "--max-memory-mb 0 leaves no memory"},
      {"--min-headlines-per-s 0", "--min-headlines-per-s must be > 0"},
      {"--max-kld -1", "--max-kld must be >= 0"},
      {"--max-rouge-drop 3", "--max-rouge-drop must be at most 1"},
      {"--max-degenerate 2", "--max-degenerate must be a share in [0, 1]"},
      {"--budget-minutes 0", "--budget-minutes must be in (0, 10080]"},
      {"--budget-minutes nan", "--budget-minutes"},
      {"--scenario moon", "unknown scenario 'moon'"},
      {"--scenario realtime --concurrency 8", "--concurrency 8 contradicts it"},
      {"--exhaustive --full-runs 2", "--full-runs contradicts it"},
      {"--samples 10 --short-samples 20", "--short-samples must be in [1, --samples = 10]"},
      {"--caches int4", "--caches value 'int4' chooses the quantizer, not the cache"},
      {"--quantizers 'int4{group=48}'", "group must be 32, 64 or 128"},
      {"--batches 4,x", "--batches: 'x' is not a valid value"},
      {"--repetition-penalties 1.15 --decoders spec-lookup", "the space is empty"},
      {"--repetition-stops 0,65", "--repetition-stops values must be in [0, 64]"},
      {"--repetition-stops 8,-1", "--repetition-stops: '-1' is not a valid value"},
  };
  for (const auto& [flags, words] : cases) {
    const CliRun r = run_udaci(base + flags, dir);
    INFO(flags << "\n" << r.err);
    CHECK(r.status != 0);
    CHECK(r.err.find(words) != std::string::npos);
    CHECK(!fs::exists(out));
  }
  fs::remove_all(dir);
}

// The whole command on the default model, over a small space: it measures,
// writes the report, the chart's input and a config file that the CLI loads
// unchanged; a second run with the same cache measures nothing.
TEST_CASE("cli: tune on the default model writes a loadable config and resumes from its cache",
          "[unit][cli][tune][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("udaci_tune_run_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string news = udaci_test::fixture("../../examples/data/sample_articles.jsonl");
  const std::string args = "--threads 2 tune --model '" + model + "' --input '" + news +
                           "' --samples 6 --short-samples 2 --max-new-tokens 12 --quantizers as-stored,int8"
                           " --caches kv-cache --decoders greedy --repetition-stops 0,4 --batches 2,4"
                           " --concurrency 4 --max-rouge-drop 1 --max-degenerate 1 --budget-minutes 5"
                           // One thread per candidate under a global --threads 2: the
                           // workers must run the candidate's count (the backend checks).
                           " --threads-list 1"
                           " --cache-dir '" + (dir / "cache").string() + "' --out '" + (dir / "out").string() +
                           "' --explain";
  const CliRun r = run_udaci(args, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("chosen: ") == 0);
  CHECK(r.err.find("[tune 0:") != std::string::npos);  // progress on stderr
  const nlohmann::json doc = nlohmann::json::parse(udaci_test::read_file((dir / "out" / "tune.json").string()));
  CHECK(doc["schema"] == "udaci-tune/1");
  CHECK(doc["candidates"].size() == 2 * 2 * 2);
  REQUIRE(doc["chosen"].is_number());
  const nlohmann::json& chosen = doc["candidates"][doc["chosen"].get<size_t>()];
  CHECK(chosen["verdict"] == "chosen");
  CHECK(chosen["full"]["samples"] == 6);
  CHECK(chosen["full"]["headlines_per_s"].get<double>() > 0);
  CHECK(chosen["full"]["peak_rss_mb"].get<double>() > chosen["full"]["weight_mb"].get<double>());
  CHECK(chosen["weights"]["mean_kld"].get<double>() >= 0);
  CHECK(doc["reference"]["figures"]["samples"] == 6);
  CHECK(doc["measurements"]["weights"] == 2);
  const std::string md = udaci_test::read_file((dir / "out" / "tune.md").string());
  CHECK(md.find("**Chosen:**") != std::string::npos);
  CHECK(md.find("## Every candidate") != std::string::npos);
  // The config file: the chosen recipe, batch and threads, loadable as is.
  const EngineConfig tuned = EngineConfig::from_file((dir / "out" / "tuned.json").string());
  EngineConfig expect;
  expect.set_recipe(chosen["recipe"].get<std::string>());
  CHECK(tuned.recipe() == expect.recipe());
  CHECK(tuned.scheduler.max_sequences == chosen["batch"].get<int64_t>());
  CHECK(tuned.threads == chosen["threads"].get<int>());
  CHECK(tuned.threads == 1);
  CHECK(tuned.generation.repetition_stop == chosen["repetition_stop"].get<int64_t>());
  CHECK((tuned.generation.repetition_stop == 0 || tuned.generation.repetition_stop == 4));
  CHECK(tuned.model_path == model);
  const CliRun h = run_udaci("headline --config '" + (dir / "out" / "tuned.json").string() +
                                 "' --max-new-tokens 8 'The city council approved a plan to plant trees.'",
                             dir);
  INFO(h.err);
  CHECK(h.status == 0);
  CHECK(!h.out.empty());

  // Again with the same cache: every measurement is a hit, the same choice.
  const CliRun again = run_udaci(args + " --quiet", dir);
  INFO(again.err);
  REQUIRE(again.status == 0);
  const nlohmann::json doc2 = nlohmann::json::parse(udaci_test::read_file((dir / "out" / "tune.json").string()));
  const size_t measured = doc["measurements"]["weights"].get<size_t>() + doc["measurements"]["short_runs"].get<size_t>() +
                          doc["measurements"]["full_runs"].get<size_t>() + 1;  // + the reference
  CHECK(doc2["cache"]["hits"].get<size_t>() >= measured - 1);
  CHECK(doc2["chosen"] == doc["chosen"]);
  CHECK(doc2["elapsed_s"].get<double>() < 0.5 * doc["elapsed_s"].get<double>());
  fs::remove_all(dir);
}
