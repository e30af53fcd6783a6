// `udaci bench`: latency, throughput, memory and ROUGE of technique
// configurations on news articles, each configuration run by a hidden
// `udaci bench-worker` process (bench/bench_runner.hpp); a Markdown table on
// stdout, the full results with --json. Also `udaci techniques`, the
// catalogue that `bench --list` prints (or, with --json, the C ABI's).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <unistd.h>

#include "bench/bench_runner.hpp"
#include "engine/headline_engine.hpp"
#include "core/error.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

using nlohmann::json;

struct BenchRunArgs {
  EngineFlags engine;
  std::string techniques = "baseline,kv-cache";
  std::vector<std::string> recipes;
  size_t samples = 100;
  std::string input;
  std::string json_out;
  std::string markdown_out;
  size_t batch = 1;
  size_t concurrency = 0;
  std::string draft_model;
  uint64_t seed = 0;
  int64_t max_new_tokens = 32;
  int64_t repetition_stop = HeadlineOptions::kEngineDefault;
  size_t warmup = 2;
  std::string category;
  bool list = false;
  bool quiet = false;
};

// The technique catalogue, one line each, saying which this build cannot run.
int list_techniques() {
  const StrategyRegistry& reg = builtin_strategies();
  for (const Technique& t : technique_catalogue()) {
    const std::string why = technique_unavailable(t, reg);
    std::cout << fmt::format("{:<18} {:<13} {:<9} {}{}\n", t.name, t.category, t.issue, t.description,
                             why.empty() ? "" : "  [unavailable: " + why + "]");
  }
  return 0;
}

int cmd_bench(const BenchRunArgs& a, const GlobalOptions& global, const std::string& exe) {
  if (a.list) return list_techniques();
  // --recipe R (repeatable) adds R to the --techniques list.
  std::vector<std::string> techniques = split_technique_list(a.techniques);
  if (!a.recipes.empty()) {
    if (!a.engine.given("--techniques")) techniques.clear();
    for (const std::string& r : a.recipes) techniques.push_back(r);
  }
  BenchConfig base;
  base.draft_model = a.draft_model;
  // Recipes and the config first: a misspelt technique is reported before
  // anything is looked up.
  for (const std::string& name : techniques) resolve_technique(name, base, builtin_strategies());
  base.engine = engine_config_from(a.engine, global);
  // --config alone measures the configuration itself (its recipe, and its
  // scheduler's max_sequences as the batch): `udaci bench --config tuned.json`
  // re-measures what `udaci tune` chose.
  const bool config_itself = a.engine.given("--config") && !a.engine.given("--techniques") && a.recipes.empty();
  if (config_itself) techniques = {base.engine.recipe()};
  BenchSettings s;
  s.input = a.input.empty() ? default_bench_input() : a.input;
  s.samples = a.samples;
  s.seed = a.seed;
  s.category = a.category;
  s.batch = config_itself && !a.engine.given("--batch") ? static_cast<size_t>(base.engine.scheduler.max_sequences)
                                                         : a.batch;
  s.concurrency = a.concurrency;
  s.max_new_tokens = a.max_new_tokens;
  s.repetition_stop = a.repetition_stop;
  s.warmup = a.warmup;
  // A config file's "threads" unless --threads is given (engine_config_from
  // put that over the file's).
  s.threads = base.engine.threads > 0 ? base.engine.threads : global.threads;
  s.progress = !a.quiet;
  const json doc = run_benchmark(techniques, base, s, exe);
  const std::string text = doc.dump(1, ' ', false, json::error_handler_t::replace);
  if (!a.json_out.empty()) {
    std::ofstream f(a.json_out, std::ios::binary | std::ios::trunc);
    UDACI_CHECK_S(Status::kNotFound, f.good(), "bench: cannot write --json '{}'", a.json_out);
    f << text << "\n";
    UDACI_CHECK_S(Status::kInternal, f.good(), "bench: writing '{}' failed", a.json_out);
  }
  const std::string md = bench_markdown(doc);
  if (!a.markdown_out.empty()) {
    std::ofstream f(a.markdown_out, std::ios::binary | std::ios::trunc);
    UDACI_CHECK_S(Status::kNotFound, f.good(), "bench: cannot write --markdown '{}'", a.markdown_out);
    f << md;
  }
  std::cout << md;
  // Techniques that could not run are listed, not fatal; a worker that failed is.
  return doc.at("failed").empty() ? 0 : 1;
}

}  // namespace

CommandRun setup_bench(CLI::App& sub) {
  auto a = std::make_shared<BenchRunArgs>();
  a->engine.options["--techniques"] = sub.add_option(
      "--techniques", a->techniques,
      "comma-separated recipes over the benchmark's base (kv-cache+no-quant+greedy), e.g. "
      "baseline,kv-cache,int4{group=64}+paged-prefix (see --list); with --config and neither "
      "--techniques nor --recipe: the config's own recipe");
  sub.add_option("--recipe", a->recipes, "one more recipe to measure (repeatable; replaces the default list)")
      ->allow_extra_args(false);
  add_engine_flags(sub, a->engine, false);
  sub.add_option("--samples", a->samples, "articles per configuration")
      ->check(CLI::Range(size_t{1}, size_t{1000000}));
  sub.add_option("--input", a->input,
                 "News Category Dataset JSONL (default: $UDACI_NEWS, else the ../shared/assets/news sample)");
  sub.add_option("--json", a->json_out, "write the full results (schema udaci-bench/1) here");
  sub.add_option("--markdown", a->markdown_out, "write the Markdown table here too");
  a->engine.options["--batch"] =
      sub.add_option("--batch", a->batch,
                     "articles decoded together (the scheduler's max_sequences; with --config alone, the "
                     "config's)")
          ->check(CLI::Range(size_t{1}, size_t{1024}));
  sub.add_option("--concurrency", a->concurrency,
                 "requests in flight: 0 (default) queues every article at once, N keeps N clients busy "
                 "(each sends its next article when its headline is back)")
      ->check(CLI::Range(size_t{0}, size_t{4096}));
  sub.add_option("--draft-model", a->draft_model, "draft model for spec-draft");
  sub.add_option("--seed", a->seed, "article sample seed");
  sub.add_option("--max-new-tokens", a->max_new_tokens, "tokens per headline at most")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  sub.add_option("--repetition-stop", a->repetition_stop, "stop a headline when its last N tokens repeat a run it already produced, cut before the repeat (finish reason repetition); 0 = off; default: the config's generation.repetition_stop, 8 unless a --config file sets it")
      ->check(CLI::Range(int64_t{0}, HeadlineOptions::kMaxRepetitionStop));
  sub.add_option("--warmup", a->warmup, "articles run first, not measured");
  sub.add_option("--category", a->category, "only articles of this category");
  sub.add_flag("--list", a->list, "list the techniques and whether this build can run them");
  sub.add_flag("--quiet", a->quiet, "no progress on stderr");
  return [a](const GlobalOptions& global) { return cmd_bench(*a, global, self_exe(global.argv0)); };
}

CommandRun setup_techniques(CLI::App& sub) {
  auto json_out = std::make_shared<bool>(false);
  sub.add_flag("--json", *json_out, "the catalogue as JSON (as the C ABI's udaci_techniques)");
  return [json_out](const GlobalOptions&) {
    if (!*json_out) return list_techniques();
    std::cout << technique_catalogue_json() << "\n";
    return 0;
  };
}

// One configuration of `udaci bench`, in a process of its own: reads the
// spec file the parent wrote, writes its results to --out.
CommandRun setup_bench_worker(CLI::App& sub) {
  struct WorkerArgs {
    std::string spec, out;
  };
  auto a = std::make_shared<WorkerArgs>();
  sub.group("");  // hidden from --help
  sub.add_option("--spec", a->spec)->required();
  sub.add_option("--out", a->out)->required();
  return [a](const GlobalOptions&) { return run_bench_worker(a->spec, a->out); };
}

}  // namespace udaci::cli
