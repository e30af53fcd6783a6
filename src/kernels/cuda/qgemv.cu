// Weight-only quantised GEMV / small GEMM and dequantisation (kernels.hpp).
//
// Decode is memory-bound: at batch 1 every weight byte is read once per token
// and used for n multiply-adds, so the kernel is laid out for bandwidth. One
// warp owns one output row; each lane reads 16 bytes of the row per step (one
// 32-weight block of a 4-bit format, 16 int8 weights), so a warp's step is one
// contiguous 512-byte read. The block is decoded to fp32 in registers, dotted
// with the n activation rows (small, served from L1/L2), and the lanes' partial
// sums meet in a warp-shuffle reduction. The 4-bit affine form is applied per
// block as s * dot(q, x) + m * sum(x), so the min costs one multiply per block.
#include "kernels/cuda/common.cuh"
#include "quant/nf4_levels.hpp"

namespace udaci::cuda {

namespace {

using detail::from_f;
using detail::half_bits_to_f;
using detail::load16;
using detail::to_f;
using detail::Vec16;
using detail::warp_sum;

constexpr int kWarpsPerBlock = 4;  // output rows per thread block
constexpr int kBlocksInFlight = 2;  // 4-bit kernel: 16-byte loads per lane before use

// bitsandbytes' NF4 code book (quant/nf4_levels.hpp), in constant memory and
// on the host.
__constant__ float kNF4[16] = UDACI_NF4_LEVELS;
const float kNF4Host[16] = UDACI_NF4_LEVELS;

// 4-bit formats. kMaxN: activation rows held in registers (n <= kMaxN).
template <typename T, int kMaxN, bool kNf4>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    qgemv_4bit_kernel(const uint8_t* __restrict__ w, const uint16_t* __restrict__ scales,
                      const uint16_t* __restrict__ mins, const T* __restrict__ x, int64_t ldx,
                      T* __restrict__ y, int64_t ldy, int64_t rows, int64_t cols, int64_t group,
                      int n) {
  // The code book in shared memory: lanes index it with different nibbles,
  // which constant memory would serialise.
  __shared__ float lut[16];
  if (kNf4 && threadIdx.x < 16) lut[threadIdx.x] = kNF4[threadIdx.x];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int64_t nblocks = cols / 32;
  const int64_t groups = cols / group;
  const uint4* wr = reinterpret_cast<const uint4*>(w + row * (cols / 2));
  float acc[kMaxN];
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) acc[j] = 0.0f;

  // Two 16-byte loads in flight per lane before either is used: a 2048-wide
  // row is only 64 blocks, two per lane, and one load at a time left the
  // memory system idle between them.
  for (int64_t b0 = lane; b0 < nblocks; b0 += 32 * kBlocksInFlight) {
    uint4 pks[kBlocksInFlight];
    detail::load_ahead<kBlocksInFlight>(wr, b0, nblocks, pks);
#pragma unroll
    for (int u = 0; u < kBlocksInFlight; ++u) {
      const int64_t b = b0 + 32 * u;
      if (b >= nblocks) break;
      const uint4 pk = pks[u];  // weights 32b .. 32b + 31
      const int64_t g = row * groups + (b * 32) / group;
      const float s = half_bits_to_f(scales[g]);
      const float m = kNf4 ? 0.0f : half_bits_to_f(mins[g]);
      // ggml's Q4 order: byte k holds weight k (low nibble) and k + 16 (high).
      float wq[32];
      const uint32_t words[4] = {pk.x, pk.y, pk.z, pk.w};
#pragma unroll
      for (int k = 0; k < 16; ++k) {
        const uint32_t byte = (words[k >> 2] >> (8 * (k & 3))) & 0xffu;
        const uint32_t lo = byte & 0x0fu, hi = byte >> 4;
        wq[k] = kNf4 ? lut[lo] : static_cast<float>(lo);
        wq[k + 16] = kNf4 ? lut[hi] : static_cast<float>(hi);
      }
#pragma unroll
      for (int j = 0; j < kMaxN; ++j) {
        if (j < n) {
          const T* xp = x + j * ldx + b * 32;
          float dot = 0.0f, sx = 0.0f;
#pragma unroll
          for (int c = 0; c < 32; c += Vec16<T>::kN) {
            float xv[Vec16<T>::kN];
            load16<T>(xp + c, xv);
#pragma unroll
            for (int i = 0; i < Vec16<T>::kN; ++i) {
              dot = fmaf(wq[c + i], xv[i], dot);
              if (!kNf4) sx += xv[i];
            }
          }
          acc[j] += kNf4 ? s * dot : fmaf(s, dot, m * sx);
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) {
    const float v = warp_sum(acc[j]);
    if (lane == 0 && j < n) y[j * ldy + row] = from_f<T>(v);
  }
}

// int8 per output channel. Rows whose length is a multiple of 16 (every model
// shape) take 16-byte loads; others a scalar loop.
template <typename T, int kMaxN>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    qgemv_i8_kernel(const int8_t* __restrict__ w, const float* __restrict__ row_scale,
                    const T* __restrict__ x, int64_t ldx, T* __restrict__ y, int64_t ldy,
                    int64_t rows, int64_t cols, int n, bool vec) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int8_t* wr = w + row * cols;
  float acc[kMaxN];
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) acc[j] = 0.0f;
  if (vec) {
    const uint4* wv = reinterpret_cast<const uint4*>(wr);
    for (int64_t c = lane; c < cols / 16; c += 32) {
      const uint4 pk = __ldg(wv + c);
      const int8_t* q = reinterpret_cast<const int8_t*>(&pk);
      float wq[16];
#pragma unroll
      for (int k = 0; k < 16; ++k) wq[k] = static_cast<float>(q[k]);
#pragma unroll
      for (int j = 0; j < kMaxN; ++j) {
        if (j < n) {
          const T* xp = x + j * ldx + c * 16;
          float dot = 0.0f;
#pragma unroll
          for (int e = 0; e < 16; e += Vec16<T>::kN) {
            float xv[Vec16<T>::kN];
            load16<T>(xp + e, xv);
#pragma unroll
            for (int i = 0; i < Vec16<T>::kN; ++i) dot = fmaf(wq[e + i], xv[i], dot);
          }
          acc[j] += dot;
        }
      }
    }
  } else {
    for (int64_t c = lane; c < cols; c += 32) {
      const float wq = static_cast<float>(wr[c]);
#pragma unroll
      for (int j = 0; j < kMaxN; ++j)
        if (j < n) acc[j] = fmaf(wq, to_f<T>(x[j * ldx + c]), acc[j]);
    }
  }
  const float s = row_scale[row];
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) {
    const float v = warp_sum(acc[j]);
    if (lane == 0 && j < n) y[j * ldy + row] = from_f<T>(v * s);
  }
}

// One thread per output element: out[i, c] = W[ids[i], c].
template <typename T>
__global__ void qdequantize_kernel(QWeight w, const int64_t* __restrict__ ids, int64_t n_rows,
                                   T* __restrict__ out) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * w.cols) return;
  const int64_t i = idx / w.cols, c = idx % w.cols;
  const int64_t r = ids ? ids[i] : i;
  if (r < 0 || r >= w.rows) {
    out[idx] = from_f<T>(0.0f);
    return;
  }
  float v;
  if (w.format == QFormat::kI8Row) {
    v = static_cast<float>(static_cast<const int8_t*>(w.data)[r * w.cols + c]) * w.row_scale[r];
  } else {
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * (w.cols / 2);
    const int64_t b = c / 32;
    const int k = static_cast<int>(c % 32);
    const uint8_t byte = row[b * 16 + (k & 15)];
    const uint32_t q = k < 16 ? (byte & 0x0fu) : (byte >> 4);
    const int64_t g = r * (w.cols / w.group) + c / w.group;
    const float s = half_bits_to_f(w.scales[g]);
    v = w.format == QFormat::kNF4 ? s * kNF4[q] : static_cast<float>(q) * s + half_bits_to_f(w.mins[g]);
  }
  out[idx] = from_f<T>(v);
}

template <typename T, int kMaxN>
void launch_qgemv(const QWeight& w, const void* x, int n, int64_t ldx, void* y, int64_t ldy,
                  cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(detail::ceil_div(w.rows, kWarpsPerBlock)));
  const dim3 block(kWarpsPerBlock * 32);
  const T* xp = static_cast<const T*>(x);
  T* yp = static_cast<T*>(y);
  switch (w.format) {
    case QFormat::kI8Row: {
      const bool vec = w.cols % 16 == 0 && (ldx * static_cast<int64_t>(sizeof(T))) % 16 == 0;
      qgemv_i8_kernel<T, kMaxN><<<grid, block, 0, stream>>>(
          static_cast<const int8_t*>(w.data), w.row_scale, xp, ldx, yp, ldy, w.rows, w.cols, n, vec);
      break;
    }
    case QFormat::kI4Affine:
      qgemv_4bit_kernel<T, kMaxN, false><<<grid, block, 0, stream>>>(
          static_cast<const uint8_t*>(w.data), w.scales, w.mins, xp, ldx, yp, ldy, w.rows, w.cols,
          w.group, n);
      break;
    case QFormat::kNF4:
      qgemv_4bit_kernel<T, kMaxN, true><<<grid, block, 0, stream>>>(
          static_cast<const uint8_t*>(w.data), w.scales, nullptr, xp, ldx, yp, ldy, w.rows, w.cols,
          w.group, n);
      break;
  }
}

bool valid(const QWeight& w) {
  if (w.rows <= 0 || w.cols <= 0 || w.data == nullptr) return false;
  if (w.format == QFormat::kI8Row) return w.row_scale != nullptr;
  if (w.format != QFormat::kI4Affine && w.format != QFormat::kNF4) return false;
  if (w.group != 32 && w.group != 64 && w.group != 128) return false;
  if (w.cols % w.group != 0 || w.scales == nullptr) return false;
  return w.format == QFormat::kNF4 || w.mins != nullptr;
}

}  // namespace

void nf4_levels(float out[16]) {
  for (int i = 0; i < 16; ++i) out[i] = kNF4Host[i];
}

cudaError_t qgemv(const QWeight& w, const void* x, int64_t n, int64_t ldx, void* y, int64_t ldy,
                  DType dtype, cudaStream_t stream) {
  if (!valid(w) || n < 1 || n > kMaxGemvRows || ldx < w.cols || ldy < w.rows) return cudaErrorInvalidValue;
  // A single row (batch-1 decode, the case that matters most) gets a kernel
  // without the unused accumulators.
  UDACI_CUDA_DISPATCH_DTYPE(dtype, T, {
    if (n == 1) {
      launch_qgemv<T, 1>(w, x, 1, ldx, y, ldy, stream);
    } else {
      launch_qgemv<T, static_cast<int>(kMaxGemvRows)>(w, x, static_cast<int>(n), ldx, y, ldy, stream);
    }
  });
  return cudaGetLastError();
}

cudaError_t qdequantize(const QWeight& w, const int64_t* row_ids, int64_t n_rows, void* out,
                        DType dtype, cudaStream_t stream) {
  if (!valid(w) || n_rows < 0) return cudaErrorInvalidValue;
  if (n_rows == 0) return cudaSuccess;
  const int64_t total = n_rows * w.cols;
  const int threads = 256;
  const dim3 grid(static_cast<unsigned>(detail::ceil_div(total, threads)));
  UDACI_CUDA_DISPATCH_DTYPE(dtype, T, {
    qdequantize_kernel<T><<<grid, threads, 0, stream>>>(w, row_ids, n_rows, static_cast<T*>(out));
  });
  return cudaGetLastError();
}

}  // namespace udaci::cuda
