#include "model/linear.hpp"

#include "core/error.hpp"

namespace udaci {

namespace {

class DenseKernel final : public LinearKernel {
 public:
  DenseKernel(at::Tensor w, at::Tensor b) : weight_(std::move(w)), bias_(std::move(b)) {}
  const char* name() const override { return "dense"; }
  at::Tensor forward(const at::Tensor& x) const override {
    return bias_.defined() ? at::linear(x, weight_, bias_) : at::linear(x, weight_);
  }
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  at::Tensor gather_rows(const at::Tensor& ids, at::ScalarType dtype) const override {
    at::Tensor rows = at::embedding(weight_, ids);
    return rows.scalar_type() == dtype ? rows : rows.to(dtype);
  }
  int64_t weight_bytes() const override {
    int64_t n = weight_.numel() * weight_.element_size();
    if (bias_.defined()) n += bias_.numel() * bias_.element_size();
    return n;
  }

 private:
  at::Tensor weight_;  // [out, in]
  at::Tensor bias_;    // [out] or undefined
};

}  // namespace

at::Tensor LinearKernel::gather_rows(const at::Tensor&, at::ScalarType) const {
  fail(Status::kUnsupported, "the '{}' kernel cannot serve as a token embedding", name());
}

std::unique_ptr<LinearKernel> make_dense_kernel(at::Tensor weight, at::Tensor bias) {
  return std::make_unique<DenseKernel>(std::move(weight), std::move(bias));
}

}  // namespace udaci
