// The benchmark's configurations. Every configuration `udaci bench
// --techniques` takes is a recipe (engine/recipe.hpp) over the benchmark's
// base: a KV cache, weights in the compute dtype (no-quant: the fp32
// reference), no pruning, greedy decoding, one process. So `baseline` is the
// report's unoptimised baseline (no cache, fp32, greedy), `kv-cache` adds the
// cache, and "int4{group=64}+paged-prefix" sets those two slots on top of
// the base. A configuration whose strategy is not registered in this build is
// listed as unavailable with the reason, never substituted.
#pragma once

#include <string>
#include <vector>

#include "engine/headline_engine.hpp"
#include "engine/recipe.hpp"
#include "engine/registry.hpp"

namespace udaci {

// Everything one benchmark configuration runs with.
struct BenchConfig {
  EngineConfig engine;
  int world_size = 1;       // processes (tensor/pipeline parallel plans)
  std::string draft_model;  // spec-draft: the draft model's path (--draft-model)
};

// Names of the catalogue, in order.
std::vector<std::string> technique_names();

struct ResolvedTechnique {
  std::string name;          // as asked, e.g. "int4+paged-prefix"
  std::string category;      // parts' categories joined with '+'
  std::string recipe;        // the canonical recipe it runs (copy it into a config file)
  BenchConfig config;
  std::string unavailable;   // empty when runnable; else why not
};

// Resolves a recipe on top of `base` (model path, dtype, device, prompt ...
// already set; its strategy slots are reset to the benchmark's base first).
// Error(kInvalidArgument) as parse_recipe / apply_recipe. A spec-draft part
// without draft_model takes base.draft_model (or is unavailable without one).
ResolvedTechnique resolve_technique(const std::string& name, const BenchConfig& base,
                                    const StrategyRegistry& registry);

// Splits "a,b{x=1,y=2} , c" into recipes (engine/recipe.hpp split_recipe_list).
std::vector<std::string> split_technique_list(const std::string& list);

}  // namespace udaci
