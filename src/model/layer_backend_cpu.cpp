// fp32 layer operations on the CPU, each one pass over its data instead of
// the five to ten ATen ops of the reference (at decode time each op's dispatch
// costs more than its arithmetic). Inputs they do not cover (other dtypes,
// strided views) go to the ATen backend.
#include <algorithm>
#include <cmath>

#include "core/cpu_features.hpp"
#include "core/thread_pool.hpp"
#include "model/elementwise.hpp"
#include "model/layer_backend.hpp"

namespace udaci {

namespace {

// Prompt chunks up to this many tokens take the fused attention loop.
constexpr int64_t kFusedPrefillMaxTokens = 256;

// Elements per task of the elementwise steps: a decode step's stay on the
// caller, a prompt chunk's are split.
constexpr int64_t kElementwiseGrain = 16384;

bool f32(const at::Tensor& t) { return t.scalar_type() == at::kFloat; }

bool same_f32_rows(const at::Tensor& a, const at::Tensor& b) {
  return f32(a) && f32(b) && a.is_contiguous() && b.is_contiguous() && a.sizes() == b.sizes() && a.is_cpu();
}

class CpuLayerBackend final : public LayerBackend {
 public:
  explicit CpuLayerBackend(at::ScalarType dtype) : dtype_(dtype), aten_(make_aten_layer_backend()) {}
  const char* name() const override { return "cpu"; }

  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) const override {
    if (!(f32(x) && f32(weight) && x.dim() == 2 && x.is_contiguous() && weight.is_contiguous()))
      return aten_->rms_norm(x, weight, eps);
    // Sum of squares in double, then x * rsqrt(mean + eps) * w, as the
    // reference formula in fp32.
    at::Tensor out = at::empty_like(x);
    const int64_t rows = x.size(0), cols = x.size(1);
    const float* src = x.data_ptr<float>();
    const float* w = weight.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    const float e = static_cast<float>(eps);
    parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = src + r * cols;
        float* yr = dst + r * cols;
        double ss = 0.0;
        for (int64_t i = 0; i < cols; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(cols)) + e);
        for (int64_t i = 0; i < cols; ++i) yr[i] = w[i] * (xr[i] * inv);
      }
    });
    return out;
  }

  at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const override {
    if (!(f32(x) && x.dim() == 3 && f32(cos) && f32(sin) && cos.is_contiguous() && sin.is_contiguous()))
      return aten_->rope(x, cos, sin);
    // The same products and sums per element as the reference:
    // out = x * cos + rotate_half(x) * sin.
    const int64_t n = x.size(0), heads = x.size(1), d = x.size(2), half = d / 2;
    at::Tensor xc = x.contiguous();
    at::Tensor out = at::empty({n, heads, d}, xc.options());
    const float* src = xc.data_ptr<float>();
    const float* cp = cos.data_ptr<float>();
    const float* sp = sin.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, heads * d));
    parallel_for(0, n, grain, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const float* c = cp + t * d;
        const float* s = sp + t * d;
        for (int64_t h = 0; h < heads; ++h) {
          const float* xr = src + (t * heads + h) * d;
          float* yr = dst + (t * heads + h) * d;
          for (int64_t i = 0; i < half; ++i) {
            yr[i] = xr[i] * c[i] + (-xr[i + half]) * s[i];
            yr[i + half] = xr[i + half] * c[i + half] + xr[i] * s[i + half];
          }
        }
      }
    });
    return out;
  }

  at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) const override {
    if (!same_f32_rows(gate, up)) return aten_->swiglu(gate, up);
    at::Tensor out = at::empty_like(gate);
    const float* g = gate.data_ptr<float>();
    const float* u = up.data_ptr<float>();
    float* o = out.data_ptr<float>();
    const bool simd = active_kernel_isa() >= KernelIsa::kAvx2;
    // Chunks of whole vectors, so every value takes the same path.
    const int64_t n = gate.numel(), vecs = (n + 7) / 8;
    parallel_for(0, vecs, kElementwiseGrain / 8, [&](int64_t v0, int64_t v1) {
      const int64_t i0 = v0 * 8, i1 = std::min(n, v1 * 8);
      if (simd) {
        detail::swiglu_avx2(g + i0, u + i0, o + i0, i1 - i0);
      } else {
        detail::swiglu_scalar(g + i0, u + i0, o + i0, i1 - i0);
      }
    });
    return out;
  }

  at::Tensor add(const at::Tensor& x, const at::Tensor& y) const override {
    if (!same_f32_rows(x, y)) return aten_->add(x, y);
    at::Tensor out = at::empty_like(x);
    const float* a = x.data_ptr<float>();
    const float* b = y.data_ptr<float>();
    float* o = out.data_ptr<float>();
    parallel_for(0, x.numel(), kElementwiseGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) o[i] = a[i] + b[i];
    });
    return out;
  }

  at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       int64_t past) const override {
    const int64_t n = q.size(0), heads = q.size(1), d = q.size(2);
    if (!(f32(q) && f32(k) && f32(v) && k.is_contiguous() && v.is_contiguous() && fused(n)))
      return aten_->attention(q, k, v, past);
    // One decoding token, or a prompt chunk whose query i (at position
    // past + i) is one decoding token over keys 0 .. past + i: scores,
    // softmax and the weighted sum of V in one loop per (token, head). It
    // also keeps a headline's prefill off OpenBLAS, whose helper threads
    // would otherwise spin through the decode that follows.
    at::Tensor qc = q.contiguous();  // [n, heads, d]
    at::Tensor out = at::empty({n, heads * d}, q.options());
    const KvSpan span{k.data_ptr<float>(), v.data_ptr<float>(), k.size(0)};
    SeqAttention a;
    a.q = qc.data_ptr<float>();
    a.out = out.data_ptr<float>();
    a.n = n;
    a.past = past;
    a.spans = &span;
    a.n_spans = 1;
    attend_in_place({a}, AttentionShape{heads, k.size(1), d}, static_cast<float>(1.0 / std::sqrt(static_cast<double>(d))));
    return out;
  }

  bool attends_in_place(int64_t n_tokens) const override { return dtype_ == at::kFloat && fused(n_tokens); }

  void attend_in_place(const std::vector<SeqAttention>& seqs, const AttentionShape& shape,
                       float scale) const override {
    attend_cpu(seqs, shape, scale, active_kernel_isa() >= KernelIsa::kAvx2);
  }

 private:
  // The scalar body serves single tokens; longer chunks need the AVX2 one to
  // beat ATen's batched matmuls.
  static bool fused(int64_t n_tokens) {
    return n_tokens == 1 || (n_tokens <= kFusedPrefillMaxTokens && active_kernel_isa() >= KernelIsa::kAvx2);
  }

  at::ScalarType dtype_;
  std::unique_ptr<LayerBackend> aten_;
};

}  // namespace

std::unique_ptr<LayerBackend> make_cpu_layer_backend(at::ScalarType dtype) {
  return std::make_unique<CpuLayerBackend>(dtype);
}

}  // namespace udaci
