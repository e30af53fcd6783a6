#include "tune/tuner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/error.hpp"
#include "engine/engine_config.hpp"
#include "engine/recipe.hpp"
#include "eval/rouge.hpp"

namespace udaci {

using nlohmann::json;

TuneScenario parse_tune_scenario(const std::string& name) {
  if (name == "edge") return TuneScenario::kEdge;
  if (name == "server") return TuneScenario::kServer;
  if (name == "realtime") return TuneScenario::kRealtime;
  if (name == "cost") return TuneScenario::kCost;
  if (name == "custom") return TuneScenario::kCustom;
  fail(Status::kInvalidArgument, "tune: unknown scenario '{}' (known: edge, server, realtime, cost, custom)", name);
}

const char* tune_scenario_name(TuneScenario s) {
  switch (s) {
    case TuneScenario::kEdge: return "edge";
    case TuneScenario::kServer: return "server";
    case TuneScenario::kRealtime: return "realtime";
    case TuneScenario::kCost: return "cost";
    case TuneScenario::kCustom: return "custom";
  }
  return "custom";
}

const char* tune_objective_name(TuneObjective o) {
  switch (o) {
    case TuneObjective::kHeadlinesPerS: return "headlines/s";
    case TuneObjective::kLatencyP95: return "p95 latency";
    case TuneObjective::kMemory: return "peak memory";
    case TuneObjective::kHeadlinesPerCoreS: return "headlines per core-second";
  }
  return "headlines/s";
}

const char* tune_verdict_name(TuneVerdict v) {
  switch (v) {
    case TuneVerdict::kChosen: return "chosen";
    case TuneVerdict::kPareto: return "pareto";
    case TuneVerdict::kFeasible: return "feasible";
    case TuneVerdict::kInfeasible: return "infeasible";
    case TuneVerdict::kDiscarded: return "discarded";
    case TuneVerdict::kOutranked: return "outranked";
    case TuneVerdict::kNotMeasured: return "not-measured";
    case TuneVerdict::kFailed: return "failed";
  }
  return "not-measured";
}

std::string TuneCandidate::recipe() const {
  std::string d = decoder;
  if (decoder == "greedy" && repetition_penalty != 1.0)
    d = fmt::format("greedy{{repetition_penalty={}}}", repetition_penalty);
  return cache + "+" + quantizer + "+" + pruner + "+" + d;
}

std::string TuneCandidate::weights() const { return quantizer + "+" + pruner; }

std::string TuneCandidate::label() const {
  std::string l = fmt::format("{} batch={} threads={}", recipe(), batch, threads);
  if (repetition_stop != kDefaultRepetitionStop) l += fmt::format(" repetition_stop={}", repetition_stop);
  return l;
}

TuneSpec tune_preset(TuneScenario scenario, int cores) {
  cores = std::max(1, cores);
  std::vector<int> all_cores = {cores};
  std::vector<int> one_and_all = cores > 1 ? std::vector<int>{1, cores} : std::vector<int>{1};
  TuneSpec s;
  s.scenario = scenario;
  // Quality floor of every scenario: ROUGE-L no more than 0.02 under the fp32
  // reference on the same articles, degenerate headlines at most 5 points
  // above its share (the defaults; flags override).
  s.budgets.max_rouge_drop = 0.02;
  switch (scenario) {
    case TuneScenario::kEdge:
      // The report: "edge: 4-bit + pruning". Smallest memory that still
      // writes headlines at one request at a time.
      s.objective = TuneObjective::kMemory;
      s.space.caches = {"kv-cache", "paged{kv=int8}"};
      s.space.quantizers = {"as-stored", "int8", "int4", "nf4"};
      s.space.pruners = {"no-prune", "prune-2of4", "prune-30"};
      s.space.decoders = {"greedy"};
      s.space.repetition_penalties = {1.0, 1.15};
      s.space.repetition_stops = {kDefaultRepetitionStop, 0};
      s.space.batches = {1};
      s.space.threads = one_and_all;
      s.workload.concurrency = 1;
      s.budgets.min_headlines_per_s = 0.5;
      break;
    case TuneScenario::kServer:
      // "single server: KV cache + 4-bit". Most headlines/s under a burst of
      // concurrent requests.
      s.objective = TuneObjective::kHeadlinesPerS;
      s.space.caches = {"kv-cache", "paged-prefix"};
      s.space.quantizers = {"as-stored", "no-quant", "int8", "int4"};
      s.space.pruners = {"no-prune"};
      s.space.decoders = {"greedy", "spec-lookup"};
      s.space.repetition_penalties = {1.0};
      s.space.repetition_stops = {kDefaultRepetitionStop};
      s.space.batches = {4, 8, 16};
      s.space.threads = all_cores;
      s.workload.concurrency = 16;
      break;
    case TuneScenario::kRealtime:
      // "ultra-low latency: speculative decoding + everything". Lowest p95
      // latency of one request at a time.
      s.objective = TuneObjective::kLatencyP95;
      s.space.caches = {"kv-cache", "paged-prefix"};
      s.space.quantizers = {"as-stored", "no-quant", "int8", "int4"};
      s.space.pruners = {"no-prune"};
      s.space.decoders = {"greedy", "spec-lookup", "spec-self-int4"};
      s.space.repetition_penalties = {1.0};
      s.space.repetition_stops = {kDefaultRepetitionStop};
      s.space.batches = {1};
      s.space.threads = all_cores;
      s.workload.concurrency = 1;
      break;
    case TuneScenario::kCost:
      // Most headlines per core-second: what a fleet pays for.
      s.objective = TuneObjective::kHeadlinesPerCoreS;
      s.space.caches = {"kv-cache", "paged-prefix"};
      s.space.quantizers = {"as-stored", "int8", "int4"};
      s.space.pruners = {"no-prune"};
      s.space.decoders = {"greedy"};
      s.space.repetition_penalties = {1.0};
      s.space.repetition_stops = {kDefaultRepetitionStop};
      s.space.batches = {8, 16};
      s.space.threads = one_and_all;
      s.workload.concurrency = 16;
      break;
    case TuneScenario::kCustom:
      s.objective = TuneObjective::kHeadlinesPerS;
      s.space.caches = {"kv-cache", "paged-prefix"};
      s.space.quantizers = {"as-stored", "int8", "int4"};
      s.space.pruners = {"no-prune"};
      s.space.decoders = {"greedy"};
      s.space.repetition_penalties = {1.0};
      s.space.repetition_stops = {kDefaultRepetitionStop};
      s.space.batches = {1, 8};
      s.space.threads = all_cores;
      s.workload.concurrency = 8;
      break;
  }
  return s;
}

void validate_tune_spec(const TuneSpec& s) {
  const TuneBudgets& b = s.budgets;
  auto finite = [](double v) { return std::isfinite(v); };
  UDACI_CHECK(finite(b.max_memory_mb) && b.max_memory_mb >= 0,
              "tune: --max-memory-mb must be a positive number of MB, got {}", b.max_memory_mb);
  UDACI_CHECK(finite(b.max_latency_p95_ms) && b.max_latency_p95_ms >= 0,
              "tune: --max-latency-p95-ms must be a positive number of ms, got {}", b.max_latency_p95_ms);
  UDACI_CHECK(finite(b.min_headlines_per_s) && b.min_headlines_per_s >= 0,
              "tune: --min-headlines-per-s must be a positive number, got {}", b.min_headlines_per_s);
  UDACI_CHECK(finite(b.max_kld) && (b.max_kld >= 0 || b.max_kld == -1),
              "tune: --max-kld must be >= 0 nats, got {}", b.max_kld);
  UDACI_CHECK(finite(b.max_rouge_drop) && b.max_rouge_drop <= 1 && (b.max_rouge_drop >= 0 || b.max_rouge_drop == -1),
              "tune: --max-rouge-drop must be at most 1 (ROUGE-L is an F-measure), got {}", b.max_rouge_drop);
  UDACI_CHECK(finite(b.max_degenerate_share) && b.max_degenerate_share <= 1 &&
                  (b.max_degenerate_share >= 0 || b.max_degenerate_share == -1),
              "tune: --max-degenerate must be a share in [0, 1], got {}", b.max_degenerate_share);
  UDACI_CHECK(finite(s.budget_s) && s.budget_s > 0, "tune: --budget-minutes must be > 0, got {} minutes",
              s.budget_s / 60);
  const TuneWorkload& w = s.workload;
  UDACI_CHECK(w.samples >= 2, "tune: --samples must be at least 2, got {}", w.samples);
  UDACI_CHECK(w.short_samples >= 1 && w.short_samples <= w.samples,
              "tune: --short-samples must be in [1, --samples = {}], got {}", w.samples, w.short_samples);
  UDACI_CHECK(w.concurrency >= 1, "tune: --concurrency must be at least 1");
  UDACI_CHECK(w.max_new_tokens >= 1, "tune: --max-new-tokens must be at least 1");
  auto nonempty = [](const auto& v, const char* flag) {
    UDACI_CHECK(!v.empty(), "tune: {} lists no value", flag);
  };
  nonempty(s.space.caches, "--caches");
  nonempty(s.space.quantizers, "--quantizers");
  nonempty(s.space.pruners, "--pruners");
  nonempty(s.space.decoders, "--decoders");
  nonempty(s.space.repetition_penalties, "--repetition-penalties");
  nonempty(s.space.repetition_stops, "--repetition-stops");
  nonempty(s.space.batches, "--batches");
  nonempty(s.space.threads, "--threads-list");
  for (size_t v : s.space.batches) UDACI_CHECK(v >= 1 && v <= 1024, "tune: --batches values must be in [1, 1024], got {}", v);
  for (int v : s.space.threads) UDACI_CHECK(v >= 1 && v <= 1024, "tune: --threads-list values must be in [1, 1024], got {}", v);
  for (double p : s.space.repetition_penalties)
    UDACI_CHECK(std::isfinite(p) && p >= 0.5 && p <= 4,
                "tune: --repetition-penalties values must be in [0.5, 4] (1: off), got {}", p);
  for (int64_t v : s.space.repetition_stops)
    UDACI_CHECK(v >= 0 && v <= kMaxRepetitionStop, "tune: --repetition-stops values must be in [0, {}] (0: off), got {}",
                kMaxRepetitionStop, v);
  UDACI_CHECK(s.reference_repetition_stop >= 0 && s.reference_repetition_stop <= kMaxRepetitionStop,
              "tune: the reference's repetition stop must be in [0, {}], got {}", kMaxRepetitionStop,
              s.reference_repetition_stop);
  // Contradictions, refused before anything runs.
  UDACI_CHECK(!(s.scenario == TuneScenario::kRealtime && w.concurrency > 1),
              "tune: --scenario realtime measures one request at a time; --concurrency {} contradicts it "
              "(use --scenario server with --max-latency-p95-ms)",
              w.concurrency);
  UDACI_CHECK(b.max_memory_mb == 0 || b.max_memory_mb >= 1,
              "tune: --max-memory-mb {} is below any model's size (the unit is MB)", b.max_memory_mb);
  // Each value must be a recipe part of its own slot ("--caches int4" is a
  // mistake, not a cache).
  auto check_slot = [](const std::vector<std::string>& values, Slot slot, const char* flag) {
    for (const std::string& v : values) {
      const Recipe r = parse_recipe(v);  // names the part on a syntax error
      UDACI_CHECK(r.parts.size() == 1, "tune: {} value '{}' must be one technique, not a recipe of {}", flag, v,
                  r.parts.size());
      UDACI_CHECK(r.parts[0].technique->slot == slot, "tune: {} value '{}' chooses the {}, not the {}", flag, v,
                  slot_name(r.parts[0].technique->slot), slot_name(slot));
      EngineConfig probe;
      apply_recipe(r, probe);  // checks the options with the strategy's own reader
    }
  };
  check_slot(s.space.caches, Slot::kCache, "--caches");
  check_slot(s.space.quantizers, Slot::kQuantizer, "--quantizers");
  check_slot(s.space.pruners, Slot::kPruner, "--pruners");
  check_slot(s.space.decoders, Slot::kDecoder, "--decoders");
  UDACI_CHECK(!enumerate_candidates(s).empty(),
              "tune: the space is empty: repetition penalties other than 1 apply to the greedy decoder only, and "
              "--decoders lists no greedy");
  UDACI_CHECK(s.max_full_runs >= 1, "tune: --full-runs must be at least 1");
}

std::vector<TuneCandidate> enumerate_candidates(const TuneSpec& spec) {
  const TuneSpace& sp = spec.space;
  // Batches above the concurrency leave places empty: keep those up to it,
  // and the smallest above when none is.
  std::vector<size_t> batches;
  for (size_t b : sp.batches)
    if (b <= spec.workload.concurrency && std::find(batches.begin(), batches.end(), b) == batches.end())
      batches.push_back(b);
  if (batches.empty()) batches.push_back(*std::min_element(sp.batches.begin(), sp.batches.end()));
  std::vector<TuneCandidate> out;
  std::set<std::string> seen;
  for (const std::string& q : sp.quantizers)
    for (const std::string& p : sp.pruners)
      for (const std::string& c : sp.caches)
        for (const std::string& d : sp.decoders)
          for (double pen : sp.repetition_penalties) {
            if (pen != 1.0 && d != "greedy") continue;
            for (int64_t stop : sp.repetition_stops)
              for (size_t b : batches)
                for (int t : sp.threads) {
                  TuneCandidate k{c, q, p, d, pen, b, t, stop};
                  if (seen.insert(k.label()).second) out.push_back(k);
                }
          }
  return out;
}

// Peak memory within this share of the least counts as a tie (noise).
constexpr double kMemoryTie = 0.02;

double tune_score(TuneObjective o, const RunFigures& f, int threads) {
  switch (o) {
    case TuneObjective::kHeadlinesPerS: return f.headlines_per_s;
    case TuneObjective::kLatencyP95: return -f.latency_p95_ms;
    // Ties in memory (same weights) go to the faster one.
    case TuneObjective::kMemory: return -f.peak_rss_mb + 1e-3 * f.headlines_per_s;
    case TuneObjective::kHeadlinesPerCoreS: return f.headlines_per_s / std::max(1, threads);
  }
  return f.headlines_per_s;
}

std::vector<std::string> budget_misses(const TuneBudgets& b, const RunFigures& f) {
  std::vector<std::string> m;
  if (b.max_memory_mb > 0 && f.peak_rss_mb > b.max_memory_mb)
    m.push_back(fmt::format("peak memory {:.0f} MB > {:.0f} MB", f.peak_rss_mb, b.max_memory_mb));
  if (b.max_latency_p95_ms > 0 && f.latency_p95_ms > b.max_latency_p95_ms)
    m.push_back(fmt::format("p95 latency {:.0f} ms > {:.0f} ms", f.latency_p95_ms, b.max_latency_p95_ms));
  if (b.min_headlines_per_s > 0 && f.headlines_per_s < b.min_headlines_per_s)
    m.push_back(fmt::format("{:.2f} headlines/s < {:.2f}", f.headlines_per_s, b.min_headlines_per_s));
  return m;
}

namespace {

std::string clock_text(double s) {
  const int t = static_cast<int>(std::max(0.0, s));
  return fmt::format("{}:{:02d}", t / 60, t % 60);
}

// The ROUGE floor: missed when the mean paired difference from the fp32
// reference is below -max_rouge_drop and its 95% interval excludes 0, so
// that the noise of a few dozen articles (an interval of about ±0.02 at 50)
// does not refuse a candidate that is not measurably worse.
bool rouge_misses(const TuneBudgets& b, const CandidateReport& r) {
  return b.max_rouge_drop >= 0 && r.rouge_delta && *r.rouge_delta < -b.max_rouge_drop && *r.rouge_delta_high < 0;
}

// How far a fully measured candidate is from meeting the budgets: the sum
// of each missed budget's relative excess (0: feasible).
double violation(const TuneBudgets& b, double max_degenerate, const CandidateReport& r) {
  if (!r.full_run) return 1e9;
  const RunFigures& f = *r.full_run;
  double v = 0;
  auto rel = [](double excess, double scale) { return excess > 0 ? excess / std::max(scale, 1e-9) : 0.0; };
  if (b.max_memory_mb > 0) v += rel(f.peak_rss_mb - b.max_memory_mb, b.max_memory_mb);
  if (b.max_latency_p95_ms > 0) v += rel(f.latency_p95_ms - b.max_latency_p95_ms, b.max_latency_p95_ms);
  if (b.min_headlines_per_s > 0) v += rel(b.min_headlines_per_s - f.headlines_per_s, b.min_headlines_per_s);
  if (b.max_kld >= 0 && r.weights) v += rel(r.weights->mean_kld - b.max_kld, std::max(b.max_kld, 0.01));
  if (rouge_misses(b, r)) v += rel(-*r.rouge_delta - b.max_rouge_drop, std::max(b.max_rouge_drop, 0.01));
  v += rel(f.degenerate_share - max_degenerate, std::max(max_degenerate, 0.01));
  return v;
}

// a dominates b: no worse in headlines/s, p95 latency, memory and ROUGE-L,
// better in one.
bool dominates(const RunFigures& a, const RunFigures& b) {
  const double av[4] = {a.headlines_per_s, -a.latency_p95_ms, -a.peak_rss_mb, a.rougeL};
  const double bv[4] = {b.headlines_per_s, -b.latency_p95_ms, -b.peak_rss_mb, b.rougeL};
  bool better = false;
  for (int i = 0; i < 4; ++i) {
    if (av[i] < bv[i]) return false;
    if (av[i] > bv[i]) better = true;
  }
  return better;
}

std::string objective_value(TuneObjective o, const RunFigures& f, int threads) {
  switch (o) {
    case TuneObjective::kHeadlinesPerS: return fmt::format("{:.2f} headlines/s", f.headlines_per_s);
    case TuneObjective::kLatencyP95: return fmt::format("p95 {:.0f} ms", f.latency_p95_ms);
    case TuneObjective::kMemory: return fmt::format("{:.0f} MB peak", f.peak_rss_mb);
    case TuneObjective::kHeadlinesPerCoreS:
      return fmt::format("{:.2f} headlines per core-second", f.headlines_per_s / std::max(1, threads));
  }
  return "";
}

class Search {
 public:
  Search(const TuneSpec& spec, TuneBackend& backend, const TuneProgress& progress)
      : spec_(spec), b_(spec.budgets), backend_(backend), progress_(progress) {}

  TuneResult run() {
    for (const TuneCandidate& c : enumerate_candidates(spec_)) {
      CandidateReport r;
      r.candidate = c;
      res_.candidates.push_back(std::move(r));
    }
    say(fmt::format("{} candidates, scenario {}, objective {}, budget {}", res_.candidates.size(),
                    tune_scenario_name(spec_.scenario), tune_objective_name(spec_.objective),
                    clock_text(spec_.budget_s)));
    measure_weights();
    if (spec_.exhaustive) {
      run_reference();
      for (size_t i = 0; i < res_.candidates.size(); ++i)
        if (alive(res_.candidates[i])) full_run(i);
    } else {
      probe_weight_sets();
      run_reference();
      explore();
      fill_full_runs();
    }
    decide();
    res_.elapsed_s = backend_.elapsed_s();
    return std::move(res_);
  }

 private:
  double left() const { return spec_.budget_s - backend_.elapsed_s(); }

  void say(const std::string& s) const {
    if (progress_)
      progress_(fmt::format("[tune {}/{}] {}", clock_text(backend_.elapsed_s()), clock_text(spec_.budget_s), s));
  }

  bool alive(const CandidateReport& r) const {
    return r.verdict != TuneVerdict::kFailed && r.verdict != TuneVerdict::kDiscarded;
  }

  // Stage 1: one measurement per weight set.
  void measure_weights() {
    std::map<std::string, std::optional<WeightsFigures>> done;
    std::map<std::string, std::string> failed;
    for (CandidateReport& r : res_.candidates) {
      const std::string key = r.candidate.weights();
      if (done.count(key) || failed.count(key)) continue;
      if (left() <= 0) {
        res_.budget_ran_out = true;
        break;
      }
      try {
        const WeightsFigures w = backend_.weights(r.candidate);
        done[key] = w;
        ++res_.weights_measured;
        say(fmt::format("weights {}: {:.0f} MB, KL {:.4f}, top-1 {:.1f}%", key, w.weight_mb, w.mean_kld,
                        100 * w.top1_agreement));
      } catch (const std::exception& e) {
        failed[key] = e.what();
        say(fmt::format("weights {}: failed: {}", key, e.what()));
      }
    }
    for (CandidateReport& r : res_.candidates) {
      const std::string key = r.candidate.weights();
      if (failed.count(key)) {
        r.verdict = TuneVerdict::kFailed;
        r.why = "building its weights failed: " + failed[key];
        continue;
      }
      auto it = done.find(key);
      if (it == done.end()) continue;
      r.weights = it->second;
      if (spec_.exhaustive) continue;  // the sweep measures everything
      if (b_.max_memory_mb > 0 && r.weights->weight_mb > b_.max_memory_mb) {
        r.verdict = TuneVerdict::kDiscarded;
        r.why = fmt::format("its weights alone take {:.0f} MB > --max-memory-mb {:.0f}", r.weights->weight_mb,
                            b_.max_memory_mb);
      } else if (b_.max_kld >= 0 && r.weights->mean_kld > b_.max_kld) {
        r.verdict = TuneVerdict::kDiscarded;
        r.why = fmt::format("KL divergence from fp32 {:.4f} > --max-kld {:.4f}", r.weights->mean_kld, b_.max_kld);
      }
    }
  }

  // Predicted seconds of a run of `samples` articles of candidate i, from
  // its own short run, else the slowest seconds-per-article seen so far (a
  // measurement of an unknown candidate is predicted pessimistically);
  // 0 when nothing was measured yet.
  double predict(size_t i, size_t samples) const {
    const CandidateReport& r = res_.candidates[i];
    // Loading and warm-up count as about two articles.
    if (r.short_run)
      return r.short_run->seconds * static_cast<double>(samples + 2) / static_cast<double>(r.short_run->samples + 2);
    return slowest_per_article_ * static_cast<double>(samples + 2);
  }

  void note_seconds(const RunFigures& f) {
    slowest_per_article_ = std::max(slowest_per_article_, f.seconds / static_cast<double>(f.samples + 2));
  }

  // Runs a short measurement of candidate i unless it has one; false when
  // it did not run (budget, failure, discarded).
  bool short_run(size_t i) {
    CandidateReport& r = res_.candidates[i];
    if (r.short_run) return true;
    if (!alive(r)) return false;
    const size_t n = spec_.workload.short_samples;
    if (predict(i, n) > left() - reserve_) {
      res_.budget_ran_out = true;
      return false;
    }
    try {
      RunFigures f = backend_.run(r.candidate, n);
      note_seconds(f);
      r.short_run = f;
      ++res_.short_runs;
      say(fmt::format("short {}: {}: {:.2f} headlines/s, p95 {:.0f} ms, {:.0f} MB", res_.short_runs, r.candidate.label(),
                      f.headlines_per_s, f.latency_p95_ms, f.peak_rss_mb));
      // Memory seen in a short run holds in a full one (same weights and
      // batch): over the budget, it is out.
      if (b_.max_memory_mb > 0 && f.peak_rss_mb > b_.max_memory_mb) {
        r.verdict = TuneVerdict::kDiscarded;
        r.why = fmt::format("a short run peaked at {:.0f} MB > --max-memory-mb {:.0f}", f.peak_rss_mb, b_.max_memory_mb);
      }
    } catch (const std::exception& e) {
      r.verdict = TuneVerdict::kFailed;
      r.why = std::string("its run failed: ") + e.what();
      say(fmt::format("short {}: failed: {}", r.candidate.label(), e.what()));
      return false;
    }
    return true;
  }

  double short_score(size_t i) const {
    const CandidateReport& r = res_.candidates[i];
    if (!r.short_run || !alive(r)) return -1e300;
    double s = tune_score(spec_.objective, *r.short_run, r.candidate.threads);
    // An estimate already missing a latency or throughput budget by more than
    // the noise of a few articles (25%) ranks after every one that does not.
    const RunFigures& f = *r.short_run;
    const bool hopeless = (b_.max_latency_p95_ms > 0 && f.latency_p95_ms > 1.25 * b_.max_latency_p95_ms) ||
                          (b_.min_headlines_per_s > 0 && f.headlines_per_s < 0.8 * b_.min_headlines_per_s);
    return hopeless ? s - 1e12 : s;
  }

  // The candidate equal to `base` but for one dimension.
  std::optional<size_t> neighbour(const TuneCandidate& base, int dim, size_t value) const {
    TuneCandidate k = base;
    const TuneSpace& sp = spec_.space;
    switch (dim) {
      case 0: k.batch = sp.batches[value]; break;
      case 1: k.decoder = sp.decoders[value]; break;
      case 2: k.cache = sp.caches[value]; break;
      case 3: k.threads = sp.threads[value]; break;
      case 4: k.repetition_penalty = sp.repetition_penalties[value]; break;
      case 5: k.repetition_stop = sp.repetition_stops[value]; break;
      default: return std::nullopt;
    }
    if (k.decoder != "greedy") k.repetition_penalty = 1.0;
    const std::string label = k.label();
    for (size_t i = 0; i < res_.candidates.size(); ++i)
      if (res_.candidates[i].candidate.label() == label) return i;
    return std::nullopt;
  }

  size_t dim_size(int dim) const {
    const TuneSpace& sp = spec_.space;
    switch (dim) {
      case 0: return sp.batches.size();
      case 1: return sp.decoders.size();
      case 2: return sp.caches.size();
      case 3: return sp.threads.size();
      case 4: return sp.repetition_penalties.size();
      case 5: return sp.repetition_stops.size();
    }
    return 0;
  }

  // Stage 2a: one short run per weight set, at the space's first cache,
  // decoder, penalty and repetition stop, its largest batch and most threads.
  void probe_weight_sets() {
    for (size_t i = 0; i < res_.candidates.size(); ++i) {
      const CandidateReport& r = res_.candidates[i];
      if (!alive(r) || !r.weights) continue;
      const std::string key = r.candidate.weights();
      auto it = probe_.find(key);
      if (it == probe_.end()) {
        probe_[key] = i;
        weight_sets_.push_back(key);
        continue;
      }
      const TuneCandidate& p = res_.candidates[it->second].candidate;
      const TuneCandidate& c = r.candidate;
      const bool same_rest = c.cache == p.cache && c.decoder == p.decoder &&
                             c.repetition_penalty == p.repetition_penalty && c.repetition_stop == p.repetition_stop;
      if (same_rest && (c.batch > p.batch || (c.batch == p.batch && c.threads > p.threads))) it->second = i;
    }
    const size_t n_full = spec_.workload.samples;
    for (const std::string& key : weight_sets_) {
      short_run(probe_[key]);
      // Keep time for the reference and two full runs.
      reserve_ = slowest_per_article_ * static_cast<double>(n_full + 2) * 3;
    }
    reserve_ = 0;
  }

  // Stage 2b: coordinate descent by short runs from candidate `start`: one
  // dimension at a time, every value of it, move to the best; two passes at
  // most.
  size_t descend(size_t start) {
    size_t current = start;
    for (int pass = 0; pass < 2; ++pass) {
      bool moved = false;
      for (int dim = 0; dim < 6; ++dim) {
        if (dim_size(dim) < 2) continue;
        size_t best = current;
        for (size_t v = 0; v < dim_size(dim); ++v) {
          const std::optional<size_t> j = neighbour(res_.candidates[current].candidate, dim, v);
          if (!j || *j == current || !short_run(*j)) continue;
          if (short_score(*j) > short_score(best)) best = *j;
        }
        if (best != current) {
          current = best;
          moved = true;
        }
      }
      if (!moved) break;
    }
    return current;
  }

  static std::string decoding(const TuneCandidate& c) {
    return fmt::format("{} (repetition penalty {}, repetition stop {})", c.decoder, c.repetition_penalty,
                       c.repetition_stop);
  }
  // Degenerate headlines depend on the weights as much as on the decoding
  // (measured: int8 22%, int4 10%, fp32 10% with the same greedy decoder), so
  // a miss rules out that decoding on those weights only.
  static std::string weights_decoding(const TuneCandidate& c) { return c.weights() + " " + decoding(c); }

  // Why a candidate is not worth a full run, from what full runs taught:
  // a weight set at least as far from fp32 (KL) as one that missed the
  // ROUGE floor, or a decoding whose headlines were too often degenerate.
  std::string excluded(size_t i) const {
    const CandidateReport& r = res_.candidates[i];
    if (r.weights && r.weights->mean_kld >= failed_kld_)
      return fmt::format("its weights' KL divergence {:.4f} is at least that of {} ({:.4f}), which missed the "
                         "ROUGE floor",
                         r.weights->mean_kld, failed_kld_by_, failed_kld_);
    if (failed_decoding_.count(weights_decoding(r.candidate)))
      return fmt::format("{} on {} already gave too many degenerate headlines", decoding(r.candidate),
                         r.candidate.weights());
    return "";
  }

  bool rouge_fails(const CandidateReport& r) const { return rouge_misses(b_, r); }
  bool degenerate_fails(const CandidateReport& r) const {
    return r.full_run && r.full_run->degenerate_share > max_degenerate();
  }
  double max_degenerate() const {
    return b_.max_degenerate_share >= 0 ? b_.max_degenerate_share
           : res_.reference             ? std::min(1.0, res_.reference->degenerate_share + 0.05)
                                        : 1.0;
  }

  // Learns from a full run what to skip next.
  void learn(size_t i) {
    const CandidateReport& r = res_.candidates[i];
    if (rouge_fails(r) && r.weights && r.weights->mean_kld < failed_kld_) {
      failed_kld_ = r.weights->mean_kld;
      failed_kld_by_ = r.candidate.weights();
    } else if (!rouge_fails(r) && degenerate_fails(r)) {
      failed_decoding_.insert(weights_decoding(r.candidate));
    }
  }

  // The best alternative to `current` in its weight set with another
  // decoding (repetition stop, penalty or decoder), by short runs.
  std::optional<size_t> other_decoding(size_t current) {
    for (int dim : {5, 4, 1})
      for (size_t v = 0; v < dim_size(dim); ++v)
        if (const std::optional<size_t> j = neighbour(res_.candidates[current].candidate, dim, v)) short_run(*j);
    std::optional<size_t> best;
    const std::string ws = res_.candidates[current].candidate.weights();
    for (size_t j = 0; j < res_.candidates.size(); ++j) {
      const CandidateReport& r = res_.candidates[j];
      if (r.candidate.weights() != ws || !r.short_run || r.full_run || !alive(r) || !excluded(j).empty()) continue;
      if (!best || short_score(j) > short_score(*best)) best = j;
    }
    return best;
  }

  // Within kNear of the best score: 0.7x its value (for throughput), 1/0.7x
  // (for latency and memory, whose scores are negated).
  static bool near(double score, double best) {
    constexpr double kNear = 0.7;
    return best > 0 ? score >= kNear * best : score >= best / kNear;
  }

  // Stage 2b/3: weight sets by their probes' objective; for each within
  // reach of the best probe, descend to its best candidate and measure it
  // fully; a ROUGE-floor miss rules out weight sets at least as far from
  // fp32, a degenerate-floor miss makes it try another decoding of the same
  // weights.
  void explore() {
    std::vector<std::string> ranked;
    for (const std::string& key : weight_sets_)
      if (res_.candidates[probe_[key]].short_run) ranked.push_back(key);
    if (ranked.empty()) return;
    // The probes' objective as measured, whether or not the probe itself fits
    // the budgets (a probe over the memory budget at its largest batch may
    // fit at a smaller one: the descent looks).
    auto raw = [&](const std::string& key) {
      const CandidateReport& r = res_.candidates[probe_[key]];
      return tune_score(spec_.objective, *r.short_run, r.candidate.threads);
    };
    double best_probe = -1e300;
    for (const std::string& key : ranked) best_probe = std::max(best_probe, raw(key));
    // A probe clearly behind the best one (beyond the noise of a short run)
    // is not explored: its weights are what makes it slow or large. The
    // others go closest to fp32 first (KL): when the budget runs short the
    // safe ones have been measured, and a ROUGE-floor miss of one rules out
    // those further away.
    std::vector<std::string> order;
    for (const std::string& key : ranked) {
      if (near(raw(key), best_probe))
        order.push_back(key);
      else
        behind_.insert(key);
    }
    auto kld = [&](const std::string& key) {
      const CandidateReport& r = res_.candidates[probe_[key]];
      return r.weights ? r.weights->mean_kld : 0.0;
    };
    std::stable_sort(order.begin(), order.end(), [&](const std::string& a, const std::string& b) { return kld(a) < kld(b); });
    for (const std::string& key : order) {
      if (left() <= 0) break;
      if (!excluded(probe_[key]).empty()) continue;
      std::optional<size_t> cur = descend(probe_[key]);
      for (int attempt = 0; attempt < 3 && cur; ++attempt) {
        if (!res_.candidates[*cur].full_run && !full_run(*cur)) break;
        learn(*cur);
        const CandidateReport& r = res_.candidates[*cur];
        if (rouge_fails(r) || !degenerate_fails(r)) break;
        cur = other_decoding(*cur);
      }
    }
  }

  // Stage 3: up to max_full_runs more, best short estimates first.
  void fill_full_runs() {
    std::vector<size_t> pool;
    for (size_t i = 0; i < res_.candidates.size(); ++i) {
      const CandidateReport& r = res_.candidates[i];
      if (alive(r) && r.short_run && !r.full_run) pool.push_back(i);
    }
    std::stable_sort(pool.begin(), pool.end(), [&](size_t a, size_t b) { return short_score(a) > short_score(b); });
    size_t done = 0;
    for (size_t i : pool) {
      if (done >= spec_.max_full_runs) break;
      if (!excluded(i).empty()) continue;
      if (full_run(i)) {
        learn(i);
        ++done;
      }
    }
  }

  void pair_with_reference(CandidateReport& r) {
    if (!res_.reference || !r.full_run) return;
    std::map<int64_t, double> ref;
    for (const RunItem& it : res_.reference->items) ref[it.id] = it.rougeL;
    std::vector<double> diff;
    for (const RunItem& it : r.full_run->items) {
      auto f = ref.find(it.id);
      if (f != ref.end()) diff.push_back(it.rougeL - f->second);
    }
    if (diff.empty()) return;
    const MeanCI ci = bootstrap_mean_ci(diff, 1000, 0.95, spec_.workload.seed);
    r.rouge_delta = ci.mean;
    r.rouge_delta_low = ci.low;
    r.rouge_delta_high = ci.high;
  }

  // A full run of candidate i when it is predicted to fit; false otherwise.
  bool full_run(size_t i) {
    CandidateReport& r = res_.candidates[i];
    if (r.full_run) return true;
    const size_t n = spec_.workload.samples;
    if (predict(i, n) > left()) {
      res_.budget_ran_out = true;
      return false;
    }
    try {
      RunFigures f = backend_.run(r.candidate, n);
      note_seconds(f);
      r.full_run = f;
      ++res_.full_runs;
      pair_with_reference(r);
      say(fmt::format("full {}: {}: {:.2f} headlines/s, p95 {:.0f} ms, {:.0f} MB, ROUGE-L {:.4f}{}", res_.full_runs,
                      r.candidate.label(), f.headlines_per_s, f.latency_p95_ms, f.peak_rss_mb, f.rougeL,
                      r.rouge_delta ? fmt::format(" ({:+.4f} vs fp32)", *r.rouge_delta) : std::string()));
      return true;
    } catch (const std::exception& e) {
      r.verdict = TuneVerdict::kFailed;
      r.why = std::string("its run failed: ") + e.what();
      say(fmt::format("full {}: failed: {}", r.candidate.label(), e.what()));
      return false;
    }
  }

  // The fp32 greedy reference the quality floor is paired with: the space's
  // largest batch (up to the concurrency) and most threads.
  void run_reference() {
    const size_t n = spec_.workload.samples;
    TuneCandidate ref;
    ref.cache = spec_.reference_cache;
    ref.quantizer = "no-quant";
    ref.pruner = "no-prune";
    ref.decoder = "greedy";
    ref.repetition_stop = spec_.reference_repetition_stop;
    ref.batch = *std::max_element(spec_.space.batches.begin(), spec_.space.batches.end());
    ref.batch = std::min(ref.batch, spec_.workload.concurrency);
    ref.threads = *std::max_element(spec_.space.threads.begin(), spec_.space.threads.end());
    res_.reference_recipe = ref.label();
    std::optional<size_t> same;
    for (size_t i = 0; i < res_.candidates.size(); ++i)
      if (res_.candidates[i].candidate.label() == ref.label()) same = i;
    const double predicted = same ? predict(*same, n) : slowest_per_article_ * static_cast<double>(n + 2);
    if (predicted > left()) {
      res_.budget_ran_out = true;
      say("no time left for the fp32 reference: the ROUGE floor cannot be checked");
      return;
    }
    try {
      RunFigures f = backend_.run(ref, n);
      note_seconds(f);
      res_.reference = f;
      say(fmt::format("reference {}: ROUGE-L {:.4f}, {:.1f}% degenerate, {:.2f} headlines/s", ref.label(), f.rougeL,
                      100 * f.degenerate_share, f.headlines_per_s));
      // A candidate of the space equal to the reference needs no run of its own.
      if (same && alive(res_.candidates[*same])) {
        res_.candidates[*same].full_run = f;
        ++res_.full_runs;
        pair_with_reference(res_.candidates[*same]);
      }
    } catch (const std::exception& e) {
      say(fmt::format("reference {}: failed: {}", ref.label(), e.what()));
    }
  }

  void decide() {
    res_.max_degenerate_share = max_degenerate();
    const double max_deg = res_.max_degenerate_share;
    std::vector<size_t> full, feasible;
    for (size_t i = 0; i < res_.candidates.size(); ++i) {
      CandidateReport& r = res_.candidates[i];
      if (!r.full_run || !alive(r)) continue;
      full.push_back(i);
      r.misses = budget_misses(b_, *r.full_run);
      if (b_.max_kld >= 0 && r.weights && r.weights->mean_kld > b_.max_kld)
        r.misses.push_back(fmt::format("KL divergence {:.4f} > {:.4f}", r.weights->mean_kld, b_.max_kld));
      if (b_.max_rouge_drop >= 0) {
        if (!r.rouge_delta)
          r.misses.push_back("ROUGE-L not paired with the fp32 reference (it did not run)");
        else if (rouge_misses(b_, r))
          r.misses.push_back(fmt::format("ROUGE-L {:+.4f} vs fp32 (95% CI {:+.4f} .. {:+.4f}) < -{:.3f}", *r.rouge_delta,
                                         *r.rouge_delta_low, *r.rouge_delta_high, b_.max_rouge_drop));
      }
      if (r.full_run->degenerate_share > max_deg)
        r.misses.push_back(fmt::format("{:.1f}% degenerate headlines > {:.1f}%", 100 * r.full_run->degenerate_share,
                                       100 * max_deg));
      if (r.misses.empty()) feasible.push_back(i);
    }
    auto score = [&](size_t i) {
      const CandidateReport& r = res_.candidates[i];
      return tune_score(spec_.objective, *r.full_run, r.candidate.threads);
    };
    for (size_t i : full) {
      bool dominated = false;
      for (size_t j : full)
        if (j != i && dominates(*res_.candidates[j].full_run, *res_.candidates[i].full_run)) dominated = true;
      if (!dominated) res_.pareto.push_back(i);
    }
    if (!feasible.empty()) {
      size_t best = feasible.front();
      for (size_t i : feasible)
        if (score(i) > score(best)) best = i;
      if (spec_.objective == TuneObjective::kMemory) {
        // Peaks within kMemoryTie of the least differ by the noise between
        // runs of the same weights (measured: 301 vs 305 MB for one file at 1
        // and 2 threads): the fastest of those.
        const double least = res_.candidates[best].full_run->peak_rss_mb;
        for (size_t i : feasible) {
          const RunFigures& f = *res_.candidates[i].full_run;
          if (f.peak_rss_mb <= least * (1 + kMemoryTie) &&
              f.headlines_per_s > res_.candidates[best].full_run->headlines_per_s)
            best = i;
        }
      }
      res_.chosen = best;
    } else {
      std::vector<size_t> near = full;
      std::stable_sort(near.begin(), near.end(), [&](size_t a, size_t b) {
        return violation(b_, max_deg, res_.candidates[a]) < violation(b_, max_deg, res_.candidates[b]);
      });
      if (near.size() > 3) near.resize(3);
      res_.closest = near;
    }
    explain(full, feasible);
  }

  void explain(const std::vector<size_t>& full, const std::vector<size_t>& feasible) {
    const TuneObjective o = spec_.objective;
    const CandidateReport* chosen = res_.chosen ? &res_.candidates[*res_.chosen] : nullptr;
    const std::set<size_t> pareto(res_.pareto.begin(), res_.pareto.end());
    const std::set<size_t> ok(feasible.begin(), feasible.end());
    for (size_t i = 0; i < res_.candidates.size(); ++i) {
      CandidateReport& r = res_.candidates[i];
      if (r.verdict == TuneVerdict::kFailed || r.verdict == TuneVerdict::kDiscarded) continue;
      if (r.full_run) {
        const std::string value = objective_value(o, *r.full_run, r.candidate.threads);
        if (res_.chosen && i == *res_.chosen) {
          r.verdict = TuneVerdict::kChosen;
          r.why = fmt::format("the best {} ({}) of the {} fully measured candidates meeting every budget{}",
                              tune_objective_name(o), value, feasible.size(),
                              o == TuneObjective::kMemory
                                  ? fmt::format(" (peaks within {:.0f}% of the least count as equal: the fastest)",
                                                100 * kMemoryTie)
                                  : "");
        } else if (!ok.count(i)) {
          r.verdict = TuneVerdict::kInfeasible;
          std::string m;
          for (const std::string& s : r.misses) m += (m.empty() ? "" : "; ") + s;
          r.why = "misses: " + m;
        } else if (pareto.count(i)) {
          r.verdict = TuneVerdict::kPareto;
          r.why = fmt::format("on the Pareto front, but {} against the chosen's {}", value,
                              objective_value(o, *chosen->full_run, chosen->candidate.threads));
        } else {
          r.verdict = TuneVerdict::kFeasible;
          std::string by;
          for (size_t j : full)
            if (j != i && dominates(*res_.candidates[j].full_run, *r.full_run)) {
              by = res_.candidates[j].candidate.label();
              break;
            }
          r.why = fmt::format("meets every budget; {} against the chosen's {}; dominated by {}", value,
                              objective_value(o, *chosen->full_run, chosen->candidate.threads), by);
        }
      } else if (r.short_run) {
        r.verdict = TuneVerdict::kOutranked;
        const std::string skip = excluded(i);
        r.why = fmt::format("short run ({} articles): {}", r.short_run->samples,
                            objective_value(o, *r.short_run, r.candidate.threads));
        if (!skip.empty())
          r.why += "; not measured fully: " + skip;
        else
          r.why += fmt::format(", below the {} candidates measured fully{}", full.size(),
                               res_.budget_ran_out ? " (the budget ran out)" : "");
      } else if (!excluded(i).empty()) {
        r.verdict = TuneVerdict::kNotMeasured;
        r.why = "skipped: " + excluded(i);
      } else if (behind_.count(r.candidate.weights())) {
        r.verdict = TuneVerdict::kNotMeasured;
        const CandidateReport& p = res_.candidates[probe_.at(r.candidate.weights())];
        r.why = fmt::format("its weight set's probe ({}) was too far behind the best probe's {} to explore "
                            "(within 0.7x, 1/0.7x for latency and memory)",
                            objective_value(o, *p.short_run, p.candidate.threads), tune_objective_name(o));
      } else {
        r.verdict = TuneVerdict::kNotMeasured;
        if (!r.weights)
          r.why = "the budget ran out before its weights were measured";
        else if (spec_.exhaustive)
          r.why = "the budget ran out before its run";
        else
          r.why = "not on the search's path: its weight set's probe or the coordinate descent from the best "
                  "probes never reached it";
      }
    }
  }

  const TuneSpec& spec_;
  const TuneBudgets& b_;
  TuneBackend& backend_;
  const TuneProgress& progress_;
  TuneResult res_;
  double slowest_per_article_ = 0;
  double reserve_ = 0;  // seconds kept for the full runs during the probes
  std::vector<std::string> weight_sets_;   // in the space's order
  std::map<std::string, size_t> probe_;    // weight set -> its probe candidate
  double failed_kld_ = 1e300;              // lowest KL of a weight set that missed the ROUGE floor
  std::string failed_kld_by_;
  std::set<std::string> failed_decoding_;  // weights + decoding that missed the degenerate floor
  std::set<std::string> behind_;           // weight sets whose probe was clearly behind the best
};

json budgets_json(const TuneBudgets& b, double max_degenerate) {
  auto opt = [](double v, bool set) { return set ? json(v) : json(nullptr); };
  return json{{"max_memory_mb", opt(b.max_memory_mb, b.max_memory_mb > 0)},
              {"max_latency_p95_ms", opt(b.max_latency_p95_ms, b.max_latency_p95_ms > 0)},
              {"min_headlines_per_s", opt(b.min_headlines_per_s, b.min_headlines_per_s > 0)},
              {"max_kld", opt(b.max_kld, b.max_kld >= 0)},
              {"max_rouge_drop", opt(b.max_rouge_drop, b.max_rouge_drop >= 0)},
              {"max_degenerate_share", max_degenerate}};
}

}  // namespace

TuneResult run_tune(const TuneSpec& spec, TuneBackend& backend, const TuneProgress& progress) {
  validate_tune_spec(spec);
  return Search(spec, backend, progress).run();
}

json run_figures_json(const RunFigures& f, bool with_items) {
  json j{{"samples", f.samples},         {"headlines_per_s", f.headlines_per_s},
         {"latency_p95_ms", f.latency_p95_ms}, {"peak_rss_mb", f.peak_rss_mb},
         {"weight_mb", f.weight_mb},     {"rougeL", f.rougeL},
         {"degenerate_share", f.degenerate_share}, {"seconds", f.seconds}};
  if (with_items) {
    json items = json::array();
    for (const RunItem& it : f.items) items.push_back({it.id, it.rougeL, it.degenerate});
    j["items"] = std::move(items);
  }
  return j;
}

json tune_result_json(const TuneSpec& spec, const TuneResult& r) {
  json doc;
  doc["schema"] = "udaci-tune/1";
  doc["scenario"] = tune_scenario_name(spec.scenario);
  doc["objective"] = tune_objective_name(spec.objective);
  doc["budgets"] = budgets_json(spec.budgets, r.max_degenerate_share);
  doc["budget_s"] = spec.budget_s;
  doc["exhaustive"] = spec.exhaustive;
  doc["workload"] = {{"input", spec.workload.input},
                     {"samples", spec.workload.samples},
                     {"short_samples", spec.workload.short_samples},
                     {"seed", spec.workload.seed},
                     {"concurrency", spec.workload.concurrency},
                     {"max_new_tokens", spec.workload.max_new_tokens}};
  doc["space"] = {{"caches", spec.space.caches},       {"quantizers", spec.space.quantizers},
                  {"pruners", spec.space.pruners},     {"decoders", spec.space.decoders},
                  {"repetition_penalties", spec.space.repetition_penalties},
                  {"repetition_stops", spec.space.repetition_stops},
                  {"batches", spec.space.batches},     {"threads", spec.space.threads}};
  doc["elapsed_s"] = r.elapsed_s;
  doc["budget_ran_out"] = r.budget_ran_out;
  doc["measurements"] = {{"weights", r.weights_measured}, {"short_runs", r.short_runs}, {"full_runs", r.full_runs}};
  doc["reference"] = {{"candidate", r.reference_recipe},
                      {"figures", r.reference ? run_figures_json(*r.reference) : json(nullptr)}};
  json cands = json::array();
  for (const CandidateReport& c : r.candidates) {
    json j;
    j["recipe"] = c.candidate.recipe();
    j["batch"] = c.candidate.batch;
    j["threads"] = c.candidate.threads;
    j["repetition_stop"] = c.candidate.repetition_stop;
    j["label"] = c.candidate.label();
    j["verdict"] = tune_verdict_name(c.verdict);
    j["why"] = c.why;
    j["misses"] = c.misses;
    j["weights"] = c.weights ? json{{"weight_mb", c.weights->weight_mb},
                                    {"mean_kld", c.weights->mean_kld},
                                    {"top1_agreement", c.weights->top1_agreement}}
                             : json(nullptr);
    j["short"] = c.short_run ? run_figures_json(*c.short_run) : json(nullptr);
    j["full"] = c.full_run ? run_figures_json(*c.full_run) : json(nullptr);
    j["rougeL_vs_fp32"] = c.rouge_delta ? json{{"mean", *c.rouge_delta}, {"ci95", {*c.rouge_delta_low, *c.rouge_delta_high}}}
                                        : json(nullptr);
    cands.push_back(std::move(j));
  }
  doc["candidates"] = std::move(cands);
  doc["chosen"] = r.chosen ? json(*r.chosen) : json(nullptr);
  doc["pareto"] = r.pareto;
  doc["closest"] = r.closest;
  return doc;
}

std::string tune_markdown(const TuneSpec& spec, const TuneResult& r) {
  std::string md;
  md += fmt::format("# udaci tune: scenario {}, objective {}\n\n", tune_scenario_name(spec.scenario),
                    tune_objective_name(spec.objective));
  md += fmt::format("{} candidates; measured: {} weight sets, {} short runs ({} articles), {} full runs ({} articles, "
                    "{} in flight); {:.0f} s of a {:.0f} s budget{}.\n\n",
                    r.candidates.size(), r.weights_measured, r.short_runs, spec.workload.short_samples, r.full_runs,
                    spec.workload.samples, spec.workload.concurrency, r.elapsed_s, spec.budget_s,
                    r.budget_ran_out ? " (it ran out)" : "");
  if (r.chosen) {
    const CandidateReport& c = r.candidates[*r.chosen];
    md += fmt::format("**Chosen:** `{}`, batch {}, {} threads — {}.\n\n", c.candidate.recipe(), c.candidate.batch,
                      c.candidate.threads, c.why);
  } else {
    md += "**No candidate meets every budget.** The closest:\n\n";
    for (size_t i : r.closest) {
      const CandidateReport& c = r.candidates[i];
      std::string m;
      for (const std::string& s : c.misses) m += (m.empty() ? "" : "; ") + s;
      md += fmt::format("- `{}` — misses {}\n", c.candidate.label(), m);
    }
    md += "\n";
  }
  if (r.reference)
    md += fmt::format("fp32 reference (`{}`): ROUGE-L {:.4f}, {:.1f}% degenerate headlines, {:.2f} headlines/s.\n\n",
                      r.reference_recipe, r.reference->rougeL, 100 * r.reference->degenerate_share,
                      r.reference->headlines_per_s);
  md += "## Fully measured (Pareto front marked ★)\n\n";
  md += "| | Recipe | Batch | Threads | Headlines/s | p95 latency (ms) | Peak RSS (MB) | Weights (MB) | KL vs fp32 "
        "| ROUGE-L | ΔROUGE-L vs fp32 (95% CI) | Degenerate | Verdict |\n";
  md += "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|---|\n";
  const std::set<size_t> pareto(r.pareto.begin(), r.pareto.end());
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const CandidateReport& c = r.candidates[i];
    if (!c.full_run) continue;
    const RunFigures& f = *c.full_run;
    const std::string delta =
        c.rouge_delta ? fmt::format("{:+.4f} ({:+.4f} .. {:+.4f})", *c.rouge_delta, *c.rouge_delta_low, *c.rouge_delta_high)
                      : "—";
    md += fmt::format("| {} | `{}` | {} | {} | {:.2f} | {:.0f} | {:.0f} | {:.0f} | {} | {:.4f} | {} | {:.1f}% | {} |\n",
                      pareto.count(i) ? "★" : "", c.candidate.recipe(), c.candidate.batch, c.candidate.threads,
                      f.headlines_per_s, f.latency_p95_ms, f.peak_rss_mb, f.weight_mb,
                      c.weights ? fmt::format("{:.4f}", c.weights->mean_kld) : std::string("—"), f.rougeL, delta,
                      100 * f.degenerate_share, tune_verdict_name(c.verdict));
  }
  md += "\n## Every candidate\n\n" + tune_explain(spec, r);
  return md;
}

std::string tune_explain(const TuneSpec&, const TuneResult& r) {
  std::string out;
  for (const CandidateReport& c : r.candidates)
    out += fmt::format("- `{}` — {}: {}\n", c.candidate.label(), tune_verdict_name(c.verdict), c.why);
  return out;
}

}  // namespace udaci
