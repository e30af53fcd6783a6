// The pruners beyond "none", registered with the engine's strategies. Options
// are read and validated here, so a wrong one fails before any file is read.
#include "engine/registry.hpp"
#include "prune/pruners.hpp"

namespace udaci {

void register_pruners(StrategyRegistry& r) {
  r.pruners.add("magnitude", [](const StrategyOptions& o) -> std::unique_ptr<Pruner> {
    const std::string owner = "pruner 'magnitude'";
    o.expect_only(owner, {"fraction", "scope"});
    MagnitudeOptions m;
    m.fraction = o.get_double(owner, "fraction", m.fraction);
    m.scope = o.get_string(owner, "scope", m.scope);
    return std::make_unique<MagnitudePruner>(m);
  });
  r.pruners.add("2:4", [](const StrategyOptions& o) -> std::unique_ptr<Pruner> {
    o.expect_only("pruner '2:4'", {});
    return std::make_unique<Sparse24Pruner>();
  });
  r.pruners.add("structured", [](const StrategyOptions& o) -> std::unique_ptr<Pruner> {
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
