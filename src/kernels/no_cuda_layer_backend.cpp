// A build without CUDA has no CUDA layer backend: models on other devices
// than the CPU take the ATen one (model/layer_backend.cpp).
#include "model/layer_backend.hpp"

namespace udaci {

std::unique_ptr<LayerBackend> make_cuda_layer_backend(at::ScalarType) { return nullptr; }

}  // namespace udaci
