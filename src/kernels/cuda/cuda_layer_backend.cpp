// udaci's CUDA kernels for a Llama layer (issue #10): RMSNorm in one kernel,
// and the paged-attention decode kernel for one decoding token (it reads the
// sequence's K/V as a contiguous cache of one slot). Everything else goes to
// the ATen backend. Compiled only with UDACI_WITH_CUDA; builds without CUDA
// take kernels/no_cuda_layer_backend.cpp.
#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_ops.hpp"
#include "model/layer_backend.hpp"

namespace udaci {

namespace {

class CudaLayerBackend final : public LayerBackend {
 public:
  CudaLayerBackend() : aten_(make_aten_layer_backend()) {}
  const char* name() const override { return "cuda"; }

  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) const override {
    if (x.is_cuda() && weight.scalar_type() == x.scalar_type()) return cuda::rms_norm(x, weight, eps);
    return aten_->rms_norm(x, weight, eps);
  }

  at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const override {
    return aten_->rope(x, cos, sin);
  }

  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       int64_t past) const override {
    const int64_t n = q.size(0), heads = q.size(1), d = q.size(2), total = k.size(0);
    auto aligned = [](const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; };
    if (!(n == 1 && q.is_cuda() && (d == 64 || d == 128) && k.is_contiguous() && v.is_contiguous() &&
          aligned(k) && aligned(v) && k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type()))
      return aten_->attention(q, k, v, past);
    cuda::KvCacheTensors kv;
    kv.k = k;
    kv.v = v;
    kv.seq_capacity = total > 0 ? total : 1;
    at::Tensor o = cuda::attention_decode(q.contiguous(), kv, at::Tensor(), total,
                                          1.0 / std::sqrt(static_cast<double>(d)));
    return o.view({1, heads * d});
  }

 private:
  std::unique_ptr<LayerBackend> aten_;
};

}  // namespace

std::unique_ptr<LayerBackend> make_cuda_layer_backend(at::ScalarType) {
  return std::make_unique<CudaLayerBackend>();
}

}  // namespace udaci
