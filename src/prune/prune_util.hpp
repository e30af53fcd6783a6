// Helpers shared by the pruners: which tensors they touch, reading them as
// float and writing them back into a WeightStore, and an exact k-th smallest
// magnitude over tensors that never all sit in memory at once.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "io/weight_store.hpp"
#include "model/model_config.hpp"

namespace udaci {

// The weight names ("model.layers.3.mlp.up_proj.weight") of the decoder
// projections q, k, v, o, gate, up, down of every layer, in layer order. The
// pruners touch only these (see magnitude_pruner.cpp for why).
std::vector<std::string> projection_weight_names(const ModelConfig& config);

// Throws Error(kBadModelFile) naming the tensor when it is absent or not 2-D.
const TensorEntry& projection_entry(const WeightStore& store, const std::string& name);

// The type a rewritten tensor is stored in: a plain float type stays as it is
// (zeros and selected rows are exact in any of them); GGUF block formats
// become F32 (re-quantising is a Quantizer's job and would move the zeros).
WeightType pruned_storage_type(WeightType stored);

// Replaces (or adds) `name` in `store` with `values` converted to `type`,
// owning its memory. `values` is in Hugging Face row order, so the entry's
// unpermute_heads is 0. `note` is appended to the source, for messages.
void put_tensor(WeightStore& store, const std::string& name, const at::Tensor& values,
                WeightType type, const std::string& source);

// Order-preserving key of |x| for a float: the IEEE bits of |x| as an unsigned
// integer compare as the magnitudes do (NaN above +inf).
inline uint32_t magnitude_key(float x) {
  uint32_t u;
  static_assert(sizeof(u) == sizeof(x), "float is 32 bits");
  std::memcpy(&u, &x, sizeof(u));
  return u & 0x7fffffffu;
}

// The exact k-th smallest magnitude (0-based) over a sequence of float
// tensors, by a two-pass radix select on magnitude_key (16 high bits, then 16
// low bits), O(elements) time and 2 x 64 Ki counters of memory. `for_each`
// calls its argument with every tensor (contiguous float) in a fixed order, and
// is called twice. Returns the key of the k-th smallest and how many elements
// have a strictly smaller key. Requires 0 <= k < total elements.
struct KthMagnitude {
  uint32_t key = 0;
  int64_t below = 0;
};
KthMagnitude kth_smallest_magnitude(
    const std::function<void(const std::function<void(const at::Tensor&)>&)>& for_each, int64_t k);

// Zeros, in place, every element of `t` (contiguous float) whose magnitude key
// is below `threshold`, then the elements equal to it in index order while
// `ties_left` > 0 (decremented). Returns the number of zeros in t afterwards.
int64_t zero_below(at::Tensor& t, uint32_t threshold, int64_t& ties_left);

}  // namespace udaci
