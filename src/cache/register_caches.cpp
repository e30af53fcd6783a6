// Cache strategies beyond "none" and "contiguous", registered with the
// engine's strategies.
#include "cache/paged_cache.hpp"
#include "engine/registry.hpp"

namespace udaci {

void register_caches(StrategyRegistry& r) {
  // Options: block (tokens per block, 16), kv (float | int8), max_blocks,
  // max_bytes (pool cap; 0 = none), prefix (0 | 1).
  r.caches.add(
      "paged",
      [](const StrategyOptions& o, const CacheShape& s) {
        return make_paged_cache(s, PagedCacheOptions::from(o, "cache 'paged'", false));
      },
      [](const StrategyOptions& o) { PagedCacheOptions::from(o, "cache 'paged'", false); });
  r.caches.add(
      "paged-prefix",
      [](const StrategyOptions& o, const CacheShape& s) {
        return make_paged_cache(s, PagedCacheOptions::from(o, "cache 'paged-prefix'", true));
      },
      [](const StrategyOptions& o) { PagedCacheOptions::from(o, "cache 'paged-prefix'", true); });
}

}  // namespace udaci
