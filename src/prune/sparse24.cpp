#include "prune/sparse24.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"

namespace udaci {

namespace {

std::string shape_str(const at::Tensor& t) {
  std::string out = "[";
  for (int64_t i = 0; i < t.dim(); ++i) out += (i ? ", " : "") + std::to_string(t.size(i));
  return out + "]";
}

int64_t meta_bytes_per_row(int64_t in_features) { return (in_features / 4 + 1) / 2; }

void sparse24_rows_scalar(const float* x, int64_t n, int64_t in, const float* values,
                          const uint8_t* meta, int64_t meta_stride, int64_t row_begin,
                          int64_t row_end, float* y, int64_t out) {
  const int64_t groups = in / 4;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* v = values + r * (in / 2);
    const uint8_t* m = meta + r * meta_stride;
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * in;
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        const int nib = (m[g >> 1] >> ((g & 1) * 4)) & 15;
        acc += v[2 * g] * xt[4 * g + (nib & 3)] + v[2 * g + 1] * xt[4 * g + (nib >> 2)];
      }
      y[t * out + r] = acc;
    }
  }
}

class Sparse24Kernel final : public LinearKernel {
 public:
  Sparse24Kernel(at::Tensor values, at::Tensor meta, int64_t in, at::Tensor bias)
      : values_(std::move(values)), meta_(std::move(meta)), bias_(std::move(bias)), in_(in) {}
  const char* name() const override { return "sparse-2:4"; }
  at::Tensor forward(const at::Tensor& x) const override {
    at::Tensor y = sparse24_linear(x.to(at::kFloat), values_, meta_, in_);
    if (bias_.defined()) y.add_(bias_);
    return y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type());
  }
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return values_.size(0); }
  int64_t weight_bytes() const override {
    int64_t n = values_.numel() * values_.element_size() + meta_.numel() * meta_.element_size();
    if (bias_.defined()) n += bias_.numel() * bias_.element_size();
    return n;
  }

 private:
  at::Tensor values_;  // [out, in / 2] float32
  at::Tensor meta_;    // [out, ceil(in / 8)] uint8
  at::Tensor bias_;    // [out] float32 or undefined
  int64_t in_;
};

}  // namespace

void check_packed_2of4(const at::Tensor& values, const at::Tensor& meta, int64_t out_features,
                       int64_t in_features, const std::string& what) {
  UDACI_CHECK_S(Status::kBadModelFile, in_features > 0 && in_features % 4 == 0,
                "{}: 2:4 sparse weights need in_features divisible by 4, got {}", what, in_features);
  UDACI_CHECK_S(Status::kBadModelFile,
                values.dim() == 2 && values.size(0) == out_features &&
                    values.size(1) == in_features / 2 && values.scalar_type() == at::kFloat,
                "{}: 2:4 values must be float32 [{}, {}], got {} {}", what, out_features,
                in_features / 2, c10::toString(values.scalar_type()), shape_str(values));
  UDACI_CHECK_S(Status::kBadModelFile,
                meta.dim() == 2 && meta.size(0) == out_features &&
                    meta.size(1) == meta_bytes_per_row(in_features) &&
                    meta.scalar_type() == at::kByte,
                "{}: 2:4 metadata must be uint8 [{}, {}], got {} {}", what, out_features,
                meta_bytes_per_row(in_features), c10::toString(meta.scalar_type()), shape_str(meta));
}

Packed24 pack_2of4(const at::Tensor& weight) {
  UDACI_CHECK(weight.dim() == 2, "2:4 packing needs a 2-D weight, got {} dimensions", weight.dim());
  const int64_t out = weight.size(0), in = weight.size(1);
  UDACI_CHECK(in > 0 && in % 4 == 0,
              "2:4 sparsity needs the input size to be a multiple of 4, got {}", in);
  at::Tensor w = weight.to(at::kFloat).contiguous();
  const int64_t mb = meta_bytes_per_row(in);
  Packed24 p{at::empty({out, in / 2}, at::kFloat), at::zeros({out, mb}, at::kByte)};
  const float* src = w.data_ptr<float>();
  float* val = p.values.data_ptr<float>();
  uint8_t* meta = p.meta.data_ptr<uint8_t>();
  at::parallel_for(0, out, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t g = 0; g < in / 4; ++g) {
        const float* a = src + r * in + 4 * g;
        // Drop the two smallest magnitudes; among equals the higher index
        // goes first, so the lower one stays.
        int keep[4] = {0, 1, 2, 3};
        std::stable_sort(keep, keep + 4,
                         [&](int i, int j) { return std::abs(a[i]) > std::abs(a[j]); });
        const int i0 = std::min(keep[0], keep[1]), i1 = std::max(keep[0], keep[1]);
        val[r * (in / 2) + 2 * g] = a[i0];
        val[r * (in / 2) + 2 * g + 1] = a[i1];
        meta[r * mb + g / 2] |= static_cast<uint8_t>((i0 | (i1 << 2)) << ((g & 1) * 4));
      }
    }
  });
  return p;
}

at::Tensor unpack_2of4(const at::Tensor& values, const at::Tensor& meta, int64_t in) {
  const int64_t out = values.dim() == 2 ? values.size(0) : 0;
  check_packed_2of4(values, meta, out, in, "unpack_2of4");
  at::Tensor v = values.contiguous(), m = meta.contiguous();
  at::Tensor w = at::zeros({out, in}, at::kFloat);
  const float* val = v.data_ptr<float>();
  const uint8_t* mp = m.data_ptr<uint8_t>();
  float* dst = w.data_ptr<float>();
  const int64_t mb = m.size(1);
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t g = 0; g < in / 4; ++g) {
      const int nib = (mp[r * mb + g / 2] >> ((g & 1) * 4)) & 15;
      const int i0 = nib & 3, i1 = nib >> 2;
      UDACI_CHECK_S(Status::kBadModelFile, i0 < i1,
                    "2:4 metadata of row {}, group {} is {:#x}: the two kept positions must "
                    "differ and be in increasing order",
                    r, g, nib);
      dst[r * in + 4 * g + i0] = val[r * (in / 2) + 2 * g];
      dst[r * in + 4 * g + i1] = val[r * (in / 2) + 2 * g + 1];
    }
  }
  return w;
}

bool sparse24_avx2_available() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

at::Tensor sparse24_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                           int64_t in, Sparse24Path path) {
  const int64_t out = values.dim() == 2 ? values.size(0) : 0;
  check_packed_2of4(values, meta, out, in, "sparse24_linear");
  UDACI_CHECK(x.dim() == 2 && x.size(1) == in && x.scalar_type() == at::kFloat,
              "sparse24_linear: x must be float32 [n, {}], got {} {}", in,
              c10::toString(x.scalar_type()), shape_str(x));
  UDACI_CHECK(x.device().is_cpu() && values.device().is_cpu(),
              "sparse24_linear runs on the CPU only");
  bool avx2 = false;
  if (path == Sparse24Path::kAvx2) {
    UDACI_CHECK_S(Status::kUnsupported, sparse24_avx2_available(),
                  "sparse24_linear: this CPU lacks AVX2/FMA");
    avx2 = true;
  } else if (path == Sparse24Path::kAuto) {
    avx2 = sparse24_avx2_available();
  }
  at::Tensor xc = x.contiguous(), v = values.contiguous(), m = meta.contiguous();
  const int64_t n = xc.size(0);
  at::Tensor y = at::empty({n, out}, at::kFloat);
  if (n == 0 || out == 0) return y;
  const float* xp = xc.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const uint8_t* mp = m.data_ptr<uint8_t>();
  float* yp = y.data_ptr<float>();
  const int64_t ms = m.size(1);
  // About 16 K multiply-adds per task, so small layers stay on one thread.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, n * in / 2));
  at::parallel_for(0, out, grain, [&](int64_t begin, int64_t end) {
    if (avx2)
      detail::sparse24_rows_avx2(xp, n, in, vp, mp, ms, begin, end, yp, out);
    else
      sparse24_rows_scalar(xp, n, in, vp, mp, ms, begin, end, yp, out);
  });
  return y;
}

std::unique_ptr<LinearKernel> make_sparse24_kernel(at::Tensor values, at::Tensor meta, int64_t in,
                                                   at::Tensor bias) {
  check_packed_2of4(values, meta, values.dim() == 2 ? values.size(0) : 0, in, "2:4 kernel");
  if (bias.defined()) bias = bias.to(at::kFloat).contiguous();
  return std::make_unique<Sparse24Kernel>(values.contiguous(), meta.contiguous(), in,
                                          std::move(bias));
}

}  // namespace udaci
