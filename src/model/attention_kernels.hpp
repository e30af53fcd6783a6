#pragma once
// fp32 attention on the CPU that reads K/V where the cache keeps them
// (KvSpan), for every sequence of a step in one parallel loop. The SIMD body
// (one token, the query heads sharing a K/V head) lives in attention_avx2.cpp,
// the scalar one (one token, one head) in attention_cpu.cpp, the reference the
// tests compare against.

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

// One token, query heads [h0, h1) (heads h and h' share a K/V head when
// h / group == h' / group; d a multiple of 8): q and out [h1 - h0, d]; the K/V
// of the first `total` tokens in `spans` (row stride `stride` floats, K/V head
// g at offset g * d); scratch: attend_scratch_floats(h1 - h0, d, total)
// floats. Each head's output is the same bits whichever range holds it.
void attend_heads_avx2(const float* q, int64_t h0, int64_t h1, int64_t group, const KvSpan* spans,
                       int64_t n_spans, int64_t stride, int64_t d, int64_t total, float scale, float* scratch,
                       float* out);
inline int64_t attend_scratch_floats(int64_t heads, int64_t d, int64_t total) {
  return heads * ((total + 7) / 8 * 8 + d + 1);
}
// One (token, head), the reference: scores, softmax, weighted sum in order.
void attend_head_scalar(const float* q, const KvSpan* spans, int64_t n_spans, int64_t stride,
                        int64_t head_off, int64_t d, int64_t total, float scale, float* p, float* out);

}  // namespace detail
}  // namespace udaci
