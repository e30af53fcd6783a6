// Every projection of the model is a Linear, which delegates to the
// LinearKernel bound at prepare time. Dense ATen is the only kernel so far;
// quantised and sparse kernels (issue #7) plug in here without the layers
// knowing.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>

namespace udaci {

class LinearKernel {
 public:
  virtual ~LinearKernel() = default;
  virtual const char* name() const = 0;
  // x: [n, in_features] -> [n, out_features]
  virtual at::Tensor forward(const at::Tensor& x) const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  virtual int64_t weight_bytes() const = 0;
};

// y = x W^T (+ b) with ATen (BLAS underneath). weight: [out, in].
std::unique_ptr<LinearKernel> make_dense_kernel(at::Tensor weight, at::Tensor bias = {});

class Linear {
 public:
  Linear() = default;
  explicit Linear(std::unique_ptr<LinearKernel> kernel) : kernel_(std::move(kernel)) {}
  at::Tensor operator()(const at::Tensor& x) const { return kernel_->forward(x); }
  const LinearKernel& kernel() const { return *kernel_; }
  void set_kernel(std::unique_ptr<LinearKernel> k) { kernel_ = std::move(k); }
  bool bound() const { return kernel_ != nullptr; }

 private:
  std::unique_ptr<LinearKernel> kernel_;
};

}  // namespace udaci
