// What the randomised cache tests (test_paged_cache.cpp,
// test_contiguous_cache.cpp) compare a cache against: synthetic K/V whose
// value at position p depends on every token 0..p (a hash of the prefix), so
// K/V kept or shared for the wrong prefix shows up as wrong contents, the
// rows a cache hands out in place gathered back into tensors, and the random
// choices of an operation sequence.
#pragma once

#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <iterator>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "cache/cache_strategy.hpp"
#include "core/sequence.hpp"

namespace udaci_test {

// One code per token: a running FNV hash of the tokens up to it.
inline std::vector<int64_t> prefix_codes(const std::vector<int64_t>& toks) {
  std::vector<int64_t> out;
  uint64_t h = 1469598103934665603ULL;
  for (int64_t t : toks) {
    h = (h ^ static_cast<uint64_t>(t + 1)) * 1099511628211ULL;
    out.push_back(static_cast<int64_t>((h >> 20) % 100000));
  }
  return out;
}

// K (kind 0) or V (kind 1) of `layer` for the tokens from `from` on, [n, heads,
// dim]: code + (layer, kind, head, dim) in 1/128 steps, exact in float32 and
// float64.
inline at::Tensor kv_values(const std::vector<int64_t>& code, int64_t from, int64_t layer, int kind, int64_t heads,
                            int64_t dim, at::ScalarType dtype = at::kFloat) {
  const int64_t n = static_cast<int64_t>(code.size()) - from;
  at::Tensor t = at::empty({n, heads, dim}, at::kDouble);
  auto a = t.accessor<double, 3>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t d = 0; d < dim; ++d)
        a[i][h][d] = static_cast<double>(code[static_cast<size_t>(from + i)]) + 0.125 * static_cast<double>(layer * 2 + kind) +
                     0.03125 * static_cast<double>(h) + 0.0078125 * static_cast<double>(d);
  return t.to(dtype);
}

// The float rows of `spans` (n tokens in all, each span non-empty), in order,
// as K and V tensors [n, heads, dim].
inline std::pair<at::Tensor, at::Tensor> gather_spans(const std::vector<udaci::KvSpan>& spans, int64_t n,
                                                      int64_t heads, int64_t dim) {
  at::Tensor ks = at::empty({n, heads, dim}), vs = at::empty({n, heads, dim});
  int64_t row = 0;
  for (const udaci::KvSpan& sp : spans) {
    REQUIRE(sp.tokens > 0);
    REQUIRE(row + sp.tokens <= n);
    std::copy(sp.k, sp.k + sp.tokens * heads * dim, ks.data_ptr<float>() + row * heads * dim);
    std::copy(sp.v, sp.v + sp.tokens * heads * dim, vs.data_ptr<float>() + row * heads * dim);
    row += sp.tokens;
  }
  REQUIRE(row == n);
  return {ks, vs};
}

// Appends the K/V of the tokens whose codes are code[from..] to `seq` at each
// of `layers` layers (odd layers through append_in_place where the cache
// allows it, so verifying reads what both paths wrote); the caller commits.
// A cache's error (a full cap) propagates.
inline void append_layers(udaci::CacheStrategy& c, udaci::SeqId seq, const std::vector<int64_t>& code, int64_t from,
                          int64_t layers, int64_t heads, int64_t dim, at::ScalarType dtype = at::kFloat) {
  const auto total = static_cast<int64_t>(code.size());
  for (int64_t l = 0; l < layers; ++l) {
    const at::Tensor k = kv_values(code, from, l, 0, heads, dim, dtype), v = kv_values(code, from, l, 1, heads, dim, dtype);
    if (l % 2 == 1 && c.kv_in_place()) {
      std::vector<udaci::KvSpan> spans;
      c.append_in_place(l, seq, k.data_ptr<float>(), v.data_ptr<float>(), k.size(0), spans);
      int64_t covered = 0;
      for (const udaci::KvSpan& sp : spans) covered += sp.tokens;
      REQUIRE(covered == total);
      continue;
    }
    const int64_t rows = c.append(l, seq, k, v).first.size(0);  // outside REQUIRE: errors propagate
    REQUIRE(rows == total);
  }
}

// The random choices of an operation sequence: integers, a live sequence,
// token ids.
class RandomOps {
 public:
  explicit RandomOps(uint32_t seed) : rng_(seed) {}
  int64_t uni(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  template <typename Map>
  typename Map::key_type pick(const Map& live) {
    auto it = live.begin();
    std::advance(it, uni(0, static_cast<int64_t>(live.size()) - 1));
    return it->first;
  }
  std::vector<int64_t> tokens(int64_t n) {
    std::vector<int64_t> t;
    for (int64_t i = 0; i < n; ++i) t.push_back(uni(0, 5));
    return t;
  }

 private:
  std::mt19937 rng_;
};

// Committed token ids of each live sequence, as the cache should hold them.
using CacheReference = std::map<udaci::SeqId, std::vector<int64_t>>;

// The operations both randomised runs make alike, chosen by `kind`: 5 forks
// a live sequence while fewer than max_live are, 6 truncates one to a random
// length, 7 frees one, any other verifies one. Returns whether it forked.
template <typename Verify>
bool common_operation(int64_t kind, udaci::CacheStrategy& c, CacheReference& ref, RandomOps& rnd,
                      udaci::SeqId& next_id, size_t max_live, Verify&& verify) {
  if (ref.empty()) return false;
  if (kind == 5 && ref.size() < max_live) {
    const udaci::SeqId s = rnd.pick(ref);
    const udaci::SeqId child = next_id++;
    c.fork(s, child);
    ref[child] = ref[s];
    return true;
  }
  if (kind == 6) {
    const udaci::SeqId s = rnd.pick(ref);
    const int64_t len = rnd.uni(0, static_cast<int64_t>(ref[s].size()));
    c.truncate(s, len);
    ref[s].resize(static_cast<size_t>(len));
  } else if (kind == 7) {
    const udaci::SeqId s = rnd.pick(ref);
    c.free_sequence(s);
    ref.erase(s);
    REQUIRE_FALSE(c.has_sequence(s));
  } else {
    verify(rnd.pick(ref));
  }
  return false;
}

}  // namespace udaci_test
