// `udaci tune` (issue #26, M17): the deployment recommendation, measured on
// the user's machine, model and articles instead of asserted.
//
// The search space is recipes (engine/recipe.hpp) over caches × quantizers ×
// pruners × decoders (with the greedy decoder's repetition penalty) × the
// repetition stop × the scheduler's batch × threads. Measurements are dear (a full run of 50
// articles takes tens of seconds), so the search spends them in order of
// price and prunes with what the cheap ones say:
//
//   1. weights   per distinct quantizer × pruner: resident weight bytes and
//                the KL divergence from the fp32 model on a few hundred
//                tokens (seconds each). A weight set over the memory budget
//                or the KL floor removes every candidate built on it.
//   2. short     a run of a few articles per candidate, factorised: one probe
//                per surviving weight set, then, from the best ones, one
//                dimension at a time (coordinate descent) while it improves
//                the scenario's objective.
//   3. full      the best candidates by the short estimates, each over the
//                whole workload, plus the fp32 greedy reference the quality
//                floor is paired against (ROUGE-L per article, bootstrap
//                95% interval; the share of degenerate headlines).
//
// No measurement starts unless its predicted duration fits in what is left
// of the budget. The choice is the best fully measured candidate meeting
// every budget by the scenario's objective; the Pareto front (headlines/s,
// p95 latency, peak memory, ROUGE-L) and, for every other candidate, why it
// lost are reported. When nothing meets the budgets the closest candidates
// are returned with what each misses.
//
// The search talks to measurements through TuneBackend, so it is tested on
// a fake backend (tests/unit/test_tune.cpp); tune/bench_backend.hpp runs the
// real ones through `udaci bench` workers.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace udaci {

enum class TuneScenario { kCustom, kEdge, kServer, kRealtime, kCost };

// "edge", "server", "realtime", "cost" (and "custom": explicit budgets
// only); Error(kInvalidArgument) listing them otherwise.
TuneScenario parse_tune_scenario(const std::string& name);
const char* tune_scenario_name(TuneScenario scenario);

// What "best" means in a scenario.
enum class TuneObjective {
  kHeadlinesPerS,      // server, custom: throughput
  kLatencyP95,         // realtime: p95 request latency (queueing included)
  kMemory,             // edge: peak resident memory
  kHeadlinesPerCoreS,  // cost: headlines per core-second
};
const char* tune_objective_name(TuneObjective objective);

// The user's limits; a field left at its "none" value is no limit.
struct TuneBudgets {
  double max_memory_mb = 0;         // peak RSS of the serving process; 0: none
  double max_latency_p95_ms = 0;    // p95 request latency, queueing included; 0: none
  double min_headlines_per_s = 0;   // 0: none
  double max_kld = -1;              // mean KL divergence vs fp32, nats; < 0: none
  // Paired ROUGE-L vs the fp32 greedy reference on the same articles: a
  // candidate misses it when the mean difference is below -max_rouge_drop
  // and its bootstrap 95% interval lies below 0 (measurably worse, not
  // noise). < 0: none.
  double max_rouge_drop = -1;
  // Share of empty / repetitive / overlong headlines (eval/headline_quality.hpp);
  // < 0: the reference's share + 0.05.
  double max_degenerate_share = -1;
};

// The values of each dimension. Recipe parts as written in a recipe
// ("kv-cache", "paged{kv=int8}", "int4{group=64}", "spec-lookup").
struct TuneSpace {
  std::vector<std::string> caches, quantizers, pruners, decoders;
  std::vector<double> repetition_penalties;  // applied to the "greedy" decoder only
  // The engine's repetition stop (config generation.repetition_stop), in
  // tokens; 0: off. Applies to every decoder.
  std::vector<int64_t> repetition_stops;
  std::vector<size_t> batches;               // the scheduler's max_sequences
  std::vector<int> threads;
};

// The engine's default repetition stop (EngineConfig::Generation).
inline constexpr int64_t kDefaultRepetitionStop = 8;

struct TuneCandidate {
  std::string cache, quantizer, pruner, decoder;
  double repetition_penalty = 1.0;
  size_t batch = 1;
  int threads = 1;
  int64_t repetition_stop = kDefaultRepetitionStop;  // the engine's generation.repetition_stop
  // cache+quantizer+pruner+decoder, the penalty as the greedy decoder's
  // option when it is not 1: a recipe every front end reads.
  std::string recipe() const;
  // quantizer+pruner: what the model's logits depend on.
  std::string weights() const;
  // recipe, batch, threads and (when not the default) the repetition stop:
  // the candidate's identity in reports and caches.
  std::string label() const;
};

// The workload the candidates are measured on.
struct TuneWorkload {
  std::string input;           // news records (JSONL)
  size_t samples = 50;         // articles in a full run
  size_t short_samples = 8;    // articles in a short run
  uint64_t seed = 0;
  size_t concurrency = 1;      // requests in flight (closed-loop clients)
  int64_t max_new_tokens = 32;
};

struct TuneSpec {
  TuneScenario scenario = TuneScenario::kServer;
  TuneObjective objective = TuneObjective::kHeadlinesPerS;
  TuneBudgets budgets;
  TuneSpace space;
  TuneWorkload workload;
  double budget_s = 600;       // wall-clock budget of the whole search
  // Measure every candidate fully (no pruning): the sweep a tuned choice is
  // validated against. The budget still bounds it.
  bool exhaustive = false;
  size_t max_full_runs = 3;    // full runs after exploring the weight sets (not exhaustive)
  // The weight set and decoder of the fp32 reference ("no-quant+no-prune", "greedy").
  std::string reference_cache = "kv-cache";
  // The reference's repetition stop (the base config's).
  int64_t reference_repetition_stop = kDefaultRepetitionStop;
};

// The scenario's objective, default space and default budgets; the budgets
// and space given explicitly keep their values (fields at their "none"
// value / empty vectors take the scenario's). `cores`: the machine's.
TuneSpec tune_preset(TuneScenario scenario, int cores);

// Everything refused before anything runs: negative or non-finite budgets,
// an empty dimension, a batch of 0, contradictory settings (realtime with
// concurrency > 1, a min throughput above what concurrency / latency budget
// allow, short_samples > samples ...). Error(kInvalidArgument) naming the
// flag.
void validate_tune_spec(const TuneSpec& spec);

// Every combination, penalties other than 1 only with "greedy", batches above
// the concurrency dropped (their extra places would stay empty) except the
// smallest.
std::vector<TuneCandidate> enumerate_candidates(const TuneSpec& spec);

// Stage 1's figures for a weight set.
struct WeightsFigures {
  double weight_mb = 0;
  double mean_kld = 0;
  double top1_agreement = 1;
  double seconds = 0;  // what the measurement took
};

// A run of `samples` articles.
struct RunItem {
  int64_t id = 0;      // the article's line in the input
  double rougeL = 0;
  bool degenerate = false;
};
struct RunFigures {
  size_t samples = 0;
  double headlines_per_s = 0;
  double latency_p95_ms = 0;   // request latency, queueing included
  double peak_rss_mb = 0;
  double weight_mb = 0;
  double rougeL = 0;
  double degenerate_share = 0;
  std::vector<RunItem> items;
  double seconds = 0;  // what the measurement took (load included)
};

class TuneBackend {
 public:
  virtual ~TuneBackend() = default;
  // Stage 1 for candidate.weights(). Throws udaci::Error when the weight set
  // cannot be built (the candidates on it are then reported as failed).
  virtual WeightsFigures weights(const TuneCandidate& candidate) = 0;
  // A run of the workload's first `samples` articles.
  virtual RunFigures run(const TuneCandidate& candidate, size_t samples) = 0;
  // Seconds since the search began (a fake clock in tests).
  virtual double elapsed_s() const = 0;
};

// How a candidate ended.
enum class TuneVerdict {
  kChosen,
  kPareto,            // on the Pareto front, not chosen (the objective preferred another)
  kFeasible,          // meets every budget, dominated
  kInfeasible,        // measured fully, misses a budget
  kDiscarded,         // stage 1 or a short run showed it cannot meet a budget
  kOutranked,         // short-run estimate below the candidates measured fully
  kNotMeasured,       // pruned by the search or the budget ran out first
  kFailed,            // a measurement failed
};
const char* tune_verdict_name(TuneVerdict verdict);

struct CandidateReport {
  TuneCandidate candidate;
  std::optional<WeightsFigures> weights;
  std::optional<RunFigures> short_run, full_run;
  // Paired vs the reference (full runs): mean ROUGE-L difference, 95% CI.
  std::optional<double> rouge_delta, rouge_delta_low, rouge_delta_high;
  std::vector<std::string> misses;  // budgets missed, e.g. "p95 latency 820 ms > 500 ms"
  TuneVerdict verdict = TuneVerdict::kNotMeasured;
  std::string why;                  // one sentence: why it lost (or won)
};

struct TuneResult {
  std::vector<CandidateReport> candidates;
  std::optional<size_t> chosen;     // index into candidates
  std::vector<size_t> pareto;       // fully measured, non-dominated
  std::vector<size_t> closest;      // nothing feasible: the nearest misses, nearest first
  std::optional<RunFigures> reference;
  std::string reference_recipe;
  double max_degenerate_share = 0;  // the floor applied (budget or reference + 0.05)
  double elapsed_s = 0;
  size_t weights_measured = 0, short_runs = 0, full_runs = 0;
  bool budget_ran_out = false;
};

// Progress lines for stderr ("[tune 1:23/10:00] short 5: ..."); may be empty.
using TuneProgress = std::function<void(const std::string& line)>;

TuneResult run_tune(const TuneSpec& spec, TuneBackend& backend, const TuneProgress& progress = {});

// The objective of a run's figures as a score to maximise (latency and memory
// negated).
double tune_score(TuneObjective objective, const RunFigures& figures, int threads);

// Budgets a run misses, as sentences ("peak memory 612 MB > 500 MB").
std::vector<std::string> budget_misses(const TuneBudgets& budgets, const RunFigures& figures);

// A run's figures as JSON (the report's "short"/"full" objects; with its
// per-article items, as the measurement cache stores them).
nlohmann::json run_figures_json(const RunFigures& figures, bool with_items = false);

// The result as JSON (schema "udaci-tune/1"), Markdown, and the explanation
// of every candidate (--explain).
nlohmann::json tune_result_json(const TuneSpec& spec, const TuneResult& result);
std::string tune_markdown(const TuneSpec& spec, const TuneResult& result);
std::string tune_explain(const TuneSpec& spec, const TuneResult& result);

}  // namespace udaci
