// Row addressing of a KvCacheView (kernels.hpp), shared by the rotary/cache
// write and the attention kernels.
#pragma once

#include "kernels/cuda/common.cuh"

namespace udaci::cuda::detail {

// Row of token `pos` of sequence slot `slot`.
__device__ __forceinline__ int64_t kv_row(const KvCacheView& c, int64_t slot, int64_t pos) {
  if (c.block_tables == nullptr) return slot * c.seq_capacity + pos;
  const int64_t block = c.block_tables[slot * c.max_blocks_per_seq + pos / c.block_size];
  return block * c.block_size + pos % c.block_size;
}

}  // namespace udaci::cuda::detail
