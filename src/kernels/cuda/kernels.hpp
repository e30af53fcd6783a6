// CUDA kernels of our own (issue #10), as plain launch functions: raw device
// pointers, shapes and a stream in, a cudaError_t out. No LibTorch here or in
// the .cu files behind it, so they compile with nvcc wherever the CUDA toolkit
// is, also where LibTorch has no CUDA (the `udaci_cuda_check` target). The
// ATen-facing wrappers, with their dtype/device/shape checks, are in
// kernels/cuda/cuda_ops.hpp.
//
// Conventions for every function below:
//   - pointers are device memory; "row-contiguous" means rows of `cols`
//     elements one after the other, and every pointer to activations, K/V or
//     weights is 16-byte aligned (ATen's allocator aligns to far more; the
//     wrappers copy a view that is not);
//   - `dtype` is the element type of the activations, norms and K/V; every
//     sum is accumulated in fp32;
//   - the launch is asynchronous on `stream`; the return value is the launch's
//     error (cudaGetLastError), cudaErrorInvalidValue for arguments outside
//     what the kernel supports (stated per function).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace udaci::cuda {

enum class DType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

// ---------------------------------------------------------------------------
// Weight-only quantised GEMV / small GEMM, in the stored formats of
// quant/quant_formats.hpp (HF row order; GGUF row permutations are undone
// when the weight is uploaded).
enum class QFormat : int {
  kI8Row = 0,      // I8 [rows, cols], F32 row_scale[rows]: w = s * q
  kI4Affine = 1,   // U8 [rows, cols/2] ggml Q4 order, F16 scales/mins [rows, cols/group]: w = q*s + m
  kNF4 = 2,        // U8 as above, F16 absmax [rows, cols/group]: w = a * kNF4Levels[q]
};

struct QWeight {
  QFormat format = QFormat::kI8Row;
  int64_t rows = 0;  // out_features
  int64_t cols = 0;  // in_features; 4-bit formats: a multiple of 32 and of group
  const void* data = nullptr;         // I8 [rows, cols] or U8 [rows, cols / 2]
  const float* row_scale = nullptr;   // kI8Row: [rows]
  const uint16_t* scales = nullptr;   // 4-bit: f16 bits [rows, cols / group]
  const uint16_t* mins = nullptr;     // kI4Affine: f16 bits [rows, cols / group]
  int64_t group = 32;                 // 4-bit: 32, 64 or 128
};

// The most activation rows one qgemv call takes. Decode batches are this
// small; larger ones (prefill) dequantise with qdequantize and use cuBLAS.
inline constexpr int64_t kMaxGemvRows = 8;

// y[j, r] = sum_c x[j, c] * W[r, c] for j < n, r < w.rows.
// x: [n, w.cols] with row stride ldx; y: [n, w.rows] with row stride ldy,
// both in dtype. 1 <= n <= kMaxGemvRows. One warp per output row, 16-byte
// weight loads, warp-shuffle reduction.
cudaError_t qgemv(const QWeight& w, const void* x, int64_t n, int64_t ldx, void* y, int64_t ldy,
                  DType dtype, cudaStream_t stream);

// The same for a dense weight W [rows, cols] (row-contiguous) in dtype:
// y[j, r] = sum_c x[j, c] * W[r, c], fp32 accumulation. Needs W and x
// 16-byte aligned, cols * sizeof(dtype) and ldx * sizeof(dtype) multiples of
// 16 (cudaErrorInvalidValue otherwise: callers fall back to cuBLAS). One warp
// per output row with several 16-byte loads in flight per lane.
cudaError_t dense_gemv(const void* w, const void* x, int64_t n, int64_t ldx, void* y, int64_t ldy,
                       int64_t rows, int64_t cols, DType dtype, cudaStream_t stream);

// Up to kMaxGemvGroup dense products of one input x [n, cols] in one launch
// (a layer's q, k, v): part m writes y_m[j, r] = residual_m[j, r] (when
// given; it may be y_m itself) + sum_c x[j, c] * W_m[r, c], rounded once.
// Requirements as dense_gemv.
inline constexpr int kMaxGemvGroup = 3;
struct DenseGemvGroup {
  struct Part {
    const void* w = nullptr;         // [rows, cols]
    void* y = nullptr;               // [n, rows] with row stride ldy
    const void* residual = nullptr;  // like y, or nullptr
    int64_t rows = 0;
    int64_t ldy = 0;
  };
  Part parts[kMaxGemvGroup];
  int count = 0;
};
cudaError_t dense_gemv_group(const DenseGemvGroup& group, const void* x, int64_t n, int64_t ldx, int64_t cols,
                             DType dtype, cudaStream_t stream);

// SwiGLU's first half in one kernel: y[j, r] = silu(g) * u with g = x[j] .
// W_gate[r] and u = x[j] . W_up[r] in fp32, rounded once. Requirements as
// dense_gemv.
cudaError_t dense_swiglu(const void* w_gate, const void* w_up, const void* x, int64_t n, int64_t ldx, void* y,
                         int64_t ldy, int64_t rows, int64_t cols, DType dtype, cudaStream_t stream);

// out[i, :] = W[row_ids ? row_ids[i] : i, :] in dtype, for i < n_rows; out is
// [n_rows, w.cols] row-contiguous. Serves prefill (the whole weight, then a
// cuBLAS GEMM) and a quantised token embedding (the looked-up rows). Row ids
// outside [0, w.rows) give rows of zeros (callers check ids on the host).
cudaError_t qdequantize(const QWeight& w, const int64_t* row_ids, int64_t n_rows, void* out,
                        DType dtype, cudaStream_t stream);

// The NF4 code book the kernels use (a copy of quant/qmatrix.cpp's
// kNF4Levels, which tests compare it with).
void nf4_levels(float out[16]);

// ---------------------------------------------------------------------------
// Fused RMSNorm, as LlamaModel::rms_norm (HF LlamaRMSNorm):
//   y = w * cast(x * rsqrt(mean(x^2) + eps))
// with the sum of squares in fp32 and, for 16-bit dtypes, the normalised
// value rounded to dtype before the multiply by w, as HF does.
// x, y: [rows, cols] row-contiguous; weight: [cols]; all in dtype. y may be x.
cudaError_t rms_norm(const void* x, const void* weight, void* y, int64_t rows, int64_t cols,
                     float eps, DType dtype, cudaStream_t stream);

// ---------------------------------------------------------------------------
// Where the K/V rows of one layer live. A row holds one token's K (or V) of
// every KV head: [n_kv_heads, head_dim] in dtype, rows one after the other.
//   paged (block_tables != nullptr), the layout of cache/paged_cache.hpp
//     within one pool chunk: token `pos` of sequence slot `s` is row
//     block_tables[s * max_blocks_per_seq + pos / block_size] * block_size
//     + pos % block_size;
//   contiguous (block_tables == nullptr): row s * seq_capacity + pos, e.g. a
//     [slots, capacity, kv_heads, head_dim] buffer, or one sequence's
//     [length, kv_heads, head_dim] K/V with seq_capacity = length.
struct KvCacheView {
  void* k = nullptr;  // K rows of the layer
  void* v = nullptr;  // V rows of the layer
  const int32_t* block_tables = nullptr;  // [slots, max_blocks_per_seq] or nullptr
  int64_t max_blocks_per_seq = 0;
  int64_t block_size = 16;
  int64_t seq_capacity = 0;
};

// One decode step's rotary embedding and cache write, fused: token i belongs
// to sequence slot i and sits at position positions[i]. In HF's rotate-half
// layout (model/rope.cpp): with a = positions[i] * inv_freq[j] (fp32),
//   out[j]        = x[j] * cos(a) - x[j + d/2] * sin(a)
//   out[j + d/2]  = x[j + d/2] * cos(a) + x[j] * sin(a),   j < d/2,
// computed in fp32 and rounded once to dtype.
// q: [n_tokens, n_heads, head_dim], rotated in place; k, v: [n_tokens,
// n_kv_heads, head_dim], written (k rotated) to each token's cache row.
// positions: int64 [n_tokens]; inv_freq: fp32 [head_dim / 2] (Rope::inv_freq,
// after scaling). head_dim even.
cudaError_t rope_kv_write(void* q, const void* k, const void* v, int64_t n_tokens, int64_t n_heads,
                          int64_t n_kv_heads, int64_t head_dim, const int64_t* positions,
                          const float* inv_freq, const KvCacheView& cache, DType dtype,
                          cudaStream_t stream);

// Attention of one query token per sequence over its cached K/V (paged or
// contiguous), grouped-query: query head h reads KV head h / (n_heads /
// n_kv_heads). Scores scaled by `scale` (1/sqrt(head_dim) for Llama), softmax
// in fp32 by the running-max method (one pass over K/V), output in dtype.
// q, out: [n_seqs, n_heads, head_dim]; sequence s has seq_lens[s] tokens
// (int32, device), or uniform_len each when seq_lens is nullptr.
// head_dim 64 or 128; n_heads a multiple of n_kv_heads.
cudaError_t paged_attention_decode(const void* q, void* out, int64_t n_seqs, int64_t n_heads,
                                   int64_t n_kv_heads, int64_t head_dim, const int32_t* seq_lens,
                                   int32_t uniform_len, const KvCacheView& cache, float scale,
                                   DType dtype, cudaStream_t stream);

}  // namespace udaci::cuda
