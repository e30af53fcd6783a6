// `udaci bench`: runs technique configurations over news articles and
// measures what each buys. Each configuration runs in a fresh process (the
// CLI's hidden `bench-worker`), so peak memory of one never leaks into
// another; the parent collects the results, compares headlines with the
// baseline's and writes one JSON document (schema in docs/BENCHMARKS.md).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/techniques.hpp"
#include "engine/headline_engine.hpp"

namespace udaci {

struct BenchSettings {
  std::string input;            // News Category Dataset (JSONL or array)
  size_t samples = 100;         // articles measured per configuration
  uint64_t seed = 0;            // article sample
  std::string category;         // only this category (empty: all)
  size_t batch = 1;             // the scheduler's max_sequences
  // Requests in flight at once: 0 queues every article at once (a newsroom
  // burst); N > 0 keeps N clients busy, each sending its next article when
  // its headline is back (a service under steady load).
  size_t concurrency = 0;
  int64_t max_new_tokens = 32;
  // 0: off; HeadlineOptions::kEngineDefault: the engine config's
  // generation.repetition_stop (8 unless a config file says otherwise).
  int64_t repetition_stop = HeadlineOptions::kEngineDefault;
  size_t warmup = 2;            // articles run first and not measured
  int threads = 0;              // ATen threads in each worker (0: all cores)
  bool progress = true;         // progress on stderr
};

// One configuration, run in this process: loads the engine, warms up, runs
// the sampled articles and returns the configuration's result object (keys
// in docs/BENCHMARKS.md), headlines included under "items".
nlohmann::json run_bench_configuration(const ResolvedTechnique& technique,
                                       const BenchSettings& settings);

// The worker's side of the process boundary: reads the spec written by
// run_benchmark, runs it, writes the result object to `out_path`.
int run_bench_worker(const std::string& spec_path, const std::string& out_path);

// Runs every technique (composed names allowed) in a child process started as
// `exe bench-worker --spec S --out O`; unavailable ones are listed under
// "unavailable" with the reason, failed ones under "failed" with the error.
nlohmann::json run_benchmark(const std::vector<std::string>& techniques, const BenchConfig& base,
                             const BenchSettings& settings, const std::string& exe);

// The report's table (technique, category, latency, throughput, ROUGE-1/2/L,
// memory, change vs baseline) as Markdown.
std::string bench_markdown(const nlohmann::json& doc);

// The commit of the tree this binary was built from ("unknown" outside a
// git checkout), and the machine as bench documents record it: CPU model,
// logical CPUs, threads, memory, OS.
std::string source_commit();
nlohmann::json machine_json(int threads);

// Median and nearest-rank percentile of `v` (0 for an empty vector).
double percentile(std::vector<double> v, double p);

}  // namespace udaci
