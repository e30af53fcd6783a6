#include "model/rope.hpp"

#include <cmath>
#include <vector>

#include "core/error.hpp"

namespace udaci {

Rope::Rope(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    // Computed as HF does, in float32: 1 / theta^(2i / d).
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(c.head_dim);
    freq[static_cast<size_t>(i)] = 1.0f / std::pow(static_cast<float>(c.rope_theta), exponent);
  }
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == "linear") {
    for (float& f : freq) f = static_cast<float>(f / rs.factor);
  } else if (rs.type == "llama3") {
    // Llama 3.1 frequency scaling (Meta's reference model code): long
    // wavelengths are divided by `factor`, short ones kept, and the band
    // between the two thresholds interpolated.
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_wavelen = old_len / rs.low_freq_factor;
    const double high_wavelen = old_len / rs.high_freq_factor;
    for (float& f : freq) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        f = static_cast<float>(f / rs.factor);
      } else {
        const double smooth =
            (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = static_cast<float>((1.0 - smooth) * f / rs.factor + smooth * f);
      }
    }
  }
  if (!c.rope_freq_factors.empty()) {
    UDACI_CHECK_S(Status::kBadModelFile, static_cast<int64_t>(c.rope_freq_factors.size()) == half,
                  "rope frequency factors hold {} values, head_dim {} needs {}",
                  c.rope_freq_factors.size(), c.head_dim, half);
    for (int64_t i = 0; i < half; ++i) {
      const float f = c.rope_freq_factors[static_cast<size_t>(i)];
      UDACI_CHECK_S(Status::kBadModelFile, std::isfinite(f) && f > 0,
                    "rope frequency factor {} is {}, expected a positive number", i, f);
      freq[static_cast<size_t>(i)] /= f;
    }
  }
  inv_freq_ = at::tensor(freq, at::TensorOptions().dtype(at::kFloat));
}

std::pair<at::Tensor, at::Tensor> Rope::cos_sin(const at::Tensor& positions) const {
  at::Tensor inv = inv_freq_.to(positions.device());
  at::Tensor freqs = at::outer(positions.to(at::kFloat), inv);  // [n, head_dim / 2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);                 // [n, head_dim]
  return {emb.cos(), emb.sin()};
}

at::Tensor Rope::apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  if (x.is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 3 && cos.scalar_type() == at::kFloat &&
      sin.scalar_type() == at::kFloat && cos.is_contiguous() && sin.is_contiguous()) {
    // One pass instead of seven ATen ops, the same products and sums per
    // element: out = x * cos + rotate_half(x) * sin.
    const int64_t n = x.size(0), heads = x.size(1), d = x.size(2);
    at::Tensor xc = x.contiguous();
    at::Tensor out = at::empty({n, heads, d}, xc.options());
    const float* src = xc.data_ptr<float>();
    const float* cp = cos.data_ptr<float>();
    const float* sp = sin.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    for (int64_t t = 0; t < n; ++t) {
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
    return out;
  }
  at::Tensor c = cos.to(x.scalar_type()).unsqueeze(1);  // [n, 1, head_dim]
  at::Tensor s = sin.to(x.scalar_type()).unsqueeze(1);
  at::Tensor x1 = x.narrow(-1, 0, half);
  at::Tensor x2 = x.narrow(-1, half, half);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  return x * c + rotated * s;
}

}  // namespace udaci
