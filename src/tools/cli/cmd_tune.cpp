// `udaci tune` (issue #26): searches recipes × batch × threads for the
// configuration to deploy under the user's budgets, on the user's machine,
// model and articles (src/tune/tuner.hpp), and writes the Pareto front
// (JSON, Markdown, a PNG when python3 with matplotlib is there) and the
// chosen configuration as a config file every front end loads.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "bench/bench_runner.hpp"
#include "core/error.hpp"
#include "udaci/version.h"
#include "engine/recipe.hpp"
#include "tools/cli/common.hpp"
#include "tune/bench_backend.hpp"
#include "tune/measurement_cache.hpp"
#include "tune/tuner.hpp"

namespace udaci::cli {

namespace {

using nlohmann::json;

struct TuneArgs {
  EngineFlags engine;
  std::string scenario = "server";
  double max_memory_mb = 0, max_latency_p95_ms = 0, min_headlines_per_s = 0;
  double max_kld = -1, max_rouge_drop = -1, max_degenerate = -1;
  size_t concurrency = 0;
  std::string input;
  size_t samples = 50, short_samples = 8;
  uint64_t seed = 0;
  int64_t max_new_tokens = 32;
  double budget_minutes = 10;
  bool exhaustive = false;
  size_t full_runs = 3;
  std::string caches, quantizers, pruners, decoders, penalties, repetition_stops, batches, threads_list;
  std::string out = "tune-out";
  std::string cache_dir;
  bool no_cache = false;
  bool explain = false;
  bool quiet = false;
  std::map<std::string, CLI::Option*> given;
  bool was_given(const std::string& flag) const {
    auto it = given.find(flag);
    return it != given.end() && it->second->count() > 0;
  }
};

template <typename T, typename Parse>
std::vector<T> list_of(const std::string& text, const char* flag, Parse parse) {
  std::vector<T> out;
  for (const std::string& item : split_recipe_list(text)) {
    try {
      out.push_back(parse(item));
    } catch (const std::exception&) {
      fail(Status::kInvalidArgument, "tune: {}: '{}' is not a valid value", flag, item);
    }
  }
  UDACI_CHECK(!out.empty(), "tune: {} lists no value", flag);
  return out;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  UDACI_CHECK_S(Status::kNotFound, f.good(), "tune: cannot write '{}'", path);
  f << text;
  f.close();
  UDACI_CHECK_S(Status::kInternal, !f.fail(), "tune: writing '{}' failed", path);
}

std::string default_cache_path() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0')
    return std::string(x) + "/udaci/tune/measurements.jsonl";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0')
    return std::string(h) + "/.cache/udaci/tune/measurements.jsonl";
  return ".udaci-tune-cache/measurements.jsonl";
}

// The chart script beside the sources this binary was built from, when it
// is there (an installed binary without the tree prints the command).
std::string plot_script() {
#ifdef UDACI_SOURCE_DIR
  const std::string p = std::string(UDACI_SOURCE_DIR) + "/tools/bench/plot_tune.py";
  if (access(p.c_str(), R_OK) == 0) return p;
#endif
  return "tools/bench/plot_tune.py";
}

TuneSpec spec_from(const TuneArgs& a, const GlobalOptions& global) {
  const TuneScenario scenario = parse_tune_scenario(a.scenario);
  TuneSpec s = tune_preset(scenario, default_threads());
  // Flags over the scenario's defaults; refused before anything runs.
  auto non_negative = [&](const char* flag, double v) {
    UDACI_CHECK(!a.was_given(flag) || (std::isfinite(v) && v >= 0), "tune: {} must be >= 0, got {}", flag, v);
  };
  non_negative("--max-memory-mb", a.max_memory_mb);
  non_negative("--max-latency-p95-ms", a.max_latency_p95_ms);
  non_negative("--min-headlines-per-s", a.min_headlines_per_s);
  non_negative("--max-kld", a.max_kld);
  non_negative("--max-rouge-drop", a.max_rouge_drop);
  non_negative("--max-degenerate", a.max_degenerate);
  UDACI_CHECK(!a.was_given("--max-memory-mb") || a.max_memory_mb > 0,
              "tune: --max-memory-mb 0 leaves no memory; leave the flag out for no limit");
  UDACI_CHECK(!a.was_given("--min-headlines-per-s") || a.min_headlines_per_s > 0,
              "tune: --min-headlines-per-s must be > 0; leave the flag out for no floor");
  UDACI_CHECK(!a.was_given("--max-latency-p95-ms") || a.max_latency_p95_ms > 0,
              "tune: --max-latency-p95-ms must be > 0; leave the flag out for no limit");
  UDACI_CHECK(!(a.exhaustive && a.was_given("--full-runs")),
              "tune: --exhaustive measures every candidate fully; --full-runs contradicts it");
  UDACI_CHECK(std::isfinite(a.budget_minutes) && a.budget_minutes > 0 && a.budget_minutes <= 7 * 24 * 60,
              "tune: --budget-minutes must be in (0, 10080], got {}", a.budget_minutes);
  if (a.was_given("--max-memory-mb")) s.budgets.max_memory_mb = a.max_memory_mb;
  if (a.was_given("--max-latency-p95-ms")) s.budgets.max_latency_p95_ms = a.max_latency_p95_ms;
  if (a.was_given("--min-headlines-per-s")) s.budgets.min_headlines_per_s = a.min_headlines_per_s;
  if (a.was_given("--max-kld")) s.budgets.max_kld = a.max_kld;
  if (a.was_given("--max-rouge-drop")) s.budgets.max_rouge_drop = a.max_rouge_drop;
  if (a.was_given("--max-degenerate")) s.budgets.max_degenerate_share = a.max_degenerate;
  if (a.was_given("--concurrency")) s.workload.concurrency = a.concurrency;
  s.workload.samples = a.samples;
  // A short run sees every place of the batch taken and some queueing:
  // twice the requests in flight, at least 8, at most half a full run.
  s.workload.short_samples =
      a.was_given("--short-samples")
          ? a.short_samples
          : std::max<size_t>(1, std::min(std::max<size_t>(8, 2 * s.workload.concurrency), a.samples / 2));
  s.workload.seed = a.seed;
  s.workload.max_new_tokens = a.max_new_tokens;
  s.budget_s = a.budget_minutes * 60;
  s.exhaustive = a.exhaustive;
  s.max_full_runs = a.full_runs;
  auto strings = [](const std::string& t, const char* flag) {
    return list_of<std::string>(t, flag, [](const std::string& x) { return x; });
  };
  if (a.was_given("--caches")) s.space.caches = strings(a.caches, "--caches");
  if (a.was_given("--quantizers")) s.space.quantizers = strings(a.quantizers, "--quantizers");
  if (a.was_given("--pruners")) s.space.pruners = strings(a.pruners, "--pruners");
  if (a.was_given("--decoders")) s.space.decoders = strings(a.decoders, "--decoders");
  if (a.was_given("--repetition-penalties"))
    s.space.repetition_penalties = list_of<double>(a.penalties, "--repetition-penalties", [](const std::string& x) {
      size_t used = 0;
      const double v = std::stod(x, &used);
      if (used != x.size()) throw std::invalid_argument(x);
      return v;
    });
  auto integer = [](const std::string& x) {
    size_t used = 0;
    const long long v = std::stoll(x, &used);
    if (used != x.size() || v < 0) throw std::invalid_argument(x);
    return v;
  };
  if (a.was_given("--repetition-stops"))
    s.space.repetition_stops = list_of<int64_t>(a.repetition_stops, "--repetition-stops",
                                                [&](const std::string& x) { return static_cast<int64_t>(integer(x)); });
  if (a.was_given("--batches"))
    s.space.batches = list_of<size_t>(a.batches, "--batches", [&](const std::string& x) { return static_cast<size_t>(integer(x)); });
  if (a.was_given("--threads-list"))
    s.space.threads = list_of<int>(a.threads_list, "--threads-list", [&](const std::string& x) { return static_cast<int>(integer(x)); });
  else if (global.threads_given)
    s.space.threads = {global.threads};
  validate_tune_spec(s);
  // After the budgets: a bad flag is reported before a missing news file.
  s.workload.input = a.input.empty() ? default_bench_input() : a.input;
  return s;
}

int cmd_tune(const TuneArgs& a, const GlobalOptions& global) {
  TuneSpec spec = spec_from(a, global);
  // The model, prompt and device every candidate shares (its strategy slots
  // are the candidates'); a bad config file fails here, before any run.
  EngineConfig base = engine_config_from(a.engine, global);
  // A --config that sets generation.repetition_stop stands for the default
  // stop: in the reference, and in the scenario's space unless
  // --repetition-stops gives it.
  spec.reference_repetition_stop = base.generation.repetition_stop;
  if (!a.was_given("--repetition-stops")) {
    std::vector<int64_t> stops;
    for (int64_t v : spec.space.repetition_stops) {
      if (v == kDefaultRepetitionStop) v = base.generation.repetition_stop;
      if (std::find(stops.begin(), stops.end(), v) == stops.end()) stops.push_back(v);
    }
    spec.space.repetition_stops = stops;
  }
  {
    std::ifstream probe(spec.workload.input);
    UDACI_CHECK_S(Status::kNotFound, probe.good(), "tune: cannot open --input '{}'", spec.workload.input);
  }
  if (mkdir(a.out.c_str(), 0755) != 0 && errno != EEXIST)
    fail(Status::kNotFound, "tune: cannot create --out folder '{}'", a.out);
  const std::string exe = self_exe(global.argv0);

  BenchTuneBackend real(base, spec.workload, exe);
  const std::string cache_path = a.no_cache ? "" : (a.cache_dir.empty() ? default_cache_path() : a.cache_dir + "/measurements.jsonl");
  CachedTuneBackend backend(real, cache_path, tune_cache_context(base, spec.workload, exe));
  if (!a.quiet && backend.stored() > 0)
    std::fprintf(stderr, "[tune] %zu cached measurements in %s\n", backend.stored(), cache_path.c_str());
  const TuneProgress progress = [&](const std::string& line) {
    if (!a.quiet) std::fprintf(stderr, "%s\n", line.c_str());
  };
  const TuneResult result = run_tune(spec, backend, progress);

  json doc = tune_result_json(spec, result);
  doc["model"] = base.model_path;
  {
    const std::time_t now = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    doc["created_utc"] = buf;
  }
  doc["git_commit"] = source_commit();
  doc["udaci_version"] = UDACI_VERSION_STRING;
  doc["machine"] = machine_json(global.threads);
  doc["cache"] = {{"path", cache_path}, {"hits", backend.hits()}};
  const std::string json_path = a.out + "/tune.json";
  const std::string md_path = a.out + "/tune.md";
  const std::string config_path = a.out + "/tuned.json";
  std::string md = tune_markdown(spec, result);
  if (result.chosen) {
    const CandidateReport& c = result.candidates[*result.chosen];
    EngineConfig tuned = base;
    tuned.set_recipe(c.candidate.recipe());
    tuned.scheduler.max_sequences = static_cast<int64_t>(c.candidate.batch);
    tuned.threads = c.candidate.threads;
    tuned.generation.repetition_stop = c.candidate.repetition_stop;
    tuned.validate();
    write_file(config_path, tuned.to_json() + "\n");
    doc["config_file"] = config_path;
    md += fmt::format("\nRe-measure the choice: `udaci bench --config {} --samples {} --concurrency {} --seed {}`\n",
                      config_path, spec.workload.samples, spec.workload.concurrency, spec.workload.seed);
  } else {
    std::remove(config_path.c_str());
  }
  write_file(json_path, doc.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
  write_file(md_path, md);

  // The chart: quality vs speed and memory vs speed, the front marked.
  const std::string png = a.out + "/pareto.png";
  const std::string plot = fmt::format("python3 '{}' '{}' --out '{}'", plot_script(), json_path, png);
  const int rc = std::system((plot + (a.quiet ? " >/dev/null 2>&1" : " >&2")).c_str());
  if (rc != 0 && !a.quiet)
    std::fprintf(stderr, "[tune] no chart (needs python3 with matplotlib): %s\n", plot.c_str());

  // stdout: the verdict and where everything is.
  std::ostringstream so;
  if (result.chosen) {
    const CandidateReport& c = result.candidates[*result.chosen];
    so << fmt::format("chosen: {} batch={} threads={}\n  {}\n", c.candidate.recipe(), c.candidate.batch,
                      c.candidate.threads, c.why);
    so << fmt::format("config: {}\n", config_path);
  } else {
    so << "no candidate meets every budget; the closest:\n";
    for (size_t i : result.closest) {
      const CandidateReport& c = result.candidates[i];
      std::string m;
      for (const std::string& x : c.misses) m += (m.empty() ? "" : "; ") + x;
      so << fmt::format("  {} — misses {}\n", c.candidate.label(), m);
    }
  }
  so << fmt::format("pareto front: {} of {} fully measured; report: {}, {}\n", result.pareto.size(), result.full_runs,
                    md_path, json_path);
  if (a.explain) so << "\n" << tune_explain(spec, result);
  std::cout << so.str();
  // No feasible candidate is an answer, not an error: exit 2 so scripts see it.
  return result.chosen ? 0 : 2;
}

}  // namespace

CommandRun setup_tune(CLI::App& sub) {
  auto a = std::make_shared<TuneArgs>();
  add_engine_flags(sub, a->engine, false);
  auto opt = [&](const std::string& flag, auto& var, const std::string& help) {
    CLI::Option* o = sub.add_option(flag, var, help);
    a->given[flag] = o;
    return o;
  };
  opt("--scenario", a->scenario,
      "edge (least memory), server (most headlines/s under --concurrency 16), realtime (lowest p95 latency, one "
      "request at a time), cost (headlines per core-second), custom (budgets only); default server");
  opt("--max-memory-mb", a->max_memory_mb, "peak resident memory of the serving process, MB");
  opt("--max-latency-p95-ms", a->max_latency_p95_ms, "p95 request latency (queueing included), ms");
  opt("--min-headlines-per-s", a->min_headlines_per_s, "throughput floor");
  opt("--concurrency", a->concurrency, "requests in flight (closed-loop clients); default: the scenario's")
      ->check(CLI::Range(size_t{1}, size_t{4096}));
  opt("--max-kld", a->max_kld, "mean KL divergence from the fp32 model, nats (default: none)");
  opt("--max-rouge-drop", a->max_rouge_drop,
      "largest mean paired ROUGE-L drop vs the fp32 greedy reference on the same articles (default 0.02)");
  opt("--max-degenerate", a->max_degenerate,
      "largest share of empty, repetitive or overlong headlines (default: the reference's + 0.05)");
  opt("--input", a->input, "news records, JSONL (default: $UDACI_NEWS, else the ../shared/assets/news sample)");
  opt("--samples", a->samples, "articles of a full run (default 50)")->check(CLI::Range(size_t{2}, size_t{100000}));
  opt("--short-samples", a->short_samples,
      "articles of a short run (default: twice --concurrency, at least 8, at most half of --samples)")
      ->check(CLI::Range(size_t{1}, size_t{100000}));
  opt("--seed", a->seed, "article sample seed");
  opt("--max-new-tokens", a->max_new_tokens, "tokens per headline at most")->check(CLI::Range(int64_t{1}, int64_t{4096}));
  opt("--budget-minutes", a->budget_minutes, "wall-clock budget of the search (default 10)");
  a->given["--exhaustive"] = sub.add_flag("--exhaustive", a->exhaustive,
                                          "measure every candidate fully, no pruning (the sweep to validate against)");
  opt("--full-runs", a->full_runs, "more candidates measured fully after the best of each explored weight set (default 3)")
      ->check(CLI::Range(size_t{1}, size_t{1000}));
  opt("--caches", a->caches, "cache values of the space, comma-separated recipe parts (e.g. kv-cache,paged-prefix)");
  opt("--quantizers", a->quantizers, "quantizer values (e.g. as-stored,int8,int4{group=64})");
  opt("--pruners", a->pruners, "pruner values (e.g. no-prune,prune-2of4)");
  opt("--decoders", a->decoders, "decoder values (e.g. greedy,spec-lookup,beam{width=4})");
  opt("--repetition-penalties", a->penalties, "the greedy decoder's repetition penalties (e.g. 1,1.15)");
  opt("--repetition-stops", a->repetition_stops,
      "repetition stops in tokens, 0 = off (e.g. 0,8,16; the engine's generation.repetition_stop)");
  opt("--batches", a->batches, "the scheduler's max_sequences values (e.g. 4,8,16)");
  opt("--threads-list", a->threads_list, "thread counts (default: the scenario's; --threads N fixes one)");
  opt("--out", a->out, "folder for tune.json, tune.md, pareto.png and tuned.json (default tune-out)");
  opt("--cache-dir", a->cache_dir, "measurement cache folder (default ~/.cache/udaci/tune)");
  sub.add_flag("--no-cache", a->no_cache, "measure everything again and keep nothing");
  sub.add_flag("--explain", a->explain, "say why each other candidate lost");
  sub.add_flag("--quiet", a->quiet, "no progress on stderr");
  return [a](const GlobalOptions& global) { return cmd_tune(*a, global); };
}

}  // namespace udaci::cli
