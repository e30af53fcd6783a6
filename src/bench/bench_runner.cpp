#include "bench/bench_runner.hpp"

#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "core/compat.hpp"
#include "core/cpu_features.hpp"
#include "core/threads.hpp"
#include "core/weight_memory.hpp"
#include "core/error.hpp"
#include "eval/headline_quality.hpp"
#include "eval/news_dataset.hpp"
#include "eval/rouge.hpp"
#include "parallel/communicator.hpp"
#include "udaci/version.h"

namespace udaci {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The process's peak resident memory: VmHWM, the high-water mark of this
// address space. getrusage's ru_maxrss would also count the parent's pages
// at fork (Linux carries the maximum across exec), so a worker forked by a
// large parent (udaci tune holds an fp32 model) would report the parent's.
int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // kB
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

json options_json(const StrategyOptions& o) {
  json j = json::object();
  for (const auto& kv : o.values()) j[kv.first] = kv.second;
  return j;
}

// Mean with a percentile-bootstrap 95% interval.
json mean_ci_json(const std::vector<double>& v, uint64_t seed) {
  if (v.empty()) return json{{"mean", nullptr}, {"ci95", nullptr}};
  const MeanCI ci = bootstrap_mean_ci(v, 1000, 0.95, seed);
  return json{{"mean", ci.mean}, {"ci95", {ci.low, ci.high}}};
}

// Progress on stderr: one rewritten line on a terminal, a line per tenth in a log.
class Progress {
 public:
  Progress(std::string label, size_t total, bool on)
      : label_(std::move(label)), total_(total), on_(on), tty_(isatty(STDERR_FILENO) != 0),
        t0_(Clock::now()) {}
  void update(size_t done) {
    if (!on_ || total_ == 0) return;
    const size_t tenth = done * 10 / total_;
    if (!tty_ && tenth == last_tenth_ && done != total_) return;
    last_tenth_ = tenth;
    const double s = ms_since(t0_) / 1000.0;
    std::fprintf(stderr, "%s[%s] %zu/%zu headlines, %.1f s, %.2f headlines/s%s", tty_ ? "\r" : "",
                 label_.c_str(), done, total_, s, s > 0 ? static_cast<double>(done) / s : 0.0,
                 tty_ && done != total_ ? "" : "\n");
    std::fflush(stderr);
  }

 private:
  std::string label_;
  size_t total_;
  bool on_, tty_;
  size_t last_tenth_ = static_cast<size_t>(-1);
  Clock::time_point t0_;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  UDACI_CHECK_S(Status::kNotFound, in.good(), "cannot open '{}'", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  UDACI_CHECK_S(Status::kInternal, out.good(), "cannot write '{}'", path);
  out << text;
  UDACI_CHECK_S(Status::kInternal, out.good(), "writing '{}' failed", path);
}

std::string first_line_of(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      const size_t c = line.find(':');
      if (c != std::string::npos) {
        std::string v = line.substr(c + 1);
        const size_t b = v.find_first_not_of(" \t");
        return b == std::string::npos ? "" : v.substr(b);
      }
    }
  }
  return "";
}

}  // namespace

std::string source_commit() {
#ifdef UDACI_SOURCE_DIR
  const std::string cmd = std::string("git -C '") + UDACI_SOURCE_DIR +
                          "' rev-parse --short=12 HEAD 2>/dev/null";
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[64] = {0};
    const bool ok = std::fgets(buf, sizeof buf, p) != nullptr;
    pclose(p);
    std::string s = ok ? buf : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (!s.empty()) return s;
  }
#endif
  return "unknown";
}

json machine_json(int threads) {
  struct utsname u {};
  uname(&u);
  json m;
  m["cpu"] = first_line_of("/proc/cpuinfo", "model name");
  m["logical_cpus"] = std::thread::hardware_concurrency();
  m["threads"] = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  m["memory"] = first_line_of("/proc/meminfo", "MemTotal");
  m["os"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  m["gpu"] = nullptr;
  m["kernels"] = kernel_isa_name(active_kernel_isa());  // UDACI_KERNELS, else the best this CPU has
  m["prompt_rows"] = bf16_prompt_rows() ? "bf16" : "int8";  // UDACI_BF16_PROMPTS, else AMX-BF16 if present
  m["huge_pages"] = weight_huge_pages();  // weights on 2 MB pages: UDACI_HUGE_PAGES, the system's mode
  m["transparent_hugepage"] = transparent_huge_page_mode();
  return m;
}

namespace {

json versions_json() {
  json v;
  v["udaci"] = UDACI_VERSION_STRING;
#ifdef TORCH_VERSION
  v["libtorch"] = TORCH_VERSION;
#else
  v["libtorch"] = fmt::format("{}.x", compat::kTorchMajor);
#endif
  v["compiler"] = __VERSION__;
  return v;
}

}  // namespace

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  if (p == 50.0) {
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  }
  // Nearest rank: the smallest value with at least p% of the values <= it.
  const double rank = std::ceil(p / 100.0 * static_cast<double>(v.size()));
  const size_t idx = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return v[std::min(idx, v.size() - 1)];
}

json run_bench_configuration(const ResolvedTechnique& t, const BenchSettings& s) {
  UDACI_CHECK_S(Status::kUnsupported, t.unavailable.empty(), "technique '{}' is unavailable: {}",
                t.name, t.unavailable);
  UDACI_CHECK(s.samples > 0, "bench: --samples must be at least 1");
  UDACI_CHECK(s.batch > 0, "bench: --batch must be at least 1");
  set_threads(s.threads);

  NewsReadOptions ro;
  ro.required = {"short_description", "headline"};
  NewsDataset ds = read_news_dataset(s.input, ro);
  UDACI_CHECK(!ds.records.empty(), "bench: '{}' holds no usable records ({} bad lines)", s.input,
              ds.errors.size());
  const std::vector<NewsRecord> measured = sample_records(ds.records, s.samples, s.seed, s.category);
  UDACI_CHECK(!measured.empty(), "bench: no records of category '{}' in '{}'", s.category, s.input);
  // Warm-up articles come from another draw so that the measured ones meet a
  // warm process, not a cache primed with their own text.
  const std::vector<NewsRecord> warm = sample_records(ds.records, s.warmup, s.seed + 1, s.category);

  // --batch N: up to N articles decode together in the engine's scheduler;
  // every article is its own request, all queued at once (a newsroom burst),
  // so a finished headline's place is taken at the next step.
  EngineConfig ec = t.config.engine;
  ec.scheduler.max_sequences = static_cast<int64_t>(s.batch);
  // The worker's thread count wins over the base config's "threads" (which
  // the engine applies once loaded): each rank of a parallel plan gets its
  // share of the cores, and `udaci tune` its candidate's count. Without
  // this, `--threads 2` ran both ranks of tp-2 with 2 threads each on 2
  // cores (0.07x one process, against 0.40x in M8's table).
  if (s.threads > 0) ec.threads = s.threads;
  const auto t_load = Clock::now();
  HeadlineEngine engine(ec);
  const double load_ms = ms_since(t_load);
  if (!engine.leader()) {
    // Another rank of a parallel plan: compute what rank 0 asks, then report
    // this rank's share.
    engine.serve();
    const ParallelStats ps = engine.parallel_stats();
    return json{{"rank", dist_env_from_environment().rank},
                {"weight_bytes", engine.model().weight_bytes()},
                {"peak_rss_bytes", peak_rss_bytes()},
                {"comm_seconds", ps.comm_seconds},
                {"comm_calls", ps.comm_calls},
                {"holds", ps.detail}};
  }

  HeadlineOptions ho;
  ho.max_new_tokens = s.max_new_tokens;
  ho.repetition_stop = s.repetition_stop;
  // Every article queued at once, or (concurrency N) at most N in flight:
  // the next one is sent when the oldest is back (closed-loop clients).
  auto run_all = [&](const std::vector<NewsRecord>& recs, const std::function<void(size_t)>& done) {
    const size_t window = s.concurrency > 0 ? s.concurrency : recs.size();
    std::vector<PendingHeadlines> reqs;
    reqs.reserve(recs.size());
    auto send_upto = [&](size_t n) {
      while (reqs.size() < std::min(n, recs.size()))
        reqs.push_back(engine.submit({recs[reqs.size()].short_description}, ho));
    };
    send_upto(window);
    std::vector<HeadlineResult> out;
    for (size_t i = 0; i < recs.size(); ++i) {
      out.push_back(reqs[i].get().at(0));
      send_upto(i + 1 + window);
      if (done) done(i + 1);
    }
    return out;
  };
  run_all(warm, {});
  engine.reset_cache_peak();
  const CacheStats stats_before = engine.cache_stats();
  const SchedulerStats sched_before = engine.scheduler_stats();
  const DecoderStats dec_before = engine.decoder_stats();

  json items = json::array();
  std::vector<double> latency, request_latency, ttft, r1, r2, rl, rlsum;
  std::map<std::string, int64_t> degenerate;
  double prefill_ms_total = 0, decode_ms_total = 0;
  int64_t prompt_tokens = 0, decoded_tokens = 0, new_tokens = 0;
  Progress progress(t.name, measured.size(), s.progress);
  const auto t_run = Clock::now();
  const std::vector<HeadlineResult> res = run_all(measured, [&](size_t k) { progress.update(k); });
  const double wall_ms_total = ms_since(t_run);
  for (size_t j = 0; j < res.size(); ++j) {
    const HeadlineResult& r = res[j];
    const NewsRecord& rec = measured[j];
    prefill_ms_total += r.prefill_ms;
    decode_ms_total += r.decode_ms;
    prompt_tokens += static_cast<int64_t>(r.prompt_ids.size());
    new_tokens += static_cast<int64_t>(r.new_ids.size());
    decoded_tokens += std::max<int64_t>(0, static_cast<int64_t>(r.new_ids.size()) - 1);
    // Latency in the batch: from admission to the headline's end (the wait
    // for a place, which grows with the burst, is reported apart).
    const double in_batch = r.latency_ms - r.queue_ms;
    latency.push_back(in_batch);
    request_latency.push_back(r.latency_ms);
    ttft.push_back(in_batch - r.decode_ms);
    const Degeneracy dg = classify_headline(r.headline, r.finish);
    if (dg != Degeneracy::kNone) ++degenerate[degeneracy_name(dg)];
    const RougeScores sc = rouge_score(rec.headline, r.headline);
    r1.push_back(sc.rouge1.fmeasure);
    r2.push_back(sc.rouge2.fmeasure);
    rl.push_back(sc.rougeL.fmeasure);
    rlsum.push_back(sc.rougeLsum.fmeasure);
    items.push_back({{"id", rec.line},
                     {"reference", rec.headline},
                     {"headline", r.headline},
                     {"prompt_tokens", r.prompt_ids.size()},
                     {"new_tokens", r.new_ids.size()},
                     {"finish", finish_reason_name(r.finish)},
                     {"latency_ms", in_batch},
                     {"queue_ms", r.queue_ms},
                     {"drafted", r.drafted},
                     {"accepted", r.accepted},
                     {"degenerate", dg == Degeneracy::kNone ? json(nullptr) : json(degeneracy_name(dg))},
                     {"rougeL", sc.rougeL.fmeasure}});
  }
  const SchedulerStats sched = engine.scheduler_stats();

  const size_t n = measured.size();
  json out;
  out["technique"] = t.name;
  out["category"] = t.category;
  // What it ran, as a canonical recipe a user can copy into a config file.
  out["recipe"] = engine.recipe();
  out["config"] = {{"cache", t.config.engine.cache},
                   {"cache_options", options_json(t.config.engine.cache_options)},
                   {"quantizer", t.config.engine.quantizer},
                   {"quantizer_options", options_json(t.config.engine.quantizer_options)},
                   {"pruner", t.config.engine.pruner},
                   {"pruner_options", options_json(t.config.engine.pruner_options)},
                   {"decoder", t.config.engine.decoder},
                   {"decoder_options", options_json(t.config.engine.decoder_options)},
                   {"parallel", t.config.engine.parallel},
                   {"scheduler", {{"max_sequences", ec.scheduler.max_sequences},
                                  {"prefill_chunk", ec.scheduler.prefill_chunk},
                                  {"max_cache_bytes", ec.scheduler.max_cache_bytes},
                                  {"batch_invariant", ec.scheduler.batch_invariant}}},
                   {"dtype", dtype_name(t.config.engine.dtype)},
                   {"device", t.config.engine.device}};
  out["samples"] = n;
  out["batch"] = s.batch;
  out["concurrency"] = s.concurrency;
  // The count the engine computes with (set_threads); ATen's own count on
  // this thread can read 1 once an engine thread has adopted the count.
  out["threads"] = requested_threads() > 0 ? requested_threads() : aten_threads();
  // The stop the headlines were decoded with: the request's, or the engine's
  // config's (generation.repetition_stop) when the settings leave it unset.
  out["repetition_stop"] = ho.repetition_stop != HeadlineOptions::kEngineDefault
                               ? ho.repetition_stop
                               : engine.config().generation.repetition_stop;
  out["load_ms"] = load_ms;
  out["ttft_ms_p50"] = percentile(ttft, 50);
  out["latency_ms_p50"] = percentile(latency, 50);
  out["latency_ms_p95"] = percentile(latency, 95);
  // From submission to the headline, the wait for a place in the batch
  // included: what a client of a service at this load sees.
  out["request_latency_ms_p50"] = percentile(request_latency, 50);
  out["request_latency_ms_p95"] = percentile(request_latency, 95);
  out["decode_tokens_per_s"] = decode_ms_total > 0 ? decoded_tokens / (decode_ms_total / 1000) : 0.0;
  out["prefill_tokens_per_s"] = prefill_ms_total > 0 ? prompt_tokens / (prefill_ms_total / 1000) : 0.0;
  out["headlines_per_s"] = wall_ms_total > 0 ? n / (wall_ms_total / 1000) : 0.0;
  out["generated_tokens_per_s"] = wall_ms_total > 0 ? new_tokens / (wall_ms_total / 1000) : 0.0;
  out["wall_ms"] = wall_ms_total;
  {
    DecoderStats d = engine.decoder_stats();
    d.rounds -= dec_before.rounds;
    d.drafted -= dec_before.drafted;
    d.accepted -= dec_before.accepted;
    d.emitted -= dec_before.emitted;
    d.draft_computed -= dec_before.draft_computed;
    d.draft_reused -= dec_before.draft_reused;
    d.draft_passes -= dec_before.draft_passes;
    d.draft_sequence_passes -= dec_before.draft_sequence_passes;
    out["decoder_stats"] = {{"rounds", d.rounds},
                            {"drafted", d.drafted},
                            {"accepted", d.accepted},
                            {"emitted", d.emitted},
                            {"draft_computed_tokens", d.draft_computed},
                            {"draft_reused_prompt_tokens", d.draft_reused},
                            // A draft model's forward passes, and the passes of each
                            // sequence summed (what drafting one at a time would run).
                            {"draft_passes", d.draft_passes},
                            {"draft_sequence_passes", d.draft_sequence_passes},
                            {"acceptance_rate", d.acceptance_rate()},
                            {"tokens_per_round", d.tokens_per_round()}};
  }
  out["scheduler"] = {{"steps", sched.steps - sched_before.steps},
                      {"peak_running", sched.peak_running},
                      {"prefill_tokens", sched.prefill_tokens - sched_before.prefill_tokens},
                      {"decode_tokens", sched.decode_tokens - sched_before.decode_tokens},
                      // Adaptive speculation's decisions: drafted tokens
                      // wished, let through, steps that cut some.
                      {"drafts_wished", sched.drafts_wished - sched_before.drafts_wished},
                      {"drafts_allowed", sched.drafts_allowed - sched_before.drafts_allowed},
                      {"steps_cutting_drafts", sched.steps_cutting_drafts - sched_before.steps_cutting_drafts}};
  {
    // Headlines ROUGE does not see as bad: empty, repetitive (a word bigram
    // twice), overlong (stopped by max_new_tokens); eval/headline_quality.hpp.
    int64_t total = 0;
    json by_kind = json::object();
    for (const char* k : {"empty", "repetitive", "overlong"}) {
      const int64_t c = degenerate.count(k) ? degenerate[k] : 0;
      by_kind[k] = c;
      total += c;
    }
    out["degenerate"] = by_kind;
    out["degenerate_share"] = static_cast<double>(total) / static_cast<double>(n);
  }
  out["prompt_tokens_mean"] = static_cast<double>(prompt_tokens) / n;
  out["new_tokens_mean"] = static_cast<double>(new_tokens) / n;
  out["peak_rss_bytes"] = peak_rss_bytes();
  out["peak_cuda_bytes"] = nullptr;
  out["weight_bytes"] = engine.model().weight_bytes();
  {
    const ParallelStats ps = engine.parallel_stats();
    const DistEnv env = dist_env_from_environment();
    out["parallel"] = {{"plan", ec.parallel},
                       {"world_size", env.world_size},
                       {"ranks", json::array({{{"rank", 0},
                                               {"weight_bytes", engine.model().weight_bytes()},
                                               {"peak_rss_bytes", peak_rss_bytes()},
                                               {"comm_seconds", ps.comm_seconds},
                                               {"comm_calls", ps.comm_calls},
                                               {"holds", ps.detail}}})}};
  }
  out["stored_weight_bytes"] = engine.quantize_report().bytes_after;
  out["kv_cache_bytes"] = engine.cache_peak_bytes();
  out["prune_sparsity"] = engine.prune_report().sparsity();
  {
    const CacheStats st = engine.cache_stats();
    out["cache_stats"] = {
        {"prefix_hit_tokens", st.prefix_hit_tokens - stats_before.prefix_hit_tokens},
        {"prefix_lookup_tokens", st.prefix_lookup_tokens - stats_before.prefix_lookup_tokens},
        {"evictions", st.evictions - stats_before.evictions},
        {"pool_bytes", st.pool_bytes}};
  }
  const json m1 = mean_ci_json(r1, s.seed), m2 = mean_ci_json(r2, s.seed),
             ml = mean_ci_json(rl, s.seed), mls = mean_ci_json(rlsum, s.seed);
  out["rouge1"] = m1["mean"];
  out["rouge2"] = m2["mean"];
  out["rougeL"] = ml["mean"];
  out["rougeLsum"] = mls["mean"];
  out["rouge_ci95"] = {{"rouge1", m1["ci95"]}, {"rouge2", m2["ci95"]}, {"rougeL", ml["ci95"]},
                       {"rougeLsum", mls["ci95"]}};
  out["same_as_baseline"] = nullptr;  // filled in by run_benchmark
  out["model"] = {{"path", engine.model_path()}, {"format", engine.model_format()}};
  out["items"] = std::move(items);
  return out;
}

int run_bench_worker(const std::string& spec_path, const std::string& out_path) {
  json spec;
  try {
    spec = json::parse(read_text(spec_path));
  } catch (const json::exception& e) {
    fail(Status::kInvalidArgument, "bench-worker: '{}' is not a bench spec: {}", spec_path, e.what());
  }
  try {
    BenchConfig base;
    const json& b = spec.at("base");
    base.engine = EngineConfig::from_json(b.at("engine").dump(), spec_path + " /base/engine");
    base.draft_model = b.at("draft_model").get<std::string>();
    BenchSettings s;
    const json& js = spec.at("settings");
    s.input = js.at("input").get<std::string>();
    s.samples = js.at("samples").get<size_t>();
    s.seed = js.at("seed").get<uint64_t>();
    s.category = js.at("category").get<std::string>();
    s.batch = js.at("batch").get<size_t>();
    s.concurrency = js.value("concurrency", size_t{0});
    s.max_new_tokens = js.at("max_new_tokens").get<int64_t>();
    s.repetition_stop = js.at("repetition_stop").get<int64_t>();
    s.warmup = js.at("warmup").get<size_t>();
    s.threads = js.at("threads").get<int>();
    s.progress = js.at("progress").get<bool>();
    const ResolvedTechnique t =
        resolve_technique(spec.at("technique").get<std::string>(), base, builtin_strategies());
    write_text(out_path, run_bench_configuration(t, s).dump(1));
  } catch (const json::exception& e) {
    fail(Status::kInvalidArgument, "bench-worker: bad spec '{}': {}", spec_path, e.what());
  }
  return 0;
}

json run_benchmark(const std::vector<std::string>& techniques, const BenchConfig& base,
                   const BenchSettings& settings, const std::string& exe) {
  UDACI_CHECK(!techniques.empty(), "bench: no techniques given (see --list)");
  UDACI_CHECK(settings.samples > 0, "bench: --samples must be at least 1");
  UDACI_CHECK(settings.batch > 0, "bench: --batch must be at least 1");
  // Resolve everything first: a misspelt name fails before any work.
  std::vector<ResolvedTechnique> resolved;
  for (const std::string& name : techniques)
    resolved.push_back(resolve_technique(name, base, builtin_strategies()));
  {
    std::ifstream probe(settings.input);
    UDACI_CHECK_S(Status::kNotFound, probe.good(), "bench: cannot open --input '{}'", settings.input);
  }

  char tmpl[] = "/tmp/udaci-bench-XXXXXX";
  UDACI_CHECK_S(Status::kInternal, mkdtemp(tmpl) != nullptr, "bench: cannot create a temporary folder");
  const std::string dir = tmpl;

  json doc;
  doc["schema"] = "udaci-bench/1";
  {
    const std::time_t now = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    doc["created_utc"] = buf;
  }
  doc["git_commit"] = source_commit();
  doc["machine"] = machine_json(settings.threads);
  doc["versions"] = versions_json();
  doc["settings"] = {{"input", settings.input},       {"samples", settings.samples},
                     {"seed", settings.seed},         {"category", settings.category},
                     {"batch", settings.batch},       {"concurrency", settings.concurrency},
                     {"max_new_tokens", settings.max_new_tokens},
                     {"repetition_stop", settings.repetition_stop != HeadlineOptions::kEngineDefault
                                             ? settings.repetition_stop
                                             : base.engine.generation.repetition_stop},
                     {"warmup", settings.warmup},     {"threads", settings.threads},
                     {"dtype", dtype_name(base.engine.dtype)}, {"device", base.engine.device}};
  doc["results"] = json::array();
  doc["unavailable"] = json::array();
  doc["failed"] = json::array();

  size_t index = 0;
  for (const ResolvedTechnique& t : resolved) {
    ++index;
    if (!t.unavailable.empty()) {
      doc["unavailable"].push_back({{"technique", t.name}, {"reason", t.unavailable}});
      if (settings.progress) std::fprintf(stderr, "[%s] unavailable: %s\n", t.name.c_str(), t.unavailable.c_str());
      continue;
    }
    const std::string spec_path = fmt::format("{}/spec-{}.json", dir, index);
    const std::string out_path = fmt::format("{}/result-{}.json", dir, index);
    json spec;
    spec["technique"] = t.name;
    spec["base"] = {{"engine", json::parse(base.engine.to_json())}, {"draft_model", base.draft_model}};
    spec["settings"] = {{"input", settings.input},       {"samples", settings.samples},
                        {"seed", settings.seed},         {"category", settings.category},
                        {"batch", settings.batch},       {"concurrency", settings.concurrency},
                        {"max_new_tokens", settings.max_new_tokens},
                        {"repetition_stop", settings.repetition_stop},
                        {"warmup", settings.warmup},
                        // The ranks of a parallel plan share the cores.
                        {"threads", std::max(1, settings.threads / std::max(1, t.config.world_size))},
                        {"progress", settings.progress}};
    write_text(spec_path, spec.dump());

    // A fresh process per configuration (its peak RSS is its own); one per
    // rank for a parallel plan, rendezvousing on a free local port.
    const int world = std::max(1, t.config.world_size);
    const int port = world > 1 ? free_local_port() : 0;
    auto rank_out = [&](int r) { return r == 0 ? out_path : fmt::format("{}.rank{}", out_path, r); };
    std::fflush(nullptr);
    std::vector<pid_t> pids;
    for (int r = 0; r < world; ++r) {
      const pid_t pid = fork();
      UDACI_CHECK_S(Status::kInternal, pid >= 0, "bench: fork failed");
      if (pid == 0) {
        if (world > 1) {
          setenv("RANK", std::to_string(r).c_str(), 1);
          setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
          setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
          setenv("MASTER_ADDR", "127.0.0.1", 1);
          setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
        }
        const std::string out = rank_out(r);
        execl(exe.c_str(), exe.c_str(), "bench-worker", "--spec", spec_path.c_str(), "--out", out.c_str(),
              static_cast<char*>(nullptr));
        std::fprintf(stderr, "udaci bench: cannot run '%s'\n", exe.c_str());
        _exit(127);
      }
      pids.push_back(pid);
    }
    std::string error;
    for (int r = 0; r < world; ++r) {
      int status = 0;
      while (waitpid(pids[static_cast<size_t>(r)], &status, 0) < 0 && errno == EINTR) {
      }
      const std::string who = world > 1 ? fmt::format("worker of rank {}", r) : "worker";
      if (!error.empty()) continue;
      if (WIFSIGNALED(status)) {
        error = fmt::format("{} killed by signal {}", who, WTERMSIG(status));
      } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        error = fmt::format("{} exited with status {}", who, WEXITSTATUS(status));
      }
    }
    if (error.empty()) {
      try {
        json result = json::parse(read_text(out_path));
        for (int r = 1; r < world; ++r) {
          result["parallel"]["ranks"].push_back(json::parse(read_text(rank_out(r))));
          std::remove(rank_out(r).c_str());
        }
        doc["results"].push_back(std::move(result));
      } catch (const std::exception& e) {
        error = std::string("worker result unreadable: ") + e.what();
      }
    }
    if (!error.empty()) {
      doc["failed"].push_back({{"technique", t.name}, {"error", error}});
      if (settings.progress) std::fprintf(stderr, "[%s] failed: %s\n", t.name.c_str(), error.c_str());
    }
    std::remove(spec_path.c_str());
    std::remove(out_path.c_str());
  }
  rmdir(dir.c_str());

  // Agreement with the baseline's headlines, article by article.
  const json* baseline = nullptr;
  for (const json& r : doc["results"])
    if (r["technique"] == "baseline") baseline = &r;
  if (baseline != nullptr) {
    std::map<int64_t, std::string> ref;
    for (const json& it : (*baseline)["items"]) ref[it["id"].get<int64_t>()] = it["headline"];
    for (json& r : doc["results"]) {
      size_t same = 0, total = 0;
      for (const json& it : r["items"]) {
        auto f = ref.find(it["id"].get<int64_t>());
        if (f == ref.end()) continue;
        ++total;
        same += f->second == it["headline"].get<std::string>();
      }
      r["same_as_baseline"] = total ? json(static_cast<double>(same) / total) : json(nullptr);
    }
  }
  return doc;
}

std::string bench_markdown(const json& doc) {
  const json* baseline = nullptr;
  for (const json& r : doc.at("results"))
    if (r.at("technique") == "baseline") baseline = &r;
  auto num = [](const json& v, const char* f) {
    return v.is_number() ? fmt::format(fmt::runtime(f), v.get<double>()) : std::string("—");
  };
  auto ratio = [&](const json& r, const char* key) -> std::string {
    if (baseline == nullptr || !r.at(key).is_number() || !(*baseline).at(key).is_number())
      return "—";
    const double b = (*baseline).at(key).get<double>();
    return b > 0 ? fmt::format("{:.2f}×", r.at(key).get<double>() / b) : "—";
  };
  std::string md;
  md += "| Technique | Category | Latency p50 (ms) | Latency p95 (ms) | TTFT p50 (ms) | Decode tok/s "
        "| Headlines/s | ROUGE-1 | ROUGE-2 | ROUGE-L | Peak RSS (MB) | Weights (MB) | KV cache (MB) "
        "| Same as baseline | Change vs baseline |\n";
  md += "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n";
  for (const json& r : doc.at("results")) {
    const double mb = 1024.0 * 1024.0;
    std::string change = "—";
    if (baseline != nullptr && &r != baseline) {
      change = "latency " + ratio(r, "latency_ms_p50") + ", tok/s " +
               ratio(r, "decode_tokens_per_s") + ", RSS " + ratio(r, "peak_rss_bytes") +
               ", weights " + ratio(r, "weight_bytes");
    }
    md += fmt::format(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0f} | {:.1f} | {:.1f} | {} | {} |\n",
        r.at("technique").get<std::string>(), r.at("category").get<std::string>(),
        num(r.at("latency_ms_p50"), "{:.0f}"), num(r.at("latency_ms_p95"), "{:.0f}"),
        num(r.at("ttft_ms_p50"), "{:.0f}"), num(r.at("decode_tokens_per_s"), "{:.1f}"),
        num(r.at("headlines_per_s"), "{:.2f}"), num(r.at("rouge1"), "{:.3f}"),
        num(r.at("rouge2"), "{:.3f}"), num(r.at("rougeL"), "{:.3f}"),
        r.at("peak_rss_bytes").get<double>() / mb, r.at("weight_bytes").get<double>() / mb,
        r.at("kv_cache_bytes").get<double>() / mb,
        r.at("same_as_baseline").is_number()
            ? fmt::format("{:.0f}%", 100 * r.at("same_as_baseline").get<double>())
            : std::string("—"),
        change);
  }
  for (const json& u : doc.at("unavailable"))
    md += fmt::format("| {} | unavailable: {} |||||||||||||\n", u.at("technique").get<std::string>(),
                      u.at("reason").get<std::string>());
  for (const json& u : doc.at("failed"))
    md += fmt::format("| {} | failed: {} |||||||||||||\n", u.at("technique").get<std::string>(),
                      u.at("error").get<std::string>());
  return md;
}

}  // namespace udaci
