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

std::vector<at::Tensor> LinearKernel::forward_group(const at::Tensor& x,
                                                   const std::vector<const LinearKernel*>& group) const {
  std::vector<at::Tensor> out;
  out.reserve(group.size());
  for (const LinearKernel* k : group) out.push_back(k->forward(x));
  return out;
}

std::vector<at::Tensor> forward_all(const at::Tensor& x, const std::vector<const Linear*>& group) {
  UDACI_CHECK(!group.empty(), "forward_all: empty group");
  std::vector<const LinearKernel*> kernels;
  kernels.reserve(group.size());
  const void* key = group.front()->kernel().group_key();
  bool shared = key != nullptr;
  for (const Linear* l : group) {
    kernels.push_back(&l->kernel());
    shared = shared && l->kernel().group_key() == key &&
             l->kernel().in_features() == group.front()->kernel().in_features();
  }
  if (shared) return kernels.front()->forward_group(x, kernels);
  std::vector<at::Tensor> out;
  out.reserve(group.size());
  for (const LinearKernel* k : kernels) out.push_back(k->forward(x));
  return out;
}

std::unique_ptr<LinearKernel> make_dense_kernel(at::Tensor weight, at::Tensor bias) {
  return std::make_unique<DenseKernel>(std::move(weight), std::move(bias));
}

}  // namespace udaci
