#pragma once
// fp32 attention on the CPU that reads K/V where the cache keeps them
// (KvSpan), for every sequence of a step in one parallel loop. The SIMD body
// of one (token, head) lives in attention_avx2.cpp, the scalar one in
// attention_cpu.cpp (the reference the tests compare against).

#include <cstdint>
#include <vector>

#include "core/sequence.hpp"

namespace udaci {

// The new tokens of one sequence: query i (i < n) sits at position past + i
// and attends to the first past + i + 1 tokens of its K/V.
struct SeqAttention {
  const float* q = nullptr;  // [n, heads, head_dim]
  float* out = nullptr;      // [n, heads * head_dim]
  int64_t n = 0;
  int64_t past = 0;
  const KvSpan* spans = nullptr;  // covering at least past + n tokens
  int64_t n_spans = 0;
};

struct AttentionShape {
  int64_t heads = 0;
  int64_t kv_heads = 0;  // heads is a multiple of it (grouped-query attention)
  int64_t head_dim = 0;
};

// softmax(q . k * scale) v for every (sequence, token, head) of `seqs`, in one
// parallel_for on udaci's pool. simd: the AVX2 body (the caller has checked
// the CPU), else the scalar one.
void attend_cpu(const std::vector<SeqAttention>& seqs, const AttentionShape& shape, float scale, bool simd);

namespace detail {

// One (token, head): q [d]; the K/V of head g of the first `total` tokens in
// `spans` (row stride `stride` floats, head g at offset `head_off`); p: scratch
// for `total` scores; out [d].
void attend_head_avx2(const float* q, const KvSpan* spans, int64_t n_spans, int64_t stride, int64_t head_off,
                      int64_t d, int64_t total, float scale, float* p, float* out);
void attend_head_scalar(const float* q, const KvSpan* spans, int64_t n_spans, int64_t stride,
                        int64_t head_off, int64_t d, int64_t total, float scale, float* p, float* out);

}  // namespace detail
}  // namespace udaci
