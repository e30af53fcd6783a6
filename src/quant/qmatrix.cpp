// Activation quantisation (the portable reference and the dispatch) and exact
// dequantisation of a QMatrix.
#include "quant/qmatrix.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/thread_pool.hpp"
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
    case QFormat::kQ5_0: return "q5_0";
    case QFormat::kQ5_1: return "q5_1";
    case QFormat::kI8Row: return "int8";
    case QFormat::kI4Affine: return "int4";
    case QFormat::kNF4: return "nf4";
    case QFormat::kQ4_K: return "q4_K";
    case QFormat::kQ5_K: return "q5_K";
    case QFormat::kQ6_K: return "q6_K";
  }
  return "?";
}

namespace detail {

void quantize_acts_scalar(const float* x, int64_t r0, int64_t r1, int64_t cols, QActs& out) {
  const int64_t nb = out.blocks;
  for (int64_t j = r0; j < r1; ++j) {
    const float* xr = x + j * cols;
    int8_t* qr = out.q.data() + j * nb * 32;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t c0 = b * 32;
      const int len = static_cast<int>(std::min<int64_t>(32, cols - c0));
      float amax = 0.0f;
      for (int i = 0; i < len; ++i) amax = std::max(amax, std::fabs(xr[c0 + i]));
      const float d = amax / 127.0f;
      const float inv = d > 0.0f ? 1.0f / d : 0.0f;
      int32_t sum = 0, half = 0;
      for (int i = 0; i < 32; ++i) {
        // nearbyint: round half to even, as _mm256_cvtps_epi32 does, so the
        // scalar and SIMD paths produce the same integers.
        const int v = i < len ? static_cast<int>(std::nearbyint(xr[c0 + i] * inv)) : 0;
        qr[c0 + i] = static_cast<int8_t>(v);
        sum += v;
        if (i == 15) {
          out.s16[static_cast<size_t>(2 * (j * nb + b))] = sum;
          half = sum;
        }
      }
      out.s16[static_cast<size_t>(2 * (j * nb + b) + 1)] = sum - half;
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
  const int64_t rows = (n + kQActsRowGroup - 1) / kQActsRowGroup * kQActsRowGroup;
  out.q.resize(static_cast<size_t>(rows * out.blocks * 32));
  out.d.resize(static_cast<size_t>(rows * out.blocks));
  out.s.resize(static_cast<size_t>(rows * out.blocks));
  out.s16.resize(static_cast<size_t>(n * out.blocks * 2));
  // Rows are independent: a prompt chunk's are split over the pool (~16K
  // values a task), a decode step's stay on the caller.
  const bool simd = isa != KernelIsa::kScalar && cols % 32 == 0;
  parallel_for(0, n, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols)), [&](int64_t r0, int64_t r1) {
    if (simd) {
      detail::quantize_acts_avx2(x, r0, r1, cols, out);
    } else {
      detail::quantize_acts_scalar(x, r0, r1, cols, out);
    }
  });
  // The padding rows are zero (a reused buffer may hold an older call's rows).
  std::fill(out.q.begin() + n * out.blocks * 32, out.q.end(), int8_t{0});
  std::fill(out.d.begin() + n * out.blocks, out.d.end(), 0.0f);
  std::fill(out.s.begin() + n * out.blocks, out.s.end(), 0.0f);
}

void qmatrix_dequantize_row(const QMatrix& w, int64_t r, float* dst) {
  const uint8_t* row = w.row_data(r);
  switch (w.format) {
    case QFormat::kQ8_0: dequantize_row(WeightType::kQ8_0, row, dst, w.cols); return;
    case QFormat::kQ4_0: dequantize_row(WeightType::kQ4_0, row, dst, w.cols); return;
    case QFormat::kQ4_1: dequantize_row(WeightType::kQ4_1, row, dst, w.cols); return;
    case QFormat::kQ5_0: dequantize_row(WeightType::kQ5_0, row, dst, w.cols); return;
    case QFormat::kQ5_1: dequantize_row(WeightType::kQ5_1, row, dst, w.cols); return;
    case QFormat::kQ4_K: dequantize_row(WeightType::kQ4_K, row, dst, w.cols); return;
    case QFormat::kQ5_K: dequantize_row(WeightType::kQ5_K, row, dst, w.cols); return;
    case QFormat::kQ6_K: dequantize_row(WeightType::kQ6_K, row, dst, w.cols); return;
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
