// The non-linear operations of a decoder layer (RMSNorm, rotary embedding,
// attention) for one device and dtype, chosen once when a LlamaModel is built
// — as its LinearKernels are — so that the layers never ask where they run.
//
//   aten  (layer_backend_aten.cpp)  the reference formulas as ATen ops: any
//         device and dtype; the others hand it what they do not cover.
//   cpu   (layer_backend_cpu.cpp)   fp32 on the CPU: one pass per norm,
//         rotation, SwiGLU product and residual sum, split over udaci's
//         pool, and attention that reads K/V where the cache keeps them
//         for every sequence of a step in one parallel loop
//         (attention_kernels.hpp; AVX2 or scalar per UDACI_KERNELS).
//   cuda  (src/kernels/cuda/cuda_layer_backend.cpp, CUDA builds only)
//         udaci's RMSNorm and paged-attention decode kernels.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "model/attention_kernels.hpp"

namespace udaci {

class LayerBackend {
 public:
  virtual ~LayerBackend() = default;
  virtual const char* name() const = 0;
  // x [rows, hidden] (or [..., hidden]) normalised and scaled by w [hidden],
  // as HF LlamaRMSNorm (float32 statistics, result in x's dtype).
  virtual at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) const = 0;
  // x [n, heads, head_dim] rotated: x * cos + rotate_half(x) * sin, with cos
  // and sin [n, head_dim] of each token's position.
  virtual at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const = 0;
  // One sequence's new tokens: q [n, heads, d] at positions past .. past + n - 1
  // over k, v [past + n, kv_heads, d] -> [n, heads * d], causal, grouped-query.
  virtual at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               int64_t past) const = 0;
  // Whether attend_in_place serves a slice of n_tokens new tokens (the model
  // then has a cache that keeps K/V as float rows append them in place).
  virtual bool attends_in_place(int64_t n_tokens) const {
    (void)n_tokens;
    return false;
  }
  // silu(gate) * up (SwiGLU's product), gate and up of one shape.
  virtual at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) const {
    return at::silu(gate).mul_(up);
  }
  // x + y (the residual), x and y of one shape.
  virtual at::Tensor add(const at::Tensor& x, const at::Tensor& y) const { return x + y; }
  // Every sequence of a step, K/V read where the cache keeps them.
  virtual void attend_in_place(const std::vector<SeqAttention>& seqs, const AttentionShape& shape,
                               float scale) const;
};

// The reference backend (ATen ops).
std::unique_ptr<LayerBackend> make_aten_layer_backend();
// fp32 CPU kernels for models of compute dtype `dtype` (other dtypes and
// layouts go to the ATen backend).
std::unique_ptr<LayerBackend> make_cpu_layer_backend(at::ScalarType dtype);
// udaci's CUDA kernels; nullptr in a build without CUDA (defined in
// src/kernels/cuda/cuda_layer_backend.cpp or src/kernels/no_cuda_layer_backend.cpp).
std::unique_ptr<LayerBackend> make_cuda_layer_backend(at::ScalarType dtype);

// The backend for a model on `device` in `dtype`.
std::unique_ptr<LayerBackend> select_layer_backend(const at::Device& device, at::ScalarType dtype);

}  // namespace udaci
