#include "quant/stored_format.hpp"

#include <fmt/ranges.h>  // fmt::join (fmt >= 11 keeps it here)

#include "core/error.hpp"
#include "core/strings.hpp"

namespace udaci {

std::optional<StoredQuantFormat> stored_quant_format(const WeightStore& store, const std::string& prefix,
                                                     int64_t in_features) {
  const std::string w = prefix + ".weight";
  if (store.has(w) && store.entry(w).type == WeightType::kI8 && store.has(w + "_scale"))
    return StoredQuantFormat{WeightFormat::kInt8, 0};
  if (!store.has(w + "_packed") || !store.has(w + "_scales")) return std::nullopt;
  const TensorEntry& sc = store.entry(w + "_scales");
  UDACI_CHECK_S(Status::kBadModelFile, sc.shape.size() == 2 && sc.shape[1] > 0 && in_features % sc.shape[1] == 0,
                "quantised tensor '{}_scales' has shape [{}] for {} inputs", w,
                fmt::join(sc.shape, ", "), in_features);
  return StoredQuantFormat{store.has(w + "_mins") ? WeightFormat::kInt4 : WeightFormat::kNF4,
                           in_features / sc.shape[1]};
}

bool is_quant_companion(const std::string& name) {
  return ends_with(name, "_scale") || ends_with(name, "_scales") || ends_with(name, "_mins");
}

}  // namespace udaci
