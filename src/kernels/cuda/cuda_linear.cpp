// The quantised LinearKernel on a CUDA device (quant/quantized_linear.hpp):
// the same stored formats as the CPU kernel, uploaded once, run by the kernels
// of kernels/cuda through cuda_ops.
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "model/linear.hpp"
#include "quant/quantized_linear.hpp"

namespace udaci {

namespace {

class CudaQuantizedKernel final : public LinearKernel {
 public:
  CudaQuantizedKernel(cuda::DeviceQWeight w, at::Tensor bias, const char* name, int64_t bytes)
      : w_(std::move(w)), bias_(std::move(bias)), name_(name), bytes_(bytes) {}
  const char* name() const override { return name_; }
  int64_t in_features() const override { return w_.cols; }
  int64_t out_features() const override { return w_.rows; }
  int64_t weight_bytes() const override { return bytes_; }

  at::Tensor forward(const at::Tensor& x) const override {
    UDACI_CHECK(x.dim() >= 1 && x.size(-1) == w_.cols, "{} kernel: input has {} features, the weight {}",
                name_, x.dim() >= 1 ? x.size(-1) : 0, w_.cols);
    UDACI_CHECK_S(Status::kUnsupported, x.device() == w_.data.device(),
                  "{} kernel: input on {}, weight on {}", name_, x.device().str(), w_.data.device().str());
    at::Tensor y = cuda::qlinear(w_, x.reshape({-1, w_.cols}));  // [n, out] in x's dtype
    if (bias_.defined()) y.add_(bias_);
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = w_.rows;
    return y.view(shape);
  }

  at::Tensor gather_rows(const at::Tensor& ids, at::ScalarType dtype) const override {
    // Ids are checked on the host (the kernel writes zeros for a bad one).
    at::Tensor host = ids.to(at::kCPU, at::kLong).contiguous();
    const int64_t* p = host.data_ptr<int64_t>();
    for (int64_t i = 0; i < host.numel(); ++i)
      UDACI_CHECK(p[i] >= 0 && p[i] < w_.rows, "token id {} is outside the embedding's {} rows", p[i],
                  w_.rows);
    return cuda::qgather_rows(w_, ids.to(w_.data.device()), dtype);
  }

 private:
  cuda::DeviceQWeight w_;
  at::Tensor bias_;  // [out] fp32 on the device, or undefined
  const char* name_;
  int64_t bytes_;
};

// rows x row_bytes of `m` in HF row order, as a host tensor.
at::Tensor host_rows(const QMatrix& m, at::ScalarType dtype, int64_t row_elems) {
  at::Tensor t = at::empty({m.rows, row_elems}, at::TensorOptions().dtype(dtype));
  auto* dst = static_cast<uint8_t*>(t.data_ptr());
  for (int64_t r = 0; r < m.rows; ++r)
    std::memcpy(dst + r * m.row_bytes, m.row_data(r), static_cast<size_t>(m.row_bytes));
  return t;
}

// A copy on `device` of `n` elements of `dtype` at `p` (host memory that the
// kernel parts own).
at::Tensor upload(const void* p, std::vector<int64_t> shape, at::ScalarType dtype, at::Device device) {
  return at::from_blob(const_cast<void*>(p), shape, at::TensorOptions().dtype(dtype)).to(device);
}

}  // namespace

at::Tensor cuda_dense_gemv(const at::Tensor& x, const at::Tensor& weight) {
  static const bool enabled = [] {
    const char* e = std::getenv("UDACI_CUDA_DENSE_GEMV");
    return e == nullptr || std::string(e) != "0";
  }();
  return enabled ? cuda::dense_gemv(x, weight) : at::Tensor();
}

std::unique_ptr<LinearKernel> make_quantized_cuda_kernel(const QuantizedKernelParts& parts,
                                                         at::Device device) {
  UDACI_CHECK(device.is_cuda(), "make_quantized_cuda_kernel: device {} is not CUDA", device.str());
  QMatrix m = parts.matrix;
  m.row_order = parts.row_order.empty() ? nullptr : parts.row_order.data();
  cuda::DeviceQWeight w;
  w.rows = m.rows;
  w.cols = m.cols;
  w.group = m.group;
  switch (m.format) {
    case QFormat::kI8Row:
      w.kind = cuda::DeviceQWeight::Kind::kInt8Row;
      w.data = host_rows(m, at::kChar, m.cols).to(device);
      w.row_scale = upload(m.row_scale, {m.rows}, at::kFloat, device);
      break;
    case QFormat::kI4Affine:
    case QFormat::kNF4: {
      const bool nf4 = m.format == QFormat::kNF4;
      w.kind = nf4 ? cuda::DeviceQWeight::Kind::kNF4 : cuda::DeviceQWeight::Kind::kInt4Affine;
      w.data = host_rows(m, at::kByte, m.cols / 2).to(device);
      w.scales = upload(m.scales, {m.rows, m.cols / m.group}, at::kHalf, device);
      if (!nf4) w.mins = upload(m.mins, {m.rows, m.cols / m.group}, at::kHalf, device);
      break;
    }
    default:
      fail(Status::kUnsupported, "the {} format has no CUDA kernel (int8, int4 and nf4 do)",
           qformat_name(m.format));
  }
  cuda::check_qweight(w);
  at::Tensor bias = parts.bias.defined() ? parts.bias.to(device, at::kFloat) : at::Tensor();
  return std::make_unique<CudaQuantizedKernel>(std::move(w), std::move(bias), qformat_name(m.format),
                                               parts.bytes);
}

}  // namespace udaci
