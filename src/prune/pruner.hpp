// Pruner: removes weights from a WeightStore before the model is built and
// reports, per tensor, what it removed. Implementations: register_pruners.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/named_factories.hpp"
#include "io/weight_store.hpp"
#include "model/linear.hpp"
#include "model/model_config.hpp"

namespace udaci {

struct PruneReport {
  struct Tensor {
    std::string name;
    int64_t zeros = 0;     // elements that are zero after pruning
    int64_t elements = 0;
  };
  std::vector<Tensor> tensors;  // the tensors the pruner considered
  // Zero fraction over the considered tensors; 0 when none were.
  double sparsity() const;
};

class Pruner {
 public:
  virtual ~Pruner() = default;
  virtual const char* name() const = 0;
  // Prunes `store` in place; a structured pruner that shrinks shapes updates
  // `config` to match (e.g. intermediate_size).
  virtual PruneReport prune(WeightStore& store, ModelConfig& config) const = 0;
  // A kernel that runs the pruned format (e.g. packed 2:4), or nullptr to let
  // the quantizer or the dense default run the weights. Asked after the
  // quantizer declined.
  virtual std::unique_ptr<LinearKernel> make_kernel(const LinearSpec&, const WeightStore&,
                                                    const ModelOptions&) const {
    return nullptr;
  }
};

// The pruners by name: "none" (runs a stored 2:4 artefact packed, prunes
// nothing), "magnitude", "2:4", "structured" (register_pruners.cpp).
using PrunerFactories = NamedFactories<Pruner>;
void register_pruners(PrunerFactories& pruners);

}  // namespace udaci
