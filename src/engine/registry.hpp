// Named strategies. HeadlineEngine picks each of its five strategies by name
// from a StrategyRegistry when it is built. Each strategy folder registers its
// own strategies, its "none" included (register_caches in src/cache,
// register_quantizers in src/quant, register_pruners in src/prune,
// register_decoders in src/decode, register_parallel_plans in src/parallel):
// a new strategy is added there, without touching the engine. No static
// initialisers: the built-in registry is filled once, on first use.
#pragma once

#include "cache/cache_strategy.hpp"
#include "core/named_factories.hpp"
#include "decode/decoder.hpp"
#include "parallel/parallel_plan.hpp"
#include "prune/pruner.hpp"
#include "quant/quantizer.hpp"

namespace udaci {

struct StrategyRegistry {
  CacheFactories caches{"cache strategy"};
  QuantizerFactories quantizers{"quantizer"};
  PrunerFactories pruners{"pruner"};
  DecoderFactories decoders{"decoder"};
  ParallelPlanFactories parallel_plans{"parallel plan"};
};

// Every folder's strategies, registered into `registry`.
void register_builtin_strategies(StrategyRegistry& registry);

// A registry holding the built-in strategies, filled once (thread-safe).
const StrategyRegistry& builtin_strategies();

}  // namespace udaci
