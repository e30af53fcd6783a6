// Words the model, the caches and the scheduler share about sequences: a
// sequence's id, and where a run of its K/V rows lies in a cache's memory.
#pragma once

#include <cstdint>

namespace udaci {

// A sequence's id in a CacheStrategy (the scheduler hands them out).
using SeqId = int64_t;

// Where consecutive positions of one sequence's K/V lie in a cache's memory,
// for attention that reads the cache in place: `tokens` rows, row r's K at
// k + r * row_stride and V at v + r * row_stride, each row [kv_heads,
// head_dim] float32 (row_stride = kv_heads * head_dim).
struct KvSpan {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t tokens = 0;
};

}  // namespace udaci
