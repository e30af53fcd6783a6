// The cache strategies, registered by name with options read and validated
// here (a wrong option fails before any file is read).
#include "cache/paged_cache.hpp"

namespace udaci {

void register_caches(CacheFactories& caches) {
  caches.add(
      "none",
      [](const StrategyOptions& o, const CacheShape& s) {
        o.expect_only("cache 'none'", {});
        return make_no_cache(s);
      },
      [](const StrategyOptions& o) { o.expect_only("cache 'none'", {}); });
  caches.add(
      "contiguous",
      [](const StrategyOptions& o, const CacheShape& s) {
        o.expect_only("cache 'contiguous'", {});
        return make_contiguous_cache(s);
      },
      [](const StrategyOptions& o) { o.expect_only("cache 'contiguous'", {}); });
  // Options: block (tokens per block, 16), kv (float | int8), max_blocks,
  // max_bytes (pool cap; 0 = none), prefix (0 | 1).
  caches.add(
      "paged",
      [](const StrategyOptions& o, const CacheShape& s) {
        return make_paged_cache(s, PagedCacheOptions::from(o, "cache 'paged'", false));
      },
      [](const StrategyOptions& o) { PagedCacheOptions::from(o, "cache 'paged'", false); });
  caches.add(
      "paged-prefix",
      [](const StrategyOptions& o, const CacheShape& s) {
        return make_paged_cache(s, PagedCacheOptions::from(o, "cache 'paged-prefix'", true));
      },
      [](const StrategyOptions& o) { PagedCacheOptions::from(o, "cache 'paged-prefix'", true); });
}

}  // namespace udaci
