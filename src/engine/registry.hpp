// Named strategies. HeadlineEngine picks each of its five strategies by name
// from a StrategyRegistry when it is built; later issues add implementations
// by registering them in register_builtin_strategies(), without touching the
// engine. No static initialisers: the built-in registry is filled once, on
// first use.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cache/cache_strategy.hpp"
#include "decode/decoder.hpp"
#include "engine/strategy_options.hpp"
#include "parallel/parallel_plan.hpp"
#include "prune/pruner.hpp"
#include "quant/quantizer.hpp"

namespace udaci {

// Factories of one kind of strategy, by name.
template <typename Product, typename... Args>
class NamedFactories {
 public:
  using Factory = std::function<std::unique_ptr<Product>(const StrategyOptions&, Args...)>;

  explicit NamedFactories(std::string kind) : kind_(std::move(kind)) {}
  void add(const std::string& name, Factory f) { factories_[name] = std::move(f); }
  bool has(const std::string& name) const { return factories_.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : factories_) out.push_back(kv.first);
    return out;
  }
  // Error(kInvalidArgument) listing the known names for an unknown one.
  std::unique_ptr<Product> create(const std::string& name, const StrategyOptions& options,
                                  Args... args) const;

 private:
  std::string kind_;
  std::map<std::string, Factory> factories_;
};

struct StrategyRegistry {
  NamedFactories<CacheStrategy, const CacheShape&> caches{"cache strategy"};
  NamedFactories<Quantizer> quantizers{"quantizer"};
  NamedFactories<Pruner> pruners{"pruner"};
  NamedFactories<Decoder> decoders{"decoder"};
  NamedFactories<ParallelPlan> parallel_plans{"parallel plan"};
};

// Registers the built-in strategies: caches "none" and "contiguous",
// quantizer "none", pruner "none", decoders "greedy" and "sampling", parallel
// plan "single-device".
void register_builtin_strategies(StrategyRegistry& registry);

// Registered by register_builtin_strategies; defined next to the strategies
// (src/cache, src/quant, src/prune).
void register_caches(StrategyRegistry& registry);
void register_quantizers(StrategyRegistry& registry);
void register_pruners(StrategyRegistry& registry);

// A registry holding the built-in strategies, filled once (thread-safe).
const StrategyRegistry& builtin_strategies();

// Message helper for NamedFactories::create.
[[noreturn]] void fail_unknown_strategy(const std::string& kind, const std::string& name,
                                        const std::vector<std::string>& known);

template <typename Product, typename... Args>
std::unique_ptr<Product> NamedFactories<Product, Args...>::create(const std::string& name,
                                                                  const StrategyOptions& options,
                                                                  Args... args) const {
  auto it = factories_.find(name);
  if (it == factories_.end()) fail_unknown_strategy(kind_, name, names());
  return it->second(options, args...);
}

}  // namespace udaci
