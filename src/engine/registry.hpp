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
  // Reads and validates a strategy's options without building it (no files,
  // no processes): what a recipe is checked with before anything loads.
  using Check = std::function<void(const StrategyOptions&)>;

  explicit NamedFactories(std::string kind) : kind_(std::move(kind)) {}
  // `check` may be empty where building the strategy is itself cheap and free
  // of side effects (it then runs the factory and drops the product); kinds
  // whose factories take arguments (caches) always give one.
  void add(const std::string& name, Factory f, Check check = {}) {
    factories_[name] = std::move(f);
    checks_[name] = std::move(check);
  }
  const std::string& kind() const { return kind_; }
  bool has(const std::string& name) const { return factories_.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : factories_) out.push_back(kv.first);
    return out;
  }
  // Error(kInvalidArgument) listing the known names for an unknown one.
  std::unique_ptr<Product> create(const std::string& name, const StrategyOptions& options,
                                  Args... args) const;
  // Validates `options` for strategy `name` (Error(kInvalidArgument) naming
  // the strategy and the option) and returns every option the strategy reads,
  // with the value it settles on: the given ones and the defaults.
  std::map<std::string, std::string> effective_options(const std::string& name,
                                                       const StrategyOptions& options) const;

 private:
  std::string kind_;
  std::map<std::string, Factory> factories_;
  std::map<std::string, Check> checks_;
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

template <typename Product, typename... Args>
std::map<std::string, std::string> NamedFactories<Product, Args...>::effective_options(
    const std::string& name, const StrategyOptions& options) const {
  auto it = factories_.find(name);
  if (it == factories_.end()) fail_unknown_strategy(kind_, name, names());
  std::map<std::string, std::string> out;
  const StrategyOptions recording = options;
  recording.record_into(&out);
  const Check& check = checks_.at(name);
  if (check) {
    check(recording);
  } else if constexpr (sizeof...(Args) == 0) {
    it->second(recording);
  } else {
    fail_unknown_strategy(kind_ + " (no option check registered)", name, names());
  }
  recording.record_into(nullptr);
  return out;
}

}  // namespace udaci
