#include "prune/prune_util.hpp"

#include <memory>

#include "core/error.hpp"
#include "model/llama_names.hpp"

namespace udaci {

std::vector<std::string> projection_weight_names(const ModelConfig& config) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < config.num_layers; ++i)
    for (const LlamaPartName& p : llama_parts())
      if (p.projection) out.push_back(llama_layer_name(i, p.part) + ".weight");
  return out;
}

const TensorEntry& projection_entry(const WeightStore& store, const std::string& name) {
  const TensorEntry& e = store.entry(name);
  UDACI_CHECK_S(Status::kBadModelFile, e.shape.size() == 2,
                "tensor '{}' in '{}' is a projection and must be 2-D, but has {} dimensions", name,
                e.source, e.shape.size());
  return e;
}

WeightType pruned_storage_type(WeightType stored) {
  switch (stored) {
    case WeightType::kF32:
    case WeightType::kF16:
    case WeightType::kBF16:
      return stored;
    default:
      return WeightType::kF32;
  }
}

void put_tensor(WeightStore& store, const std::string& name, const at::Tensor& values,
                WeightType type, const std::string& source) {
  store.put(tensor_entry(name, values.to(weight_type_scalar_type(type)), source));
}

KthMagnitude kth_smallest_magnitude(
    const std::function<void(const std::function<void(const at::Tensor&)>&)>& for_each, int64_t k) {
  // Pass 1 counts the 16 high bits of every key; the bucket holding the k-th
  // smallest is the first whose running count passes k. Pass 2 counts the low
  // 16 bits inside that bucket only. Exact, whatever the distribution.
  std::vector<int64_t> hist(1 << 16, 0);
  int64_t total = 0;
  for_each([&](const at::Tensor& t) {
    const float* p = t.data_ptr<float>();
    const int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) ++hist[magnitude_key(p[i]) >> 16];
    total += n;
  });
  UDACI_CHECK_S(Status::kInternal, k >= 0 && k < total, "k-th magnitude: k = {} of {} elements", k,
                total);
  int64_t below = 0;
  uint32_t high = 0;
  while (below + hist[high] <= k) below += hist[high++];
  std::fill(hist.begin(), hist.end(), 0);
  for_each([&](const at::Tensor& t) {
    const float* p = t.data_ptr<float>();
    const int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t key = magnitude_key(p[i]);
      if ((key >> 16) == high) ++hist[key & 0xffffu];
    }
  });
  uint32_t low = 0;
  while (below + hist[low] <= k) below += hist[low++];
  return {(high << 16) | low, below};
}

int64_t zero_below(at::Tensor& t, uint32_t threshold, int64_t& ties_left) {
  float* p = t.data_ptr<float>();
  const int64_t n = t.numel();
  int64_t zeros = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t key = magnitude_key(p[i]);
    if (key < threshold || (key == threshold && ties_left > 0)) {
      if (key == threshold) --ties_left;
      p[i] = 0.0f;
    }
    zeros += p[i] == 0.0f;
  }
  return zeros;
}

}  // namespace udaci
