#include "tune/measurement_cache.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <fstream>

#include "core/error.hpp"

namespace udaci {

using nlohmann::json;

std::string fnv1a_hex(const std::string& text) {
  uint64_t h = 14695981039346656037ull;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

RunFigures run_figures_from_json(const json& j) {
  RunFigures f;
  f.samples = j.at("samples").get<size_t>();
  f.headlines_per_s = j.at("headlines_per_s").get<double>();
  f.latency_p95_ms = j.at("latency_p95_ms").get<double>();
  f.peak_rss_mb = j.at("peak_rss_mb").get<double>();
  f.weight_mb = j.at("weight_mb").get<double>();
  f.rougeL = j.at("rougeL").get<double>();
  f.degenerate_share = j.at("degenerate_share").get<double>();
  f.seconds = j.at("seconds").get<double>();
  for (const json& it : j.at("items"))
    f.items.push_back({it.at(0).get<int64_t>(), it.at(1).get<double>(), it.at(2).get<bool>()});
  return f;
}

namespace {

void make_parent_dirs(const std::string& path) {
  for (size_t p = path.find('/', 1); p != std::string::npos; p = path.find('/', p + 1)) {
    const std::string dir = path.substr(0, p);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
      fail(Status::kNotFound, "tune: cannot create the cache folder '{}'", dir);
  }
}

}  // namespace

CachedTuneBackend::CachedTuneBackend(TuneBackend& inner, std::string path, std::string context)
    : inner_(inner), path_(std::move(path)), context_(std::move(context)) {
  if (path_.empty()) return;
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    try {
      json j = json::parse(line);
      entries_[j.at("key").get<std::string>()] = std::move(j.at("figures"));
    } catch (const json::exception&) {
      // A line cut short by a killed run: measure that one again.
    }
  }
  make_parent_dirs(path_);
}

const json* CachedTuneBackend::find(const std::string& what) const {
  auto it = entries_.find(fnv1a_hex(context_ + "\n" + what));
  return it == entries_.end() ? nullptr : &it->second;
}

void CachedTuneBackend::put(const std::string& what, json figures) {
  const std::string key = fnv1a_hex(context_ + "\n" + what);
  if (!path_.empty()) {
    std::ofstream out(path_, std::ios::app);
    UDACI_CHECK_S(Status::kNotFound, out.good(), "tune: cannot write the cache '{}'", path_);
    out << json{{"key", key}, {"what", what}, {"figures", figures}}.dump() << "\n";
  }
  entries_[key] = std::move(figures);
}

WeightsFigures CachedTuneBackend::weights(const TuneCandidate& c) {
  const std::string what = "weights " + c.weights();
  if (const json* j = find(what)) {
    try {
      WeightsFigures w;
      w.weight_mb = j->at("weight_mb").get<double>();
      w.mean_kld = j->at("mean_kld").get<double>();
      w.top1_agreement = j->at("top1_agreement").get<double>();
      w.seconds = j->at("seconds").get<double>();
      ++hits_;
      return w;
    } catch (const json::exception&) {
    }
  }
  const WeightsFigures w = inner_.weights(c);
  put(what, json{{"weight_mb", w.weight_mb},
                 {"mean_kld", w.mean_kld},
                 {"top1_agreement", w.top1_agreement},
                 {"seconds", w.seconds}});
  return w;
}

RunFigures CachedTuneBackend::run(const TuneCandidate& c, size_t samples) {
  const std::string what = fmt::format("run {} samples={}", c.label(), samples);
  if (const json* j = find(what)) {
    try {
      RunFigures f = run_figures_from_json(*j);
      ++hits_;
      return f;
    } catch (const json::exception&) {
    }
  }
  RunFigures f = inner_.run(c, samples);
  put(what, run_figures_json(f, /*with_items=*/true));
  return f;
}

}  // namespace udaci
