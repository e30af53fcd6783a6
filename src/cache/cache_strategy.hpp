// CacheStrategy owns the K/V memory of every live sequence. The model asks it
// for a sequence's K/V when it runs attention; it never knows which strategy is
// behind it. A strategy that keeps nothing (NoCache) reports a cached length of
// 0, so the generation loop feeds the whole sequence again at every step — the
// report's "baseline".
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/named_factories.hpp"
#include "core/sequence.hpp"

namespace udaci {

struct CacheShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
};

// What a cache did, for benchmarks and tests; strategies that do not track a
// field leave it 0.
struct CacheStats {
  int64_t prefix_hit_tokens = 0;     // prompt tokens served from shared blocks
  int64_t prefix_lookup_tokens = 0;  // prompt tokens passed to begin_prompt
  int64_t blocks_in_use = 0;         // blocks referenced by live sequences (shared ones once)
  int64_t blocks_cached_free = 0;    // unreferenced blocks kept for prefix reuse
  int64_t evictions = 0;             // cached blocks reclaimed under the memory cap
  int64_t pool_bytes = 0;            // memory allocated for blocks, used or not
};

class CacheStrategy {
 public:
  virtual ~CacheStrategy() = default;
  virtual const char* name() const = 0;

  // Starts a sequence; capacity_hint is the number of tokens it is expected to
  // reach (prompt + new tokens), so a strategy can size its memory once.
  virtual void add_sequence(SeqId seq, int64_t capacity_hint) = 0;
  virtual void free_sequence(SeqId seq) = 0;
  virtual bool has_sequence(SeqId seq) const = 0;

  // Tokens whose K/V are held for `seq`: the position of its next token.
  virtual int64_t cached_length(SeqId seq) const = 0;

  // Stores K/V of `k.size(0)` new tokens of `layer` after the committed ones and
  // returns the K/V of all tokens (committed + new) for attention.
  //   k, v:   [n_new, n_kv_heads, head_dim]
  //   result: [cached_length + n_new, n_kv_heads, head_dim] each
  virtual std::pair<at::Tensor, at::Tensor> append(int64_t layer, SeqId seq, const at::Tensor& k,
                                                   const at::Tensor& v) = 0;
  // True when append_in_place() works: the cache holds K/V as float32 rows in
  // CPU memory. Attention for a whole step then runs in one call per layer
  // over every sequence's K/V where it lies (no gathered copies).
  virtual bool kv_in_place() const { return false; }
  // As append(), for a cache with kv_in_place(): stores the K/V of n_new
  // tokens given as float rows (k, v: [n_new, kv_heads, head_dim], contiguous;
  // may be null when n_new is 0) and, instead of tensors, replaces `spans`
  // with where the K/V of all the sequence's tokens (committed + new) lie, in
  // position order. The pointers stay valid until the next append to,
  // truncate, fork or free of this sequence.
  // Default: Error(kUnsupported).
  virtual void append_in_place(int64_t layer, SeqId seq, const float* k, const float* v, int64_t n_new,
                               std::vector<KvSpan>& spans) {
    (void)layer, (void)k, (void)v, (void)n_new, (void)spans;
    fail(Status::kUnsupported, "cache '{}' cannot hand out K/V of sequence {} in place", name(), seq);
  }
  // K/V of the committed tokens of `seq` in `layer`, [cached_length, kv_heads,
  // head_dim] each (views or copies; read only).
  virtual std::pair<at::Tensor, at::Tensor> committed_kv(int64_t layer, SeqId seq) = 0;
  // Called once per sequence after every layer appended: the new tokens become
  // part of the cached prefix.
  virtual void commit(SeqId seq, int64_t n_new) = 0;
  // Drops tokens from `length` on (speculative rollback).
  virtual void truncate(SeqId seq, int64_t length) = 0;

  // Tells the cache that the first tokens of `seq` (just added, nothing
  // cached) will be `prompt`. A cache that shares K/V across sequences may then
  // already hold a leading part of it: the return value, also its
  // cached_length() from now on, so the caller computes only the rest. At
  // least the last prompt token is always left uncached, so the model still
  // produces the logits of the next token.
  virtual int64_t begin_prompt(SeqId seq, const std::vector<int64_t>& prompt) {
    (void)prompt;
    return cached_length(seq);
  }
  // Tokens per shared unit for a cache that shares prompt prefixes between
  // sequences (its block size), else 0. The scheduler holds back a newcomer
  // whose first unit matches a prompt still being computed, so that it finds
  // those blocks cached instead of computing them a second time.
  virtual int64_t prefix_share_tokens() const { return 0; }
  // Leading tokens of `prompt` that begin_prompt would serve from the cache
  // now (no side effects); 0 for caches that do not share.
  virtual int64_t prefix_available(const std::vector<int64_t>& prompt) const {
    (void)prompt;
    return 0;
  }
  // Starts `child` (a new id) holding the same cached tokens as `parent`, for
  // beam search or parallel sampling. Later appends to either do not show in
  // the other.
  // Default: Error(kUnsupported).
  virtual void fork(SeqId parent, SeqId child) {
    fail(Status::kUnsupported, "cache '{}' cannot fork sequence {} into {}", name(), parent, child);
  }

  // Bytes of K/V memory currently allocated by this cache (for a cache of
  // shared blocks: the blocks live sequences use, a shared one counted once).
  virtual int64_t bytes_reserved() const = 0;
  // Most bytes one sequence of `tokens` tokens can make this cache allocate
  // (the scheduler charges it on admission, so a running sequence never runs
  // out of cache memory).
  virtual int64_t bytes_for_tokens(int64_t tokens) const = 0;
  // The cache's own cap on bytes_reserved(); 0 = none.
  virtual int64_t byte_limit() const { return 0; }
  // False for a cache that keeps no K/V (NoCache): every step then feeds the
  // whole sequence, and a prompt cannot be computed in chunks.
  virtual bool retains_kv() const { return true; }
  virtual CacheStats stats() const { return {}; }
  // The most bytes_reserved() has been since construction or reset_peak().
  int64_t peak_bytes_reserved() const { return peak_bytes_; }
  void reset_peak() { peak_bytes_ = bytes_reserved(); }

 protected:
  // Implementations call this after allocating.
  void note_reserved(int64_t bytes) { peak_bytes_ = std::max(peak_bytes_, bytes); }

 private:
  int64_t peak_bytes_ = 0;
};

std::unique_ptr<CacheStrategy> make_no_cache(const CacheShape& shape);
std::unique_ptr<CacheStrategy> make_contiguous_cache(const CacheShape& shape);
// Declared in cache/paged_cache.hpp: make_paged_cache(shape, PagedCacheOptions).

// The cache strategies by name: "none", "contiguous", "paged", "paged-prefix"
// (register_caches.cpp).
using CacheFactories = NamedFactories<CacheStrategy, const CacheShape&>;
void register_caches(CacheFactories& caches);

}  // namespace udaci
