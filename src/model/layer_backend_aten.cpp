// The reference formulas of a Llama layer as ATen ops (any device, any dtype).
#include <cmath>

#include "model/layer_backend.hpp"

namespace udaci {

namespace {

class AtenLayerBackend final : public LayerBackend {
 public:
  const char* name() const override { return "aten"; }

  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) const override {
    // As HF LlamaRMSNorm: normalise in float32, cast back, then scale.
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
    at::Tensor normed = xf * at::rsqrt(var + eps);
    return weight * normed.to(x.scalar_type());
  }

  at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const override {
    const int64_t half = x.size(-1) / 2;
    at::Tensor c = cos.to(x.scalar_type()).unsqueeze(1);  // [n, 1, head_dim]
    at::Tensor s = sin.to(x.scalar_type()).unsqueeze(1);
    at::Tensor x1 = x.narrow(-1, 0, half);
    at::Tensor x2 = x.narrow(-1, half, half);
    at::Tensor rotated = at::cat({-x2, x1}, -1);
    return x * c + rotated * s;
  }

  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       int64_t past) const override {
    // Query heads are grouped by the KV head they share, so K/V are never
    // repeated in memory.
    const int64_t n = q.size(0), heads = q.size(1), d = q.size(2);
    const int64_t kvh = k.size(1);
    const int64_t group = heads / kvh;
    const int64_t total = k.size(0);
    at::Tensor qg = q.reshape({n, kvh, group, d}).permute({1, 2, 0, 3}).reshape({kvh, group * n, d});
    at::Tensor kt = k.permute({1, 2, 0});  // [kv_heads, d, total]
    at::Tensor vt = v.permute({1, 0, 2});  // [kv_heads, total, d]
    at::Tensor scores = at::bmm(qg, kt).mul_(1.0 / std::sqrt(static_cast<double>(d)));
    // [kv_heads, group * n, total]
    if (n > 1) {
      // Query i sits at position past + i and sees keys 0 .. past + i.
      at::Tensor mask = at::ones({n, total}, at::TensorOptions().dtype(at::kBool).device(q.device()))
                            .triu(past + 1);  // [n, total], true = hidden
      scores = scores.view({kvh, group, n, total}).masked_fill(mask, -INFINITY).view({kvh, group * n, total});
    }
    at::Tensor probs = at::softmax(scores.to(at::kFloat), -1).to(q.scalar_type());
    at::Tensor out = at::bmm(probs, vt);  // [kv_heads, group * n, d]
    return out.view({kvh, group, n, d}).permute({2, 0, 1, 3}).reshape({n, heads * d});
  }
};

}  // namespace

std::unique_ptr<LayerBackend> make_aten_layer_backend() { return std::make_unique<AtenLayerBackend>(); }

}  // namespace udaci
