// Rotary position embeddings (Su et al., RoFormer, arXiv:2104.09864) in the
// rotate-half layout of Hugging Face's Llama, with the "linear" and "llama3"
// frequency scalings.
#pragma once

#include <ATen/ATen.h>

#include "model/model_config.hpp"

namespace udaci {

class Rope {
 public:
  explicit Rope(const ModelConfig& config);

  // inv_freq: [head_dim / 2], float32, after scaling.
  const at::Tensor& inv_freq() const { return inv_freq_; }

  // cos and sin for the given positions, each [n, head_dim], float32 (the
  // rotation itself: LayerBackend::rope).
  std::pair<at::Tensor, at::Tensor> cos_sin(const at::Tensor& positions) const;

 private:
  at::Tensor inv_freq_;
};

}  // namespace udaci
