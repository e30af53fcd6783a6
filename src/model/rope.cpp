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

}  // namespace udaci
