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

#include "model/forward_batch.hpp"

namespace udaci {

struct CacheShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
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
  // Called once per sequence after every layer appended: the new tokens become
  // part of the cached prefix.
  virtual void commit(SeqId seq, int64_t n_new) = 0;
  // Drops tokens from `length` on (speculative rollback).
  virtual void truncate(SeqId seq, int64_t length) = 0;

  // Bytes of K/V memory currently allocated by this cache.
  virtual int64_t bytes_reserved() const = 0;
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

}  // namespace udaci
