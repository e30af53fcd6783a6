#include "kernels/cuda/cuda_ops.hpp"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <string>
#include <fmt/ranges.h>  // fmt::join (fmt >= 11 keeps it here)

#include "core/error.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/kernels.hpp"

namespace udaci::cuda {

namespace {

DType kernel_dtype(at::ScalarType t, const char* what) {
  switch (t) {
    case at::kFloat: return DType::kF32;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    default:
      fail(Status::kUnsupported, "{}: dtype {} (the CUDA kernels take float32, float16 or bfloat16)",
           what, c10::toString(t));
  }
}

bool aligned16(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

// t on `device`, contiguous and 16-byte aligned (a copy when it is not).
at::Tensor ready(const at::Tensor& t, const at::Device& device, const char* what, const char* name) {
  UDACI_CHECK(t.defined(), "{}: {} is undefined", what, name);
  UDACI_CHECK(t.is_cuda() && t.device() == device, "{}: {} is on {}, expected {}", what, name,
              t.device().str(), device.str());
  at::Tensor c = t.contiguous();
  return aligned16(c) ? c : c.clone();
}

cudaStream_t stream_of(const at::Device& d) { return at::cuda::getCurrentCUDAStream(d.index()).stream(); }

QWeight raw(const DeviceQWeight& w) {
  QWeight q;
  q.rows = w.rows;
  q.cols = w.cols;
  q.group = w.group;
  q.data = w.data.data_ptr();
  switch (w.kind) {
    case DeviceQWeight::Kind::kInt8Row:
      q.format = QFormat::kI8Row;
      q.row_scale = w.row_scale.data_ptr<float>();
      break;
    case DeviceQWeight::Kind::kInt4Affine:
      q.format = QFormat::kI4Affine;
      q.scales = static_cast<const uint16_t*>(w.scales.data_ptr());
      q.mins = static_cast<const uint16_t*>(w.mins.data_ptr());
      break;
    case DeviceQWeight::Kind::kNF4:
      q.format = QFormat::kNF4;
      q.scales = static_cast<const uint16_t*>(w.scales.data_ptr());
      break;
  }
  return q;
}

void check_kv(const KvCacheTensors& c, const at::Tensor& x, const char* what) {
  UDACI_CHECK(c.k.defined() && c.v.defined() && c.k.dim() == 3 && c.v.sizes() == c.k.sizes(),
              "{}: cache K/V must be two tensors [rows, kv_heads, head_dim] of one shape", what);
  UDACI_CHECK(c.k.is_contiguous() && c.v.is_contiguous() && aligned16(c.k) && aligned16(c.v),
              "{}: cache K/V must be contiguous and 16-byte aligned (they are written in place)", what);
  UDACI_CHECK(c.k.device() == x.device() && c.v.device() == x.device(),
              "{}: cache K/V are on {}, the activations on {}", what, c.k.device().str(), x.device().str());
  UDACI_CHECK(c.k.scalar_type() == x.scalar_type() && c.v.scalar_type() == x.scalar_type(),
              "{}: cache dtype {} differs from the activations' {}", what, c10::toString(c.k.scalar_type()),
              c10::toString(x.scalar_type()));
  if (c.block_tables.defined()) {
    UDACI_CHECK(c.block_tables.scalar_type() == at::kInt && c.block_tables.dim() == 2 &&
                    c.block_tables.is_contiguous() && c.block_tables.device() == x.device(),
                "{}: block tables must be a contiguous int32 [slots, max_blocks] tensor on {}", what,
                x.device().str());
    UDACI_CHECK(c.block_size > 0 && c.k.size(0) % c.block_size == 0,
                "{}: {} cache rows are not whole blocks of {}", what, c.k.size(0), c.block_size);
  } else {
    UDACI_CHECK(c.seq_capacity > 0, "{}: a contiguous cache needs seq_capacity > 0", what);
  }
}

KvCacheView view(const KvCacheTensors& c) {
  KvCacheView v;
  v.k = c.k.data_ptr();
  v.v = c.v.data_ptr();
  if (c.block_tables.defined()) {
    v.block_tables = c.block_tables.data_ptr<int32_t>();
    v.max_blocks_per_seq = c.block_tables.size(1);
    v.block_size = c.block_size;
  }
  v.seq_capacity = c.seq_capacity;
  return v;
}

}  // namespace

EventTimeline::EventTimeline(at::Device device) : device_(device) {
  UDACI_CHECK(device.is_cuda(), "EventTimeline: device {} is not CUDA", device.str());
}

EventTimeline::~EventTimeline() {
  for (void* e : events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}

void EventTimeline::record() {
  const c10::cuda::CUDAGuard guard(device_);
  if (used_ == events_.size()) {
    cudaEvent_t e = nullptr;
    UDACI_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  UDACI_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(events_[used_]), stream_of(device_)));
  ++used_;
}

std::vector<double> EventTimeline::gaps_ms() const {
  std::vector<double> out;
  if (used_ < 2) return out;
  const c10::cuda::CUDAGuard guard(device_);
  UDACI_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(events_[used_ - 1])));
  for (size_t i = 1; i < used_; ++i) {
    float ms = 0.0f;
    UDACI_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(events_[i - 1]),
                                          static_cast<cudaEvent_t>(events_[i])));
    out.push_back(ms);
  }
  return out;
}

bool device_available() { return at::hasCUDA() && at::cuda::device_count() > 0; }

void check_qweight(const DeviceQWeight& w) {
  const bool four = w.kind != DeviceQWeight::Kind::kInt8Row;
  UDACI_CHECK(w.rows > 0 && w.cols > 0, "quantised CUDA weight: shape [{}, {}]", w.rows, w.cols);
  UDACI_CHECK(w.data.defined() && w.data.is_cuda() && w.data.is_contiguous() && aligned16(w.data),
              "quantised CUDA weight: data must be a contiguous, 16-byte aligned CUDA tensor");
  const at::Device dev = w.data.device();
  auto on_dev = [&](const at::Tensor& t, at::ScalarType a, at::ScalarType b, std::vector<int64_t> shape,
                    const char* name) {
    UDACI_CHECK(t.defined() && t.device() == dev && t.is_contiguous() &&
                    (t.scalar_type() == a || t.scalar_type() == b) && t.sizes() == at::IntArrayRef(shape),
                "quantised CUDA weight: {} must be a contiguous {} tensor [{}] on {}", name,
                c10::toString(a), fmt::join(shape, ", "), dev.str());
  };
  if (!four) {
    UDACI_CHECK(w.data.scalar_type() == at::kChar && w.data.sizes() == at::IntArrayRef({w.rows, w.cols}),
                "quantised CUDA weight: int8 data must be int8 [{}, {}]", w.rows, w.cols);
    on_dev(w.row_scale, at::kFloat, at::kFloat, {w.rows}, "row_scale");
    return;
  }
  UDACI_CHECK(w.group == 32 || w.group == 64 || w.group == 128, "quantised CUDA weight: group {}", w.group);
  UDACI_CHECK(w.cols % w.group == 0 && w.cols % 32 == 0,
              "quantised CUDA weight: {} inputs are not whole groups of {}", w.cols, w.group);
  UDACI_CHECK(w.data.scalar_type() == at::kByte && w.data.sizes() == at::IntArrayRef({w.rows, w.cols / 2}),
              "quantised CUDA weight: 4-bit data must be uint8 [{}, {}]", w.rows, w.cols / 2);
  on_dev(w.scales, at::kHalf, at::kShort, {w.rows, w.cols / w.group}, "scales");
  if (w.kind == DeviceQWeight::Kind::kInt4Affine)
    on_dev(w.mins, at::kHalf, at::kShort, {w.rows, w.cols / w.group}, "mins");
}

at::Tensor qdequantize(const DeviceQWeight& w, at::ScalarType dtype) {
  const at::Device dev = w.data.device();
  const c10::cuda::CUDAGuard guard(dev);
  at::Tensor out = at::empty({w.rows, w.cols}, w.data.options().dtype(dtype));
  UDACI_CUDA_CHECK(cuda::qdequantize(raw(w), nullptr, w.rows, out.data_ptr(),
                                     kernel_dtype(dtype, "qdequantize"), stream_of(dev)));
  return out;
}

at::Tensor qgather_rows(const DeviceQWeight& w, const at::Tensor& ids, at::ScalarType dtype) {
  const at::Device dev = w.data.device();
  const c10::cuda::CUDAGuard guard(dev);
  at::Tensor id = ready(ids.to(at::kLong), dev, "qgather_rows", "ids").view({-1});
  at::Tensor out = at::empty({id.numel(), w.cols}, w.data.options().dtype(dtype));
  UDACI_CUDA_CHECK(cuda::qdequantize(raw(w), id.data_ptr<int64_t>(), id.numel(), out.data_ptr(),
                                     kernel_dtype(dtype, "qgather_rows"), stream_of(dev)));
  return out;
}

at::Tensor qlinear(const DeviceQWeight& w, const at::Tensor& x) {
  const at::Device dev = w.data.device();
  UDACI_CHECK(x.dim() == 2 && x.size(1) == w.cols, "qlinear: input must be [n, {}], got {}", w.cols,
              fmt::join(x.sizes(), "x"));
  const c10::cuda::CUDAGuard guard(dev);
  const int64_t n = x.size(0);
  if (n == 0) return at::empty({0, w.rows}, x.options());
  if (n > kMaxGemvRows) return at::linear(x, qdequantize(w, x.scalar_type()));
  const DType dt = kernel_dtype(x.scalar_type(), "qlinear");
  at::Tensor xc = ready(x, dev, "qlinear", "x");
  at::Tensor y = at::empty({n, w.rows}, xc.options());
  UDACI_CUDA_CHECK(cuda::qgemv(raw(w), xc.data_ptr(), n, w.cols, y.data_ptr(), w.rows, dt, stream_of(dev)));
  return y;
}

namespace {

// Whether the dense GEMV kernels take x [..., cols] against weight [rows,
// cols]: one CUDA device, one dtype, at most kMaxGemvRows rows, whole 16-byte
// loads, an aligned contiguous weight.
bool gemv_applies(const at::Tensor& x, const at::Tensor& weight) {
  if (!x.defined() || !weight.defined() || !x.is_cuda() || weight.device() != x.device() ||
      weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1) ||
      weight.scalar_type() != x.scalar_type() || !weight.is_contiguous() || !aligned16(weight))
    return false;
  const at::ScalarType t = x.scalar_type();
  if (t != at::kFloat && t != at::kHalf && t != at::kBFloat16) return false;
  const int64_t cols = weight.size(1);
  const int64_t n = x.numel() / cols;
  return n >= 1 && n <= kMaxGemvRows && (cols * weight.element_size()) % 16 == 0;
}

// x as [n, cols], contiguous and aligned.
at::Tensor gemv_input(const at::Tensor& x) {
  const int64_t cols = x.size(-1);
  at::Tensor xc = x.reshape({x.numel() / cols, cols}).contiguous();
  return aligned16(xc) ? xc : xc.clone();
}

std::vector<int64_t> out_shape(const at::Tensor& x, int64_t rows) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = rows;
  return shape;
}

}  // namespace

std::vector<at::Tensor> dense_gemv_group(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                         const std::vector<at::Tensor>& residuals) {
  if (weights.empty() || weights.size() > static_cast<size_t>(kMaxGemvGroup) ||
      (!residuals.empty() && residuals.size() != weights.size()))
    return {};
  for (size_t m = 0; m < weights.size(); ++m) {
    if (!gemv_applies(x, weights[m])) return {};
    if (!residuals.empty() && residuals[m].defined() &&
        (residuals[m].device() != x.device() || residuals[m].scalar_type() != x.scalar_type() ||
         residuals[m].numel() != x.numel() / x.size(-1) * weights[m].size(0)))
      return {};
  }
  const at::Device dev = x.device();
  const c10::cuda::CUDAGuard guard(dev);
  const at::Tensor xc = gemv_input(x);
  const int64_t n = xc.size(0), cols = xc.size(1);
  DenseGemvGroup g;
  g.count = static_cast<int>(weights.size());
  std::vector<at::Tensor> out, res;
  for (size_t m = 0; m < weights.size(); ++m) {
    const int64_t rows = weights[m].size(0);
    out.push_back(at::empty({n, rows}, xc.options()));
    res.push_back(!residuals.empty() && residuals[m].defined() ? residuals[m].reshape({n, rows}).contiguous()
                                                               : at::Tensor());
    g.parts[m] = {weights[m].data_ptr(), out[m].data_ptr(), res[m].defined() ? res[m].data_ptr() : nullptr, rows,
                  rows};
  }
  UDACI_CUDA_CHECK(cuda::dense_gemv_group(g, xc.data_ptr(), n, cols, cols, kernel_dtype(x.scalar_type(), "dense_gemv"),
                                          stream_of(dev)));
  for (size_t m = 0; m < out.size(); ++m) out[m] = out[m].view(out_shape(x, weights[m].size(0)));
  return out;
}

at::Tensor dense_gemv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& residual) {
  std::vector<at::Tensor> y =
      dense_gemv_group(x, {weight}, residual.defined() ? std::vector<at::Tensor>{residual} : std::vector<at::Tensor>{});
  return y.empty() ? at::Tensor() : y[0];
}

at::Tensor dense_swiglu(const at::Tensor& x, const at::Tensor& w_gate, const at::Tensor& w_up) {
  if (!gemv_applies(x, w_gate) || !gemv_applies(x, w_up) || w_gate.sizes() != w_up.sizes()) return {};
  const at::Device dev = x.device();
  const c10::cuda::CUDAGuard guard(dev);
  const at::Tensor xc = gemv_input(x);
  const int64_t n = xc.size(0), cols = xc.size(1), rows = w_gate.size(0);
  at::Tensor y = at::empty({n, rows}, xc.options());
  UDACI_CUDA_CHECK(cuda::dense_swiglu(w_gate.data_ptr(), w_up.data_ptr(), xc.data_ptr(), n, cols, y.data_ptr(), rows,
                                      rows, cols, kernel_dtype(x.scalar_type(), "dense_swiglu"), stream_of(dev)));
  return y.view(out_shape(x, rows));
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  UDACI_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(-1),
              "rms_norm: weight [{}] does not match input {}", weight.numel(),
              fmt::join(x.sizes(), "x"));
  UDACI_CHECK(weight.scalar_type() == x.scalar_type(), "rms_norm: weight dtype {} differs from input {}",
              c10::toString(weight.scalar_type()), c10::toString(x.scalar_type()));
  const at::Device dev = x.device();
  const c10::cuda::CUDAGuard guard(dev);
  const DType dt = kernel_dtype(x.scalar_type(), "rms_norm");
  at::Tensor xc = ready(x, dev, "rms_norm", "x");
  at::Tensor wc = ready(weight, dev, "rms_norm", "weight");
  at::Tensor y = at::empty_like(xc);
  const int64_t cols = x.size(-1);
  UDACI_CUDA_CHECK(cuda::rms_norm(xc.data_ptr(), wc.data_ptr(), y.data_ptr(), xc.numel() / cols, cols,
                                  static_cast<float>(eps), dt, stream_of(dev)));
  return y;
}

void rope_kv_write(at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& positions,
                   const at::Tensor& inv_freq, const KvCacheTensors& cache) {
  const char* what = "rope_kv_write";
  UDACI_CHECK(q.dim() == 3 && k.dim() == 3 && v.sizes() == k.sizes() && q.size(0) == k.size(0) &&
                  q.size(2) == k.size(2),
              "{}: q must be [n, heads, d] and k, v [n, kv_heads, d], got {}, {}, {}", what,
              fmt::join(q.sizes(), "x"), fmt::join(k.sizes(), "x"), fmt::join(v.sizes(), "x"));
  UDACI_CHECK(q.is_contiguous() && aligned16(q), "{}: q is rotated in place and must be contiguous", what);
  UDACI_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "{}: q, k, v must share one dtype", what);
  check_kv(cache, q, what);
  const int64_t n = q.size(0), d = q.size(2);
  UDACI_CHECK(cache.k.size(1) == k.size(1) && cache.k.size(2) == d,
              "{}: cache rows are [{}, {}], k rows [{}, {}]", what, cache.k.size(1), cache.k.size(2),
              k.size(1), d);
  UDACI_CHECK(d % 2 == 0, "{}: head_dim {} is odd", what, d);
  const at::Device dev = q.device();
  const c10::cuda::CUDAGuard guard(dev);
  at::Tensor pos = ready(positions.to(at::kLong), dev, what, "positions");
  at::Tensor inv = ready(inv_freq.to(dev, at::kFloat), dev, what, "inv_freq");
  UDACI_CHECK(pos.numel() == n && inv.numel() == d / 2, "{}: {} positions for {} tokens, {} frequencies for "
              "head_dim {}", what, pos.numel(), n, inv.numel(), d);
  at::Tensor kc = ready(k, dev, what, "k");
  at::Tensor vc = ready(v, dev, what, "v");
  UDACI_CUDA_CHECK(cuda::rope_kv_write(q.data_ptr(), kc.data_ptr(), vc.data_ptr(), n, q.size(1), k.size(1),
                                       d, pos.data_ptr<int64_t>(), inv.data_ptr<float>(), view(cache),
                                       kernel_dtype(q.scalar_type(), what), stream_of(dev)));
}

at::Tensor attention_decode(const at::Tensor& q, const KvCacheTensors& cache, const at::Tensor& seq_lens,
                            int64_t uniform_len, double scale) {
  const char* what = "attention_decode";
  UDACI_CHECK(q.dim() == 3, "{}: q must be [n_seqs, heads, head_dim], got {}", what, fmt::join(q.sizes(), "x"));
  check_kv(cache, q, what);
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2), kvh = cache.k.size(1);
  UDACI_CHECK(cache.k.size(2) == d && heads % kvh == 0,
              "{}: {} query heads of {} cannot share {} KV heads of {}", what, heads, d, kvh, cache.k.size(2));
  UDACI_CHECK_S(Status::kUnsupported, d == 64 || d == 128, "{}: head_dim {} (the kernel has 64 and 128)",
                what, d);
  const at::Device dev = q.device();
  const c10::cuda::CUDAGuard guard(dev);
  at::Tensor qc = ready(q, dev, what, "q");
  at::Tensor lens;
  if (seq_lens.defined()) {
    lens = ready(seq_lens.to(at::kInt), dev, what, "seq_lens");
    UDACI_CHECK(lens.numel() == n, "{}: {} lengths for {} sequences", what, lens.numel(), n);
  } else {
    UDACI_CHECK(uniform_len >= 0 && uniform_len <= 0x7fffffff, "{}: length {}", what, uniform_len);
  }
  at::Tensor out = at::empty_like(qc);
  UDACI_CUDA_CHECK(cuda::paged_attention_decode(
      qc.data_ptr(), out.data_ptr(), n, heads, kvh, d, lens.defined() ? lens.data_ptr<int32_t>() : nullptr,
      static_cast<int32_t>(uniform_len), view(cache), static_cast<float>(scale),
      kernel_dtype(q.scalar_type(), what), stream_of(dev)));
  return out;
}

}  // namespace udaci::cuda
