// Factories of one kind of strategy (cache, quantizer, pruner, decoder,
// parallel plan), by name. Each strategy folder fills the table of its own
// kind (register_caches in src/cache, register_quantizers in src/quant ...);
// the engine's StrategyRegistry (engine/registry.hpp) holds one table per
// kind and picks from them by name.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/strategy_options.hpp"

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
