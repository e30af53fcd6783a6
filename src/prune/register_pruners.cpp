// The pruners, registered by name. Options are read and validated here, so a
// wrong one fails before any file is read.
#include "prune/pruners.hpp"

namespace udaci {

double PruneReport::sparsity() const {
  int64_t zeros = 0, total = 0;
  for (const Tensor& t : tensors) {
    zeros += t.zeros;
    total += t.elements;
  }
  return total == 0 ? 0.0 : static_cast<double>(zeros) / static_cast<double>(total);
}

namespace {

class NoPruner final : public Pruner {
 public:
  const char* name() const override { return "none"; }
  PruneReport prune(WeightStore&, ModelConfig&) const override { return {}; }
  // A store packed 2:4 offline (a `udaci convert` artefact) runs the packed kernel.
  std::unique_ptr<LinearKernel> make_kernel(const LinearSpec& spec, const WeightStore& store,
                                            const ModelOptions& opt) const override {
    if (!store.has(spec.weight + ".weight_sparse_values")) return nullptr;
    return Sparse24Pruner().make_kernel(spec, store, opt);
  }
};

}  // namespace

void register_pruners(PrunerFactories& r) {
  r.add("none", [](const StrategyOptions& o) -> std::unique_ptr<Pruner> {
    o.expect_only("pruner 'none'", {});
    return std::make_unique<NoPruner>();
  });
  r.add("magnitude", [](const StrategyOptions& o) -> std::unique_ptr<Pruner> {
    const std::string owner = "pruner 'magnitude'";
    o.expect_only(owner, {"fraction", "scope"});
    MagnitudeOptions m;
    m.fraction = o.get_double(owner, "fraction", m.fraction);
    m.scope = o.get_string(owner, "scope", m.scope);
    return std::make_unique<MagnitudePruner>(m);
  });
  r.add("2:4", [](const StrategyOptions& o) -> std::unique_ptr<Pruner> {
    o.expect_only("pruner '2:4'", {});
    return std::make_unique<Sparse24Pruner>();
  });
  r.add("structured", [](const StrategyOptions& o) -> std::unique_ptr<Pruner> {
    const std::string owner = "pruner 'structured'";
    o.expect_only(owner, {"fraction", "align", "norm", "heads"});
    StructuredOptions s;
    s.fraction = o.get_double(owner, "fraction", s.fraction);
    s.align = o.get_int(owner, "align", s.align);
    s.norm = o.get_string(owner, "norm", s.norm);
    s.heads = o.get_double(owner, "heads", s.heads);
    return std::make_unique<StructuredPruner>(s);
  });
}

}  // namespace udaci
