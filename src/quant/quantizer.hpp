// Quantizer: weight quantisation in two phases (as gpt-fast's quantize.py):
// quantize() rewrites a WeightStore offline into a smaller format that can be
// saved and reloaded; prepare() binds, at load, the LinearKernel that runs that
// format to each Linear of the model. Layers never ask whether they are
// quantised: the bound kernel carries the difference. Implementations: "none"
// so far; int8, int4 (affine / NF4) and GGUF-native arrive with issue #7.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/strategy_options.hpp"
#include "io/weight_store.hpp"

namespace udaci {

class LlamaModel;

struct QuantizeReport {
  int64_t bytes_before = 0;  // weight bytes as stored before quantize()
  int64_t bytes_after = 0;
  int64_t tensors_changed = 0;
};

class Quantizer {
 public:
  virtual ~Quantizer() = default;
  virtual const char* name() const = 0;
  virtual QuantizeReport quantize(WeightStore& store) const = 0;
  virtual void prepare(LlamaModel& model) const = 0;
};

// Total bytes of the tensors in `store`, as stored.
int64_t stored_bytes(const WeightStore& store);

}  // namespace udaci
