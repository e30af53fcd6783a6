// Portable kernels (the reference for the SIMD ones), run-time dispatch and
// exact dequantisation of a QMatrix.
#include "quant/qmatrix.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "io/gguf_quants.hpp"
#include "quant/nf4_levels.hpp"

namespace udaci {

// bitsandbytes' NF4 code book (create_normal_map with offset 0.9677083:
// 8 positive and 7 negative quantiles of N(0, 1) plus an exact zero,
// normalised by the largest), as in QLoRA, arXiv:2305.14314, appendix E.
// tests/unit/test_quant_formats.cpp recomputes them from that construction.
const float kNF4Levels[16] = UDACI_NF4_LEVELS;
const int8_t kNF4LevelsI8[16] = {-127, -88, -67, -50, -36, -23, -12, 0,
                                 10,   20,  31,  43,  56,  71,  92,  127};

const char* qformat_name(QFormat f) {
  switch (f) {
    case QFormat::kQ8_0: return "q8_0";
    case QFormat::kQ4_0: return "q4_0";
    case QFormat::kQ4_1: return "q4_1";
    case QFormat::kI8Row: return "int8";
    case QFormat::kI4Affine: return "int4";
    case QFormat::kNF4: return "nf4";
  }
  return "?";
}

namespace detail {

namespace {

inline float f16(const uint8_t* p) { return half_to_float(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// Block b of a row as integers q (signed, or 0..15 for the affine formats),
// scale d and min m; len < 32 only for the tail block of kI8Row.
inline void decode_block(const QMatrix& w, const uint8_t* row, int64_t r, int64_t b, int len,
                         int32_t* q, float& d, float& m) {
  m = 0.0f;
  switch (w.format) {
    case QFormat::kQ8_0: {
      const uint8_t* p = row + 34 * b;
      d = f16(p);
      for (int i = 0; i < 32; ++i) q[i] = static_cast<int8_t>(p[2 + i]);
      return;
    }
    case QFormat::kQ4_0: {
      const uint8_t* p = row + 18 * b;
      d = f16(p);
      for (int i = 0; i < 16; ++i) {
        q[i] = (p[2 + i] & 0x0f) - 8;
        q[i + 16] = (p[2 + i] >> 4) - 8;
      }
      return;
    }
    case QFormat::kQ4_1: {
      const uint8_t* p = row + 20 * b;
      d = f16(p);
      m = f16(p + 2);
      for (int i = 0; i < 16; ++i) {
        q[i] = p[4 + i] & 0x0f;
        q[i + 16] = p[4 + i] >> 4;
      }
      return;
    }
    case QFormat::kI8Row: {
      const int8_t* p = reinterpret_cast<const int8_t*>(row) + 32 * b;
      d = 1.0f;  // the row scale is applied once at the end
      for (int i = 0; i < 32; ++i) q[i] = i < len ? p[i] : 0;
      return;
    }
    case QFormat::kI4Affine:
    case QFormat::kNF4: {
      const uint8_t* p = row + 16 * b;
      const int64_t g = r * (w.cols / w.group) + (b * 32) / w.group;
      const bool nf4 = w.format == QFormat::kNF4;
      if (nf4) {
        d = half_to_float(w.scales[g]) / 127.0f;
      } else {
        d = half_to_float(w.scales[g]);
        m = half_to_float(w.mins[g]);
      }
      for (int i = 0; i < 16; ++i) {
        const int lo = p[i] & 0x0f, hi = p[i] >> 4;
        q[i] = nf4 ? kNF4LevelsI8[lo] : lo;
        q[i + 16] = nf4 ? kNF4LevelsI8[hi] : hi;
      }
      return;
    }
  }
}

}  // namespace

void qgemm_scalar(const QMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t r0, int64_t r1) {
  const int64_t nb = a.blocks;
  const int64_t xs = nb * 32;
  int32_t q[32];
  std::vector<float> acc(static_cast<size_t>(a.n));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.row_data(r);
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      float d = 1.0f, m = 0.0f;
      const int len = static_cast<int>(std::min<int64_t>(32, w.cols - 32 * b));
      decode_block(w, row, r, b, len, q, d, m);
      for (int64_t j = 0; j < a.n; ++j) {
        const int8_t* x = a.q.data() + j * xs + b * 32;
        int32_t dot = 0;
        for (int i = 0; i < 32; ++i) dot += q[i] * x[i];
        const size_t k = static_cast<size_t>(j * nb + b);
        acc[static_cast<size_t>(j)] += d * a.d[k] * static_cast<float>(dot) + m * a.s[k];
      }
    }
    const float rs = w.format == QFormat::kI8Row ? w.row_scale[r] : 1.0f;
    for (int64_t j = 0; j < a.n; ++j) y[j * ldy + r] = acc[static_cast<size_t>(j)] * rs;
  }
}

void quantize_acts_scalar(const float* x, int64_t n, int64_t cols, QActs& out) {
  const int64_t nb = out.blocks;
  for (int64_t j = 0; j < n; ++j) {
    const float* xr = x + j * cols;
    int8_t* qr = out.q.data() + j * nb * 32;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t c0 = b * 32;
      const int len = static_cast<int>(std::min<int64_t>(32, cols - c0));
      float amax = 0.0f;
      for (int i = 0; i < len; ++i) amax = std::max(amax, std::fabs(xr[c0 + i]));
      const float d = amax / 127.0f;
      const float inv = d > 0.0f ? 1.0f / d : 0.0f;
      int32_t sum = 0;
      for (int i = 0; i < 32; ++i) {
        // nearbyint: round half to even, as _mm256_cvtps_epi32 does, so the
        // scalar and SIMD paths produce the same integers.
        const int v = i < len ? static_cast<int>(std::nearbyint(xr[c0 + i] * inv)) : 0;
        qr[c0 + i] = static_cast<int8_t>(v);
        sum += v;
      }
      out.d[static_cast<size_t>(j * nb + b)] = d;
      out.s[static_cast<size_t>(j * nb + b)] = d * static_cast<float>(sum);
    }
  }
}

}  // namespace detail

void quantize_activations(const float* x, int64_t n, int64_t cols, QActs& out, KernelIsa isa) {
  out.n = n;
  out.cols = cols;
  out.blocks = (cols + 31) / 32;
  out.q.resize(static_cast<size_t>(n * out.blocks * 32));
  out.d.resize(static_cast<size_t>(n * out.blocks));
  out.s.resize(static_cast<size_t>(n * out.blocks));
  if (isa != KernelIsa::kScalar && cols % 32 == 0) {
    detail::quantize_acts_avx2(x, n, cols, out);
  } else {
    detail::quantize_acts_scalar(x, n, cols, out);
  }
}

void qmatrix_gemm(const QMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t r0, int64_t r1,
                  KernelIsa isa) {
  UDACI_CHECK(a.cols == w.cols, "quantised kernel: input has {} features, the weight {}", a.cols,
              w.cols);
  switch (isa) {
    case KernelIsa::kAvx512: detail::qgemm_avx512(w, a, y, ldy, r0, r1); return;
    case KernelIsa::kAvx2: detail::qgemm_avx2(w, a, y, ldy, r0, r1); return;
    case KernelIsa::kScalar: detail::qgemm_scalar(w, a, y, ldy, r0, r1); return;
  }
}

void qmatrix_dequantize_row(const QMatrix& w, int64_t r, float* dst) {
  const uint8_t* row = w.row_data(r);
  switch (w.format) {
    case QFormat::kQ8_0: dequantize_row(WeightType::kQ8_0, row, dst, w.cols); return;
    case QFormat::kQ4_0: dequantize_row(WeightType::kQ4_0, row, dst, w.cols); return;
    case QFormat::kQ4_1: dequantize_row(WeightType::kQ4_1, row, dst, w.cols); return;
    case QFormat::kI8Row: {
      const int8_t* p = reinterpret_cast<const int8_t*>(row);
      const float s = w.row_scale[r];
      for (int64_t i = 0; i < w.cols; ++i) dst[i] = static_cast<float>(p[i]) * s;
      return;
    }
    case QFormat::kI4Affine:
    case QFormat::kNF4: {
      const int64_t groups = w.cols / w.group;
      for (int64_t blk = 0; blk < w.cols / 32; ++blk) {
        const int64_t g = r * groups + (blk * 32) / w.group;
        const float s = half_to_float(w.scales[g]);
        const float m = w.format == QFormat::kNF4 ? 0.0f : half_to_float(w.mins[g]);
        const uint8_t* p = row + blk * 16;
        float* o = dst + blk * 32;
        for (int k = 0; k < 16; ++k) {
          const int lo = p[k] & 0x0f, hi = p[k] >> 4;
          if (w.format == QFormat::kNF4) {
            o[k] = s * kNF4Levels[lo];
            o[k + 16] = s * kNF4Levels[hi];
          } else {
            o[k] = static_cast<float>(lo) * s + m;
            o[k + 16] = static_cast<float>(hi) * s + m;
          }
        }
      }
      return;
    }
  }
}

}  // namespace udaci
