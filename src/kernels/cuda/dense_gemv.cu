// Dense matrix-vector products for decode steps (kernels.hpp): W and x in one
// dtype (fp32, fp16 or bf16), 1 to kMaxGemvRows activation rows.
//
// At batch 1 every weight byte is used once, so the step is as fast as the
// weights stream in. cuBLAS's GEMM kernels, tiled for large n, read this
// model's projections at 1.3-1.7 TB/s on an H200 (docs/BENCHMARKS.md, M18);
// here one warp owns one output row and each lane keeps kUnroll 16-byte
// loads of its row in flight before it uses any of them, so the memory
// system sees enough outstanding requests to run near its bandwidth. The
// activation rows (a few KB) are served from L1; products accumulate in fp32
// per lane and meet in a warp-shuffle reduction.
//
// A decode step is also hundreds of small kernels, each with a launch and a
// drain, so the kernels here take work that would otherwise be a kernel of
// its own: up to three projections of one input in one launch (q, k, v), a
// residual added to the product (o and down), and SwiGLU's two products with
// silu(gate) * up applied before anything is written (gate, up).
#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace udaci::cuda {

namespace {

using detail::from_f;
using detail::load16;
using detail::to_f;
using detail::Vec16;
using detail::warp_sum;

constexpr int kWarpsPerBlock = 4;  // output rows per thread block
constexpr int kUnroll = 4;         // 16-byte weight loads in flight per lane

// Adds this lane's share of W[row, :] . x[j, :] to acc[j] for j < n.
template <typename T, int kMaxN>
__device__ __forceinline__ void row_dot(const T* __restrict__ wrow, const T* __restrict__ x, int64_t ldx,
                                        int64_t cols, int n, int lane, float (&acc)[kMaxN]) {
  constexpr int kV = Vec16<T>::kN;  // elements per 16-byte load
  const int64_t nvec = cols / kV;
  const uint4* wr = reinterpret_cast<const uint4*>(wrow);
  for (int64_t c0 = lane; c0 < nvec; c0 += 32 * kUnroll) {
    uint4 wv[kUnroll];
    detail::load_ahead<kUnroll>(wr, c0, nvec, wv);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + 32 * u;
      if (c < nvec) {
        const T* we = reinterpret_cast<const T*>(&wv[u]);
        float wf[kV];
#pragma unroll
        for (int i = 0; i < kV; ++i) wf[i] = to_f<T>(we[i]);
#pragma unroll
        for (int j = 0; j < kMaxN; ++j) {
          if (j < n) {
            float xv[kV];
            load16<T>(x + j * ldx + c * kV, xv);
#pragma unroll
            for (int i = 0; i < kV; ++i) acc[j] = fmaf(wf[i], xv[i], acc[j]);
          }
        }
      }
    }
  }
}

// Up to three weights of one input; global row r belongs to the first matrix
// m with r < row_end[m].
template <typename T>
struct Group {
  const T* w[kMaxGemvGroup];
  T* y[kMaxGemvGroup];
  const T* residual[kMaxGemvGroup];  // nullptr: none
  int64_t ldy[kMaxGemvGroup];
  int64_t row_end[kMaxGemvGroup];
  int count;
};

template <typename T, int kMaxN>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_group_kernel(Group<T> g, const T* __restrict__ x, int64_t ldx, int64_t cols, int n) {
  const int lane = threadIdx.x & 31;
  int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= g.row_end[g.count - 1]) return;
  int m = 0;
  while (row >= g.row_end[m]) ++m;
  if (m > 0) row -= g.row_end[m - 1];
  float acc[kMaxN];
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) acc[j] = 0.0f;
  row_dot<T, kMaxN>(g.w[m] + row * cols, x, ldx, cols, n, lane, acc);
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) {
    float v = warp_sum(acc[j]);
    if (lane == 0 && j < n) {
      const int64_t at = j * g.ldy[m] + row;
      if (g.residual[m] != nullptr) v += to_f<T>(g.residual[m][at]);
      g.y[m][at] = from_f<T>(v);
    }
  }
}

// y = silu(x Wg^T) * (x Wu^T), both products of a row in one warp.
template <typename T, int kMaxN>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    swiglu_kernel(const T* __restrict__ wg, const T* __restrict__ wu, const T* __restrict__ x, int64_t ldx,
                  T* __restrict__ y, int64_t ldy, int64_t rows, int64_t cols, int n) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  float ga[kMaxN], ua[kMaxN];
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) ga[j] = ua[j] = 0.0f;
  row_dot<T, kMaxN>(wg + row * cols, x, ldx, cols, n, lane, ga);
  row_dot<T, kMaxN>(wu + row * cols, x, ldx, cols, n, lane, ua);
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) {
    const float g = warp_sum(ga[j]), u = warp_sum(ua[j]);
    if (lane == 0 && j < n) y[j * ldy + row] = from_f<T>(g / (1.0f + expf(-g)) * u);
  }
}

bool misaligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; }

bool x_ok(const void* x, int64_t n, int64_t ldx, int64_t cols, int64_t elem) {
  return x != nullptr && !misaligned(x) && n >= 1 && n <= kMaxGemvRows && cols > 0 && ldx >= cols &&
         (cols * elem) % 16 == 0 && (ldx * elem) % 16 == 0;
}

int64_t elem_size(DType t) { return t == DType::kF32 ? 4 : 2; }

// Calls f.template operator()<kMaxN>() with the smallest kMaxN >= n of 1, 4, 8.
template <typename F>
void by_rows(int64_t n, F&& f) {
  if (n == 1) {
    f(std::integral_constant<int, 1>());
  } else if (n <= 4) {
    f(std::integral_constant<int, 4>());
  } else {
    f(std::integral_constant<int, static_cast<int>(kMaxGemvRows)>());
  }
}

}  // namespace

cudaError_t dense_gemv_group(const DenseGemvGroup& group, const void* x, int64_t n, int64_t ldx, int64_t cols,
                             DType dtype, cudaStream_t stream) {
  const int64_t elem = elem_size(dtype);
  if (group.count < 1 || group.count > kMaxGemvGroup || !x_ok(x, n, ldx, cols, elem))
    return cudaErrorInvalidValue;
  int64_t total = 0;
  for (int m = 0; m < group.count; ++m) {
    const DenseGemvGroup::Part& p = group.parts[m];
    if (p.w == nullptr || p.y == nullptr || misaligned(p.w) || p.rows <= 0 || p.ldy < p.rows)
      return cudaErrorInvalidValue;
    total += p.rows;
  }
  if (total > (int64_t{1} << 31) * kWarpsPerBlock / 2) return cudaErrorInvalidValue;
  UDACI_CUDA_DISPATCH_DTYPE(dtype, T, {
    Group<T> g{};
    int64_t end = 0;
    for (int m = 0; m < group.count; ++m) {
      const DenseGemvGroup::Part& p = group.parts[m];
      g.w[m] = static_cast<const T*>(p.w);
      g.y[m] = static_cast<T*>(p.y);
      g.residual[m] = static_cast<const T*>(p.residual);
      g.ldy[m] = p.ldy;
      end += p.rows;
      g.row_end[m] = end;
    }
    g.count = group.count;
    const dim3 grid(static_cast<unsigned>(detail::ceil_div(total, kWarpsPerBlock)));
    by_rows(n, [&](auto k) {
      gemv_group_kernel<T, decltype(k)::value><<<grid, kWarpsPerBlock * 32, 0, stream>>>(
          g, static_cast<const T*>(x), ldx, cols, static_cast<int>(n));
    });
  });
  return cudaGetLastError();
}

cudaError_t dense_gemv(const void* w, const void* x, int64_t n, int64_t ldx, void* y, int64_t ldy,
                       int64_t rows, int64_t cols, DType dtype, cudaStream_t stream) {
  DenseGemvGroup g;
  g.count = 1;
  g.parts[0] = {w, y, nullptr, rows, ldy};
  return dense_gemv_group(g, x, n, ldx, cols, dtype, stream);
}

cudaError_t dense_swiglu(const void* w_gate, const void* w_up, const void* x, int64_t n, int64_t ldx, void* y,
                         int64_t ldy, int64_t rows, int64_t cols, DType dtype, cudaStream_t stream) {
  const int64_t elem = elem_size(dtype);
  if (w_gate == nullptr || w_up == nullptr || y == nullptr || misaligned(w_gate) || misaligned(w_up) ||
      rows <= 0 || ldy < rows || !x_ok(x, n, ldx, cols, elem) || rows > (int64_t{1} << 31))
    return cudaErrorInvalidValue;
  UDACI_CUDA_DISPATCH_DTYPE(dtype, T, {
    const dim3 grid(static_cast<unsigned>(detail::ceil_div(rows, kWarpsPerBlock)));
    by_rows(n, [&](auto k) {
      swiglu_kernel<T, decltype(k)::value><<<grid, kWarpsPerBlock * 32, 0, stream>>>(
          static_cast<const T*>(w_gate), static_cast<const T*>(w_up), static_cast<const T*>(x), ldx,
          static_cast<T*>(y), ldy, rows, cols, static_cast<int>(n));
    });
  });
  return cudaGetLastError();
}

}  // namespace udaci::cuda
