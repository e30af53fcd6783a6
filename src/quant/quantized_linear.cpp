#include "quant/quantized_linear.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>

#include "core/error.hpp"
#include "core/thread_pool.hpp"

namespace udaci {

namespace {

class QuantizedKernel final : public LinearKernel {
 public:
  explicit QuantizedKernel(QuantizedKernelParts p) : p_(std::move(p)) {
    p_.matrix.row_order = p_.row_order.empty() ? nullptr : p_.row_order.data();
  }
  const char* name() const override { return qformat_name(p_.matrix.format); }
  int64_t in_features() const override { return p_.matrix.cols; }
  int64_t out_features() const override { return p_.matrix.rows; }
  int64_t weight_bytes() const override { return p_.bytes; }

  at::Tensor forward(const at::Tensor& x) const override {
    const QMatrix& w = p_.matrix;
    UDACI_CHECK(x.dim() >= 1 && x.size(-1) == w.cols,
                "{} kernel: input has {} features, the weight {}", name(),
                x.dim() >= 1 ? x.size(-1) : 0, w.cols);
    UDACI_CHECK_S(Status::kUnsupported, x.device().is_cpu(), "{} kernel runs on the CPU only",
                  name());
    at::Tensor xf = x.reshape({-1, w.cols}).to(at::kFloat).contiguous();  // [n, in]
    const int64_t n = xf.size(0);
    at::Tensor y;
    if (n >= dequant_gemm_min_rows() && w.rows * w.cols * 4 <= kDequantGemmMaxBytes) {
      y = at::linear(xf, dequantized());
    } else {
      y = at::empty({n, w.rows}, xf.options());  // [n, out]
      const KernelIsa isa = active_kernel_isa();
      // One buffer per calling thread, reused across calls (decode runs the
      // same shapes 200 times a token).
      thread_local QActs t_acts;
      // The caller's buffer, by reference: inside the lambda the name of a
      // thread_local would mean each worker thread's own (empty) copy.
      QActs& acts = t_acts;
      quantize_activations(xf.data_ptr<float>(), n, w.cols, acts, isa);
      float* out = y.data_ptr<float>();
      // Rows per task: enough work (~8K weight blocks) to outweigh the cost of
      // waking a thread; small projections run on the caller alone.
      const int64_t blocks = std::max<int64_t>(1, acts.blocks * n);
      const int64_t grain = std::max<int64_t>(8, 8192 / blocks);
      parallel_for(0, w.rows, grain, [&](int64_t r0, int64_t r1) {
        qmatrix_gemm(w, acts, out, w.rows, r0, r1, isa);
      });
    }
    if (p_.bias.defined()) y.add_(p_.bias);
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = w.rows;
    y = y.view(shape);
    return x.scalar_type() == at::kFloat ? y : y.to(x.scalar_type());
  }

  at::Tensor gather_rows(const at::Tensor& ids, at::ScalarType dtype) const override {
    const QMatrix& w = p_.matrix;
    at::Tensor id = ids.to(at::kLong).contiguous();
    const int64_t n = id.numel();
    at::Tensor out = at::empty({n, w.cols}, at::TensorOptions().dtype(at::kFloat));
    const int64_t* ip = id.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      UDACI_CHECK(ip[i] >= 0 && ip[i] < w.rows, "token id {} is outside the embedding's {} rows",
                  ip[i], w.rows);
      qmatrix_dequantize_row(w, ip[i], out.data_ptr<float>() + i * w.cols);
    }
    return dtype == at::kFloat ? out : out.to(dtype);
  }

 private:
  // The whole weight in fp32 [out, in], for prefill-sized batches.
  at::Tensor dequantized() const {
    const QMatrix& w = p_.matrix;
    at::Tensor t = at::empty({w.rows, w.cols}, at::TensorOptions().dtype(at::kFloat));
    float* d = t.data_ptr<float>();
    at::parallel_for(0, w.rows, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) qmatrix_dequantize_row(w, r, d + r * w.cols);
    });
    return t;
  }

  QuantizedKernelParts p_;
};

}  // namespace

int64_t dequant_gemm_min_rows() {
  static const int64_t rows = [] {
    const char* env = std::getenv("UDACI_DEQUANT_GEMM_MIN_ROWS");
    if (env == nullptr || *env == '\0') return kDequantGemmMinRows;
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    return (end != nullptr && *end == '\0' && v > 0) ? static_cast<int64_t>(v) : kDequantGemmMinRows;
  }();
  return rows;
}

std::unique_ptr<LinearKernel> make_quantized_kernel(QuantizedKernelParts parts) {
  return std::make_unique<QuantizedKernel>(std::move(parts));
}

}  // namespace udaci
