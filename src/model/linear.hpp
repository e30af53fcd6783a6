// Every projection of the model is a Linear, which delegates to the
// LinearKernel bound when the model is built. Dense ATen is the default
// kernel; quantised and sparse kernels (src/quant, src/prune) plug in through
// a LinearFactory without the layers knowing.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace udaci {

class WeightStore;
struct ModelOptions;

class LinearKernel {
 public:
  virtual ~LinearKernel() = default;
  virtual const char* name() const = 0;
  // x: [n, in_features] -> [n, out_features], in x's dtype.
  virtual at::Tensor forward(const at::Tensor& x) const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // Bytes the kernel holds for its weight (and scales, bias ...).
  virtual int64_t weight_bytes() const = 0;
  // Rows of the weight, as an embedding lookup: ids [n] (int64) ->
  // [n, in_features] in `dtype`. Kernels bound to the token embedding must
  // implement it; the default throws Error(kUnsupported).
  virtual at::Tensor gather_rows(const at::Tensor& ids, at::ScalarType dtype) const;

  // Several projections of one input (q/k/v; gate/up) in one call. Kernels
  // that can share work across such a group (the quantised ones quantise the
  // input once and run one parallel loop over all the weights) return the
  // same non-null key here and implement forward_group, which is called on
  // the group's first kernel with every member. Others return nullptr.
  virtual const void* group_key() const { return nullptr; }

  // The weight [out, in] of a plain dense kernel without bias (fused decode
  // kernels read it directly); nullptr for every other kernel.
  virtual const at::Tensor* dense_weight() const { return nullptr; }
  virtual std::vector<at::Tensor> forward_group(const at::Tensor& x,
                                                const std::vector<const LinearKernel*>& group) const;

  // forward / forward_group where the first `prompt_rows` rows of x are
  // tokens of prompts (LlamaModel puts them first). A kernel with a prompt
  // path of its own (the quantised kernels on AMX-BF16: tiled_gemm_bf16)
  // runs those rows there and the rest as usual; a row's result then
  // depends on whether it is a prompt row, never on the other rows of the
  // batch. The defaults ignore the split.
  virtual at::Tensor forward_prompt(const at::Tensor& x, int64_t prompt_rows) const;
  virtual std::vector<at::Tensor> forward_group_prompt(const at::Tensor& x,
                                                       const std::vector<const LinearKernel*>& group,
                                                       int64_t prompt_rows) const;
};

// y = x W^T (+ b) with ATen (BLAS underneath). weight: [out, in].
std::unique_ptr<LinearKernel> make_dense_kernel(at::Tensor weight, at::Tensor bias = {});

// x W^T by udaci's CUDA matrix-vector kernel when x (at most 8 rows) and W
// sit on one CUDA device in one dtype; an undefined tensor otherwise, and
// always in a build without CUDA (defined in kernels/cuda/cuda_linear.cpp or
// kernels/no_cuda_layer_backend.cpp). UDACI_CUDA_DENSE_GEMV=0 in the
// environment turns it off (cuBLAS then serves every dense projection: the
// benchmarks' comparison).
at::Tensor cuda_dense_gemv(const at::Tensor& x, const at::Tensor& weight);

// What a LinearFactory is asked to build.
enum class LinearRole {
  kProjection,  // q/k/v/o, gate/up/down of a decoder layer
  kLmHead,      // the output projection
  kEmbedding,   // the token embedding (only gather_rows is used)
};

struct LinearSpec {
  std::string name;    // HF prefix: "model.layers.3.mlp.up_proj", "lm_head", "model.embed_tokens"
  std::string weight;  // prefix of the stored weight: name, or "model.embed_tokens" for a tied head
  LinearRole role = LinearRole::kProjection;
  int64_t out_features = 0;
  int64_t in_features = 0;
  bool bias = false;  // a "<weight>.bias" tensor exists and must be applied
};

// Builds the kernel of one projection from the stored tensors; returns
// nullptr to let the model build the dense default from "<weight>.weight".
using LinearFactory = std::function<std::unique_ptr<LinearKernel>(
    const LinearSpec& spec, const WeightStore& store, const ModelOptions& options)>;

class Linear {
 public:
  Linear() = default;
  explicit Linear(std::shared_ptr<LinearKernel> kernel) : kernel_(std::move(kernel)) {}
  at::Tensor operator()(const at::Tensor& x) const { return kernel_->forward(x); }
  // x's first prompt_rows rows are prompt tokens (LinearKernel::forward_prompt).
  at::Tensor operator()(const at::Tensor& x, int64_t prompt_rows) const {
    return prompt_rows > 0 ? kernel_->forward_prompt(x, prompt_rows) : kernel_->forward(x);
  }
  const LinearKernel& kernel() const { return *kernel_; }
  const std::shared_ptr<LinearKernel>& kernel_ptr() const { return kernel_; }
  void set_kernel(std::shared_ptr<LinearKernel> k) { kernel_ = std::move(k); }
  bool bound() const { return kernel_ != nullptr; }

 private:
  // Shared: a tied LM head and the embedding use one kernel.
  std::shared_ptr<LinearKernel> kernel_;
};

// Every projection of `group` applied to x, in order: one forward_group when
// their kernels share a group key and input width, else one by one. The
// first prompt_rows rows of x are prompt tokens (LinearKernel::forward_prompt).
std::vector<at::Tensor> forward_all(const at::Tensor& x, const std::vector<const Linear*>& group,
                                    int64_t prompt_rows = 0);

}  // namespace udaci
