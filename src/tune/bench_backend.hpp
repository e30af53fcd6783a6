// The real measurements of `udaci tune` (issue #26): weight sets loaded in
// this process (resident bytes, KL divergence from the fp32 model on the
// same tokens, as `udaci perplexity --kl-divergence`), runs as `udaci bench`
// workers in processes of their own (so each peak RSS is its own).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine_config.hpp"
#include "tune/tuner.hpp"

namespace udaci {

class HeadlineEngine;

class BenchTuneBackend final : public TuneBackend {
 public:
  // `base`: the model, tokenizer, prompt, dtype and device every candidate
  // shares (its strategy slots are the candidates'). `exe`: the udaci
  // executable the bench workers run. `kl_records`: news records (headline.
  // summary) the KL divergence is measured on — a few hundred tokens.
  BenchTuneBackend(EngineConfig base, TuneWorkload workload, std::string exe, size_t kl_records = 16);
  ~BenchTuneBackend() override;

  WeightsFigures weights(const TuneCandidate& candidate) override;
  RunFigures run(const TuneCandidate& candidate, size_t samples) override;
  double elapsed_s() const override;

 private:
  EngineConfig base_;
  TuneWorkload workload_;
  std::string exe_;
  size_t kl_records_;
  std::unique_ptr<HeadlineEngine> reference_;   // fp32, loaded on first use
  std::vector<std::vector<int64_t>> kl_tokens_;
  std::chrono::steady_clock::time_point t0_;
};

// What every cached measurement of this search shares: the model file (path,
// size, modification time), the machine (CPU model, logical CPUs, the kernel
// family that runs: UDACI_KERNELS, else the CPU's best), the udaci
// build (version and the executable `exe`'s size and modification time: a
// rebuild measures again), the workload and the base configuration.
std::string tune_cache_context(const EngineConfig& base, const TuneWorkload& workload, const std::string& exe);

}  // namespace udaci
