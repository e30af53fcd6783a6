// Quantizer: weight quantisation in two phases (as gpt-fast's quantize.py):
// quantize() rewrites a WeightStore offline into a smaller format that can be
// saved and reloaded; make_kernel() builds, at load, the LinearKernel that runs
// that format for each projection of the model (the engine hands it to
// LlamaModel as its LinearFactory). Layers never ask whether they are
// quantised: the bound kernel carries the difference.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/named_factories.hpp"
#include "io/weight_store.hpp"
#include "model/linear.hpp"

namespace udaci {

struct QuantizeReport {
  int64_t bytes_before = 0;  // weight bytes as stored before quantize()
  int64_t bytes_after = 0;
  int64_t tensors_changed = 0;
};

class Quantizer {
 public:
  virtual ~Quantizer() = default;
  virtual const char* name() const = 0;
  // Rewrites the store's float weights into this quantizer's format; tensors
  // already in it (a reloaded artefact) are left as they are.
  virtual QuantizeReport quantize(WeightStore& store) const = 0;
  // The kernel for one projection, or nullptr to keep it dense.
  virtual std::unique_ptr<LinearKernel> make_kernel(const LinearSpec& spec,
                                                    const WeightStore& store,
                                                    const ModelOptions& options) const = 0;
  // Capability: its kernels run a file's quantised blocks in place (whole
  // tensors as stored), so a plan that gives each rank slices of the weights
  // cannot use it ("gguf-native").
  virtual bool runs_stored_blocks() const { return false; }
};

// The quantizers by name: "none" (runs a stored int8 / int4 / nf4 artefact as
// stored, leaves the rest dense), "int8", "int4", "nf4", "gguf-native"
// (register_quantizers.cpp).
using QuantizerFactories = NamedFactories<Quantizer>;
void register_quantizers(QuantizerFactories& quantizers);

// Total bytes of the tensors in `store`, as stored.
int64_t stored_bytes(const WeightStore& store);

}  // namespace udaci
