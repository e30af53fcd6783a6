#include "model/layer_backend.hpp"

#include "core/error.hpp"

namespace udaci {

void LayerBackend::attend_in_place(const std::vector<SeqAttention>&, const AttentionShape&, float) const {
  fail(Status::kInternal, "layer backend '{}' does not attend in place", name());
}

std::unique_ptr<LayerBackend> select_layer_backend(const at::Device& device, at::ScalarType dtype) {
  if (device.is_cpu()) return make_cpu_layer_backend(dtype);
  if (device.is_cuda()) {
    if (std::unique_ptr<LayerBackend> b = make_cuda_layer_backend(dtype)) return b;
  }
  return make_aten_layer_backend();
}

}  // namespace udaci
