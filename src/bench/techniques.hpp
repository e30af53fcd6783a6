// The benchmark's technique catalogue: every name `udaci bench --techniques`
// accepts, what it configures, and whether this build can run it. The report
// this project grew from compared baseline, KV caching, 4-bit quantisation,
// 30% magnitude pruning, speculative decoding and tensor/pipeline parallelism;
// each of those is one entry here, next to the techniques udaci adds. A
// technique whose strategy is not registered in this build is listed as
// unavailable with the reason — never faked by running something else.
//
// Names compose with '+': "int4+paged-prefix" applies int4, then paged-prefix,
// on top of the KV-cache configuration (every technique other than
// `baseline` uses the KV cache unless its name says otherwise). Two parts that
// set the same strategy (int8+int4) are an error.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/headline_engine.hpp"
#include "engine/registry.hpp"

namespace udaci {

// Everything one benchmark configuration runs with.
struct BenchConfig {
  EngineConfig engine;
  int world_size = 1;       // processes (tensor/pipeline parallel plans)
  std::string draft_model;  // spec-draft: the draft model's path (--draft-model)
};

struct Technique {
  std::string name;
  std::string category;     // Baseline, Caching, Quantization, Pruning, Decoding, Parallelism
  std::string description;
  std::string issue;        // where it is delivered, e.g. "#6 (M5)"
  std::string sets;         // the strategy it sets: cache, quantizer, pruner, decoder, parallel
  std::function<void(BenchConfig&)> apply;
  // Empty when `registry` (and this build) can run it, else the reason.
  std::function<std::string(const StrategyRegistry&)> unavailable;
};

// All techniques, in the report's order.
const std::vector<Technique>& technique_catalogue();

// Names of the catalogue, in order.
std::vector<std::string> technique_names();

struct ResolvedTechnique {
  std::string name;          // as asked, e.g. "int4+paged-prefix"
  std::string category;      // parts' categories joined with '+'
  BenchConfig config;
  std::string unavailable;   // empty when runnable; else why not
};

// Resolves a (possibly composed) name on top of `base` (model path, dtype,
// device ... already set). Error(kInvalidArgument) for an unknown part (listing
// the known names) or two parts setting the same strategy.
ResolvedTechnique resolve_technique(const std::string& name, const BenchConfig& base,
                                    const StrategyRegistry& registry);

// Splits "a,b , c" into names, dropping empty ones.
std::vector<std::string> split_technique_list(const std::string& list);

}  // namespace udaci
