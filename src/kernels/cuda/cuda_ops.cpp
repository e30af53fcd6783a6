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
