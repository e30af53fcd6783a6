#include "quant/quant_formats.hpp"

#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "quant/qmatrix.hpp"

namespace udaci {

uint16_t float_to_half_bits(float x) { return c10::Half(x).x; }

namespace {

float half_bits_to_float(uint16_t h) { return static_cast<float>(c10::Half(h, c10::Half::from_bits())); }

// Index of the NF4 level nearest to v (v in [-1, 1]): compare with the
// midpoints between neighbouring levels.
int nearest_nf4(float v) {
  int q = 0;
  for (int i = 1; i < 16; ++i) {
    if (v > 0.5f * (kNF4Levels[i - 1] + kNF4Levels[i])) q = i;
  }
  return q;
}

}  // namespace

void quantize_int8_rows(const float* w, int64_t rows, int64_t cols, int8_t* q, float* scale) {
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = w + r * cols;
      float amax = 0.0f;
      for (int64_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(x[i]));
      UDACI_CHECK(std::isfinite(amax), "int8 quantisation: row {} holds a non-finite weight", r);
      const float s = amax / 127.0f;
      const float inv = s > 0.0f ? 1.0f / s : 0.0f;
      for (int64_t i = 0; i < cols; ++i) {
        const float v = std::nearbyint(x[i] * inv);
        q[r * cols + i] = static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, v)));
      }
      scale[r] = s;
    }
  });
}

void quantize_int4_groups(const float* w, int64_t rows, int64_t cols, int64_t group, bool nf4,
                          uint8_t* packed, uint16_t* scales, uint16_t* mins) {
  UDACI_CHECK(group % 32 == 0 && cols % group == 0,
              "int4 quantisation: {} columns are not a multiple of the group {}", cols, group);
  const int64_t groups = cols / group;
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> q(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = w + r * cols;
      for (int64_t g = 0; g < groups; ++g) {
        const float* xg = x + g * group;
        float mn = xg[0], mx = xg[0], amax = 0.0f;
        for (int64_t i = 0; i < group; ++i) {
          mn = std::min(mn, xg[i]);
          mx = std::max(mx, xg[i]);
          amax = std::max(amax, std::fabs(xg[i]));
        }
        UDACI_CHECK(std::isfinite(amax) && amax < 65504.0f,
                    "int4 quantisation: row {} holds a weight that is not finite or exceeds the "
                    "f16 range of the scales",
                    r);
        const size_t gi = static_cast<size_t>(r * groups + g);
        uint8_t* qg = q.data() + g * group;
        if (nf4) {
          // The stored (f16) absmax is what dequantisation uses, so quantise
          // against it.
          scales[gi] = float_to_half_bits(amax);
          const float a = half_bits_to_float(scales[gi]);
          const float inv = a > 0.0f ? 1.0f / a : 0.0f;
          for (int64_t i = 0; i < group; ++i) qg[i] = static_cast<uint8_t>(nearest_nf4(xg[i] * inv));
        } else {
          scales[gi] = float_to_half_bits((mx - mn) / 15.0f);
          mins[gi] = float_to_half_bits(mn);
          const float s = half_bits_to_float(scales[gi]);
          const float m = half_bits_to_float(mins[gi]);
          const float inv = s > 0.0f ? 1.0f / s : 0.0f;
          for (int64_t i = 0; i < group; ++i) {
            const float v = std::nearbyint((xg[i] - m) * inv);
            qg[i] = static_cast<uint8_t>(std::max(0.0f, std::min(15.0f, v)));
          }
        }
      }
      uint8_t* out = packed + r * (cols / 2);
      for (int64_t b = 0; b < cols / 32; ++b) {
        for (int k = 0; k < 16; ++k) {
          out[b * 16 + k] = static_cast<uint8_t>(q[static_cast<size_t>(b * 32 + k)] |
                                                 (q[static_cast<size_t>(b * 32 + 16 + k)] << 4));
        }
      }
    }
  });
}

}  // namespace udaci
