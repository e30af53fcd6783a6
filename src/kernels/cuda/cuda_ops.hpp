// ATen-facing wrappers of the CUDA kernels (kernels/cuda/kernels.hpp): tensors
// in and out, every dtype / device / shape / contiguity requirement checked
// with UDACI_CHECK (Error(kInvalidArgument) or kUnsupported), a launch on the
// tensors' device and its current CUDA stream, a launch failure turned into
// Error(kCuda). Compiled only in a build with UDACI_WITH_CUDA (a CUDA
// LibTorch), and against Debian's ATen/cuda headers by the compile check
// `udaci_cuda_check` elsewhere. This header needs no CUDA include path.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace udaci::cuda {

// True when LibTorch sees at least one CUDA device.
bool device_available();

// CUDA events recorded one after another on the current stream of a device,
// for timing the parts of a step (the slot decoder's op timing). Not inside a
// graph capture.
class EventTimeline {
 public:
  explicit EventTimeline(at::Device device);
  ~EventTimeline();
  EventTimeline(const EventTimeline&) = delete;
  EventTimeline& operator=(const EventTimeline&) = delete;
  // Forgets the recorded events (they are reused).
  void clear() { used_ = 0; }
  // Records the next event on the device's current stream.
  void record();
  // Milliseconds between consecutive events (size() - 1 of them); waits for
  // the last one.
  std::vector<double> gaps_ms() const;
  size_t size() const { return used_; }

 private:
  at::Device device_;
  std::vector<void*> events_;  // cudaEvent_t
  size_t used_ = 0;
};

// A weight in one of the stored formats of quant/quant_formats.hpp, in
// device memory (HF row order).
struct DeviceQWeight {
  enum class Kind { kInt8Row, kInt4Affine, kNF4 };
  Kind kind = Kind::kInt8Row;
  int64_t rows = 0;   // out_features
  int64_t cols = 0;   // in_features
  int64_t group = 32;  // 4-bit formats
  at::Tensor data;       // int8 [rows, cols] or uint8 [rows, cols / 2]
  at::Tensor row_scale;  // int8: float [rows]
  at::Tensor scales;     // 4-bit: f16 (or its bits as int16) [rows, cols / group]
  at::Tensor mins;       // int4 affine: as scales
};

// Checks shapes, dtypes and that every tensor is contiguous on one CUDA
// device; Error(kInvalidArgument) naming the first mismatch.
void check_qweight(const DeviceQWeight& w);

// y = x W^T: x [n, cols] (fp32, fp16 or bf16) -> [n, rows] in x's dtype.
// n <= kMaxGemvRows (8) runs the GEMV kernel; larger batches dequantise W to
// x's dtype and run at::linear (cuBLAS).
at::Tensor qlinear(const DeviceQWeight& w, const at::Tensor& x);
// The whole weight, [rows, cols] in `dtype`.
at::Tensor qdequantize(const DeviceQWeight& w, at::ScalarType dtype);
// Rows `ids` (int64 [n], on the weight's device) -> [n, cols] in `dtype`.
at::Tensor qgather_rows(const DeviceQWeight& w, const at::Tensor& ids, at::ScalarType dtype);

// Dense projections of few rows (decode steps) by the kernels of
// dense_gemv.cu: x [..., cols] and weights [rows, cols] on one CUDA device in
// one dtype (fp32, fp16, bf16), at most kMaxGemvRows rows of x. Each returns
// an undefined tensor (an empty vector) where the kernels do not apply
// (other shapes, dtypes, devices, strides); callers then use ATen.
//   dense_gemv: residual (optional, [..., rows]) + x W^T, rounded once;
//   dense_gemv_group: up to three weights of one input in one launch (q, k,
//     v), each with an optional residual;
//   dense_swiglu: silu(x Wg^T) * (x Wu^T), rounded once.
at::Tensor dense_gemv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& residual = {});
std::vector<at::Tensor> dense_gemv_group(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                         const std::vector<at::Tensor>& residuals = {});
at::Tensor dense_swiglu(const at::Tensor& x, const at::Tensor& w_gate, const at::Tensor& w_up);

// LlamaModel::rms_norm on the GPU: x [..., cols], weight [cols], same dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// One layer's K/V rows: k, v [rows, n_kv_heads, head_dim] (a pool chunk's
// data[layer][0 / 1] of cache/paged_cache.hpp, or a contiguous buffer viewed
// so). Paged when block_tables (int32 [slots, max_blocks]) is defined: token
// p of slot s is row block_tables[s][p / block_size] * block_size +
// p % block_size; else row s * seq_capacity + p.
struct KvCacheTensors {
  at::Tensor k;
  at::Tensor v;
  at::Tensor block_tables;
  int64_t block_size = 16;
  int64_t seq_capacity = 0;
};

// One decode step, token i of sequence slot i: rotates q [n, heads, d] in
// place and writes rotated k and v ([n, kv_heads, d]) into their cache rows.
// positions: int64 [n]; inv_freq: float [d / 2] (Rope::inv_freq()); all on
// the cache's device.
void rope_kv_write(at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   const at::Tensor& positions, const at::Tensor& inv_freq,
                   const KvCacheTensors& cache);

// Decode attention: q [n_seqs, heads, d] -> [n_seqs, heads, d]; sequence s
// attends to its seq_lens[s] (int32 [n_seqs], device) cached tokens, or
// uniform_len each when seq_lens is undefined. scale: 1/sqrt(d) for Llama.
at::Tensor attention_decode(const at::Tensor& q, const KvCacheTensors& cache,
                            const at::Tensor& seq_lens, int64_t uniform_len, double scale);

}  // namespace udaci::cuda
