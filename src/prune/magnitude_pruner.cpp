#include <cmath>

#include <fmt/format.h>

#include "core/error.hpp"
#include "prune/pruners.hpp"
#include "prune/prune_util.hpp"

namespace udaci {

std::string prune_summary(const char* pruner, const PruneReport& report) {
  int64_t zeros = 0, elements = 0;
  for (const auto& t : report.tensors) {
    zeros += t.zeros;
    elements += t.elements;
  }
  const std::string p = pruner;
  std::string note;
  if (p == "magnitude")
    note = "; stored dense, so it saves neither memory nor time";
  else if (p == "2:4")
    note = "; packed as half the values plus 4 bits per group of 4 (0.53x of fp32 bytes)";
  else if (p == "structured")
    note = "; removed whole FFN channels, so the layers are smaller and faster";
  return fmt::format("pruner '{}': {} of {} weights in {} projection tensors removed or zero ({:.2f}%){}",
                     pruner, zeros, elements, report.tensors.size(), 100.0 * report.sparsity(), note);
}

MagnitudePruner::MagnitudePruner(MagnitudeOptions options) : options_(std::move(options)) {
  UDACI_CHECK(options_.fraction >= 0.0 && options_.fraction < 1.0,
              "pruner 'magnitude': option \"fraction\" must be in [0, 1), got {}", options_.fraction);
  UDACI_CHECK(options_.scope == "layer" || options_.scope == "global",
              "pruner 'magnitude': option \"scope\" must be \"layer\" or \"global\", got \"{}\"",
              options_.scope);
}

namespace {

// The tensor as a float copy the pruner may write to.
at::Tensor writable_float(const WeightStore& store, const std::string& name) {
  const TensorEntry& e = projection_entry(store, name);
  at::Tensor t = store.tensor(name, at::kFloat).contiguous();
  // A stored F32 tensor comes back as a view of the (read-only) mapping.
  if (static_cast<const void*>(t.data_ptr()) == static_cast<const void*>(e.data)) t = t.clone();
  return t;
}

int64_t target_zeros(double fraction, int64_t elements) {
  return std::min<int64_t>(elements, std::llround(fraction * static_cast<double>(elements)));
}

}  // namespace

PruneReport MagnitudePruner::prune(WeightStore& store, ModelConfig& config) const {
  const std::vector<std::string> names = projection_weight_names(config);
  PruneReport report;
  const bool global = options_.scope == "global";

  // Global scope: one threshold for all tensors, found in two streaming
  // passes; ties at it are cut in tensor order, then index order.
  KthMagnitude global_kth;
  int64_t ties_left = 0;
  if (global) {
    int64_t total = 0;
    for (const auto& n : names) total += projection_entry(store, n).numel();
    const int64_t k = target_zeros(options_.fraction, total);
    if (k > 0 && k < total) {
      global_kth = kth_smallest_magnitude(
          [&](const std::function<void(const at::Tensor&)>& visit) {
            for (const auto& n : names) visit(store.tensor(n, at::kFloat).contiguous());
          },
          k - 1);
      // The k-th smallest (k-1, 0-based) is the threshold: everything below
      // it and as many equal to it as make k in all.
      ties_left = k - global_kth.below;
    } else if (k == total && total > 0) {
      global_kth.key = 0xffffffffu;  // everything (f rounds to 1 on a tiny model)
    }
  }

  for (const auto& n : names) {
    const TensorEntry& e = projection_entry(store, n);
    const WeightType type = pruned_storage_type(e.type);
    const std::string source = e.source + " (pruned: magnitude)";
    at::Tensor w = writable_float(store, n);
    const int64_t elements = w.numel();
    int64_t zeros = 0;
    if (global) {
      zeros = zero_below(w, global_kth.key, ties_left);
    } else {
      const int64_t k = target_zeros(options_.fraction, elements);
      int64_t ties = 0;
      uint32_t key = 0;
      if (k >= elements) {
        key = 0xffffffffu;
      } else if (k > 0) {
        const KthMagnitude kth = kth_smallest_magnitude(
            [&](const std::function<void(const at::Tensor&)>& visit) { visit(w); }, k - 1);
        key = kth.key;
        ties = k - kth.below;
      }
      zeros = zero_below(w, key, ties);
    }
    put_tensor(store, n, w, type, source);
    report.tensors.push_back({n, zeros, elements});
  }
  return report;
}

}  // namespace udaci
