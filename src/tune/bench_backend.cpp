#include "tune/bench_backend.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "bench/bench_runner.hpp"
#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/threads.hpp"
#include "engine/headline_engine.hpp"
#include "eval/news_dataset.hpp"
#include "eval/perplexity.hpp"
#include "udaci/version.h"

namespace udaci {

using nlohmann::json;

namespace {

constexpr double kMB = 1024.0 * 1024.0;

std::string file_identity(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return path + " (missing)";
  return fmt::format("{} size={} mtime={}", path, static_cast<long long>(st.st_size),
                     static_cast<long long>(st.st_mtime));
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 1);
  return "unknown cpu";
}

}  // namespace

std::string tune_cache_context(const EngineConfig& base, const TuneWorkload& w, const std::string& exe) {
  EngineConfig shared = base;
  shared.set_recipe("kv-cache+as-stored+no-prune+greedy+single-device");  // the candidates set these
  shared.threads = 0;
  shared.scheduler = SchedulerOptions{};
  shared.generation = EngineConfig::Generation{};
  const std::string build = std::string(UDACI_VERSION_STRING) + " " + file_identity(exe);
  // The kernel family too: UDACI_KERNELS=avx512 and AMX runs of one build on
  // one machine measure different speeds.
  return fmt::format("model {}\nmachine{} x{} kernels {}\nudaci {}\nworkload {} samples={} short={} seed={} "
                     "concurrency={} max_new_tokens={}\nconfig {}",
                     file_identity(base.model_path), cpu_model(), std::thread::hardware_concurrency(),
                     kernel_isa_name(active_kernel_isa()), build,
                     file_identity(w.input), w.samples, w.short_samples, w.seed, w.concurrency, w.max_new_tokens,
                     shared.to_json());
}

BenchTuneBackend::BenchTuneBackend(EngineConfig base, TuneWorkload workload, std::string exe, size_t kl_records)
    : base_(std::move(base)),
      workload_(std::move(workload)),
      exe_(std::move(exe)),
      kl_records_(kl_records),
      t0_(std::chrono::steady_clock::now()) {}

BenchTuneBackend::~BenchTuneBackend() = default;

double BenchTuneBackend::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

WeightsFigures BenchTuneBackend::weights(const TuneCandidate& c) {
  const auto t0 = std::chrono::steady_clock::now();
  if (c.threads > 0) set_threads(c.threads);
  if (!reference_) {
    // The fp32 reference of the KL divergence: the same file, nothing applied.
    EngineConfig rc = base_;
    rc.set_recipe("kv-cache+no-quant+no-prune+greedy+single-device");
    rc.dtype = at::kFloat;
    reference_ = std::make_unique<HeadlineEngine>(rc);
    NewsReadOptions ro;
    ro.required = {"short_description", "headline"};
    const NewsDataset ds = read_news_dataset(workload_.input, ro);
    UDACI_CHECK(!ds.records.empty(), "tune: '{}' holds no usable records", workload_.input);
    // Records apart from the headline workload's sample (another seed).
    const int64_t max_len = reference_->model().config().max_position_embeddings;
    for (const NewsRecord& r : sample_records(ds.records, kl_records_, workload_.seed + 7919)) {
      const std::vector<int32_t> ids = reference_->tokenizer().encode(r.headline + ". " + r.short_description,
                                                                       /*add_special=*/true, /*parse_special=*/false);
      std::vector<int64_t> s(ids.begin(), ids.end());
      if (max_len > 0 && static_cast<int64_t>(s.size()) > max_len) s.resize(static_cast<size_t>(max_len));
      if (s.size() >= 2) kl_tokens_.push_back(std::move(s));
    }
    UDACI_CHECK(!kl_tokens_.empty(), "tune: no record of '{}' gives two tokens to score", workload_.input);
  }
  EngineConfig ec = base_;
  ec.set_recipe("kv-cache+" + c.quantizer + "+" + c.pruner + "+greedy+single-device");
  HeadlineEngine engine(ec);
  const DivergenceResult d = evaluate_divergence(reference_->model(), engine.model(), kl_tokens_, 8);
  WeightsFigures w;
  w.weight_mb = static_cast<double>(engine.model().weight_bytes()) / kMB;
  w.mean_kld = d.mean_kld;
  w.top1_agreement = d.top1_agreement;
  w.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return w;
}

RunFigures BenchTuneBackend::run(const TuneCandidate& c, size_t samples) {
  const auto t0 = std::chrono::steady_clock::now();
  BenchConfig base;
  base.engine = base_;
  BenchSettings s;
  s.input = workload_.input;
  s.samples = samples;
  s.seed = workload_.seed;
  s.batch = c.batch;
  s.concurrency = workload_.concurrency;
  s.max_new_tokens = workload_.max_new_tokens;
  s.repetition_stop = c.repetition_stop;
  s.warmup = 2;
  s.threads = c.threads;
  s.progress = false;
  const json doc = run_benchmark({c.recipe()}, base, s, exe_);
  for (const json& f : doc.at("failed"))
    fail(Status::kInternal, "{}", f.at("error").get<std::string>());
  for (const json& u : doc.at("unavailable"))
    fail(Status::kUnsupported, "unavailable: {}", u.at("reason").get<std::string>());
  UDACI_CHECK_S(Status::kInternal, doc.at("results").size() == 1, "tune: the bench run of '{}' returned no result",
                c.label());
  const json& r = doc.at("results").at(0);
  // The figures are the candidate's only if it ran with its thread count.
  UDACI_CHECK_S(Status::kInternal, r.at("threads").get<int>() == c.threads,
                "tune: the bench worker of '{}' ran {} threads, not {}", c.label(), r.at("threads").get<int>(),
                c.threads);
  RunFigures f;
  f.samples = r.at("samples").get<size_t>();
  f.headlines_per_s = r.at("headlines_per_s").get<double>();
  f.latency_p95_ms = r.at("request_latency_ms_p95").get<double>();
  f.peak_rss_mb = r.at("peak_rss_bytes").get<double>() / kMB;
  f.weight_mb = r.at("weight_bytes").get<double>() / kMB;
  f.rougeL = r.at("rougeL").is_number() ? r.at("rougeL").get<double>() : 0.0;
  f.degenerate_share = r.at("degenerate_share").get<double>();
  for (const json& it : r.at("items"))
    f.items.push_back({it.at("id").get<int64_t>(), it.at("rougeL").get<double>(), !it.at("degenerate").is_null()});
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return f;
}

}  // namespace udaci
