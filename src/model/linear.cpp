#include "model/linear.hpp"

#include "core/error.hpp"
#include "model/dense_gemm.hpp"

namespace udaci {

namespace {

class DenseKernel final : public LinearKernel {
 public:
  DenseKernel(at::Tensor w, at::Tensor b) : weight_(std::move(w)), bias_(std::move(b)) {}
  const char* name() const override { return "dense"; }
  at::Tensor forward(const at::Tensor& x) const override {
    // On the CPU, udaci's own GEMM on its pool: fp32 decode steps and
    // headline prompts (longer inputs go to OpenBLAS's packed SGEMM, faster
    // there), and bf16/fp16 weights at every row count, read as stored and
    // accumulated in fp32 (ATen's CPU bf16 matmul decoded at half the fp32
    // speed; it has no fp16 one).
    const at::ScalarType t = weight_.scalar_type();
    const bool half = t == at::kBFloat16 || t == at::kHalf;
    // 16-bit weights serve activations of their own dtype or fp32 (a GGUF's
    // F16/BF16 tensors kept as stored under an fp32 model, gguf-native).
    const bool x_ok = x.scalar_type() == t || (half && x.scalar_type() == at::kFloat);
    if ((t == at::kFloat || half) && x_ok && x.device().is_cpu() && weight_.device().is_cpu() &&
        weight_.is_contiguous() && x.dim() >= 1 && x.size(-1) == weight_.size(1) &&
        (half || x.numel() / weight_.size(1) <= dense_gemm_max_rows())) {
      const int64_t in = weight_.size(1), out = weight_.size(0);
      const at::Tensor xc = x.reshape({-1, in}).to(at::kFloat).contiguous();
      at::Tensor y = at::empty({xc.size(0), out}, xc.options());
      if (half) {
        dense_gemm_half(reinterpret_cast<const uint16_t*>(weight_.data_ptr()), t == at::kBFloat16, out, in,
                        xc.data_ptr<float>(), xc.size(0), y.data_ptr<float>());
      } else {
        dense_gemm(weight_.data_ptr<float>(), out, in, xc.data_ptr<float>(), xc.size(0), y.data_ptr<float>());
      }
      if (bias_.defined()) y.add_(bias_.to(at::kFloat));
      std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
      shape.back() = out;
      return (y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type())).view(shape);
    }
    if (x.is_cuda() && !bias_.defined()) {
      at::Tensor y = cuda_dense_gemv(x, weight_);  // decode steps: udaci's GEMV kernel
      if (y.defined()) return y;
    }
    return bias_.defined() ? at::linear(x, weight_, bias_) : at::linear(x, weight_);
  }
  // A bf16 weight's prompt rows through AMX-BF16 tiles (dense_gemm_bf16_prompt),
  // the others as forward() runs them.
  at::Tensor forward_prompt(const at::Tensor& x, int64_t prompt_rows) const override {
    const int64_t in = weight_.size(1), out = weight_.size(0);
    if (weight_.scalar_type() != at::kBFloat16 || !weight_.device().is_cpu() || !x.device().is_cpu() ||
        !weight_.is_contiguous() || x.dim() < 1 || x.size(-1) != in || !dense_bf16_prompt_ok(in) ||
        (x.scalar_type() != at::kBFloat16 && x.scalar_type() != at::kFloat))
      return forward(x);
    const at::Tensor xc = x.reshape({-1, in}).to(at::kFloat).contiguous();
    const int64_t n = xc.size(0), p = std::min(prompt_rows, n);
    at::Tensor y = at::empty({n, out}, xc.options());
    const auto* w = reinterpret_cast<const uint16_t*>(weight_.data_ptr());
    dense_gemm_bf16_prompt(w, out, in, xc.data_ptr<float>(), p, y.data_ptr<float>());
    if (p < n) dense_gemm_half(w, true, out, in, xc.data_ptr<float>() + p * in, n - p, y.data_ptr<float>() + p * out);
    if (bias_.defined()) y.add_(bias_.to(at::kFloat));
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = out;
    return (y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type())).view(shape);
  }
  const at::Tensor* dense_weight() const override { return bias_.defined() ? nullptr : &weight_; }
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

at::Tensor LinearKernel::forward_prompt(const at::Tensor& x, int64_t) const { return forward(x); }

std::vector<at::Tensor> LinearKernel::forward_group_prompt(const at::Tensor& x,
                                                          const std::vector<const LinearKernel*>& group,
                                                          int64_t) const {
  return forward_group(x, group);
}

std::vector<at::Tensor> forward_all(const at::Tensor& x, const std::vector<const Linear*>& group,
                                    int64_t prompt_rows) {
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
  if (shared)
    return prompt_rows > 0 ? kernels.front()->forward_group_prompt(x, kernels, prompt_rows)
                           : kernels.front()->forward_group(x, kernels);
  std::vector<at::Tensor> out;
  out.reserve(group.size());
  for (const Linear* l : group) out.push_back((*l)(x, prompt_rows));
  return out;
}

std::unique_ptr<LinearKernel> make_dense_kernel(at::Tensor weight, at::Tensor bias) {
  return std::make_unique<DenseKernel>(std::move(weight), std::move(bias));
}

}  // namespace udaci
