#include "core/error.hpp"
#include "model/llama_model.hpp"
#include "prune/pruners.hpp"
#include "prune/prune_util.hpp"
#include "prune/sparse24.hpp"

namespace udaci {

namespace {

// "model.layers.0.mlp.up_proj.weight" -> "...up_proj.weight_sparse_values".
std::string values_name(const std::string& weight) { return weight + "_sparse_values"; }
std::string meta_name(const std::string& weight) { return weight + "_sparse_meta"; }

}  // namespace

PruneReport Sparse24Pruner::prune(WeightStore& store, ModelConfig& config) const {
  PruneReport report;
  for (const auto& n : projection_weight_names(config)) {
    const TensorEntry& e = projection_entry(store, n);
    UDACI_CHECK(e.shape[1] % 4 == 0,
                "pruner '2:4': tensor '{}' has {} inputs, not a multiple of 4, so it cannot be "
                "split into groups of 4",
                n, e.shape[1]);
    const std::string source = e.source + " (pruned: 2:4)";
    Packed24 p = pack_2of4(store.tensor(n, at::kFloat));
    const int64_t elements = e.numel();
    const int64_t kept_nonzero = p.values.ne(0).sum().item<int64_t>();
    put_tensor(store, values_name(n), p.values, WeightType::kF32, source);
    put_tensor(store, meta_name(n), p.meta, WeightType::kU8, source);
    store.remove(n);
    report.tensors.push_back({n, elements - kept_nonzero, elements});
  }
  return report;
}

std::unique_ptr<LinearKernel> Sparse24Pruner::make_kernel(const LinearSpec& spec,
                                                          const WeightStore& store,
                                                          const ModelOptions& options) const {
  const std::string w = spec.weight + ".weight";
  if (!store.has(values_name(w))) return nullptr;
  UDACI_CHECK_S(Status::kBadModelFile, store.has(meta_name(w)),
                "tensor '{}' has 2:4 values but no '{}'", w, meta_name(w));
  at::Tensor values = store.tensor(values_name(w), at::kFloat);
  at::Tensor meta = store.tensor(meta_name(w), at::kByte);
  check_packed_2of4(values, meta, spec.out_features, spec.in_features, "2:4 weight '" + w + "'");
  at::Tensor bias = spec.bias ? store.tensor(spec.weight + ".bias", at::kFloat) : at::Tensor();
  if (options.device.is_cpu()) return make_sparse24_kernel(values, meta, spec.in_features, bias);
  // No sparse GPU kernel yet (cuSPARSELt compresses from the dense pruned
  // matrix, see sparse24.hpp): the zeros run dense on the device.
  at::Tensor dense = unpack_2of4(values, meta, spec.in_features).to(options.device, options.dtype);
  return make_dense_kernel(dense, bias.defined() ? bias.to(options.device, options.dtype) : bias);
}

}  // namespace udaci
