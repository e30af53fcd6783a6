// Which of udaci's own quantised formats a stored weight is in (a `udaci
// convert` artefact), read from the tensors beside it: int8 keeps
// "<w>.weight" as I8 with "<w>.weight_scale"; int4 and nf4 keep
// "<w>.weight_packed" and "<w>.weight_scales", int4 also "<w>.weight_mins".
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "io/weight_store.hpp"
#include "quant/quantizers.hpp"

namespace udaci {

struct StoredQuantFormat {
  WeightFormat format = WeightFormat::kNone;
  int64_t group = 0;  // int4 / nf4: inputs per scale
};

// The stored format of the projection whose tensors start with `prefix`
// ("model.layers.0.mlp.up_proj") and that has `in_features` inputs, or
// nullopt for a float (or GGUF block) weight. Error(kBadModelFile) when the
// companion tensors do not fit together.
std::optional<StoredQuantFormat> stored_quant_format(const WeightStore& store, const std::string& prefix,
                                                     int64_t in_features);

// True for the name of a companion tensor of a stored quantised weight
// ("..._scale", "..._scales", "..._mins"): held as stored at any dtype.
bool is_quant_companion(const std::string& name);

}  // namespace udaci
