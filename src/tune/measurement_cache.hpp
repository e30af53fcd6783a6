// The measurements of `udaci tune` kept on disk (issue #26), so that a second
// run with the same model, machine, build and workload resumes instead of
// measuring again: a decorator over any TuneBackend. One JSON line per
// measurement, keyed by a 64-bit FNV-1a hash of a readable key that names
// the context (model file, machine, udaci build, workload, base config) and
// the measurement (weight set, or candidate and article count). Lines that
// do not parse are skipped, so a file cut short by a killed run only loses
// its last line.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>

#include "tune/tuner.hpp"

namespace udaci {

class CachedTuneBackend final : public TuneBackend {
 public:
  // `path`: the JSON Lines file (created with its folder when missing; ""
  // keeps the cache in memory only). `context`: what every key shares.
  CachedTuneBackend(TuneBackend& inner, std::string path, std::string context);

  WeightsFigures weights(const TuneCandidate& candidate) override;
  RunFigures run(const TuneCandidate& candidate, size_t samples) override;
  double elapsed_s() const override { return inner_.elapsed_s(); }

  size_t hits() const { return hits_; }
  size_t stored() const { return entries_.size(); }

 private:
  const nlohmann::json* find(const std::string& what) const;
  void put(const std::string& what, nlohmann::json figures);

  TuneBackend& inner_;
  std::string path_, context_;
  std::map<std::string, nlohmann::json> entries_;  // hash -> figures
  size_t hits_ = 0;
};

// 64-bit FNV-1a of `text` as 16 hex digits.
std::string fnv1a_hex(const std::string& text);

// RunFigures from run_figures_json(f, /*with_items=*/true) (tune/tuner.hpp).
RunFigures run_figures_from_json(const nlohmann::json& j);

}  // namespace udaci
