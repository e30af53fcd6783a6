#include "engine/registry.hpp"

#include <mutex>

namespace udaci {

void register_builtin_strategies(StrategyRegistry& r) {
  register_caches(r.caches);
  register_quantizers(r.quantizers);
  register_pruners(r.pruners);
  register_decoders(r.decoders);
  register_parallel_plans(r.parallel_plans);
}

const StrategyRegistry& builtin_strategies() {
  static StrategyRegistry registry;
  static std::once_flag once;
  std::call_once(once, [] { register_builtin_strategies(registry); });
  return registry;
}

}  // namespace udaci
