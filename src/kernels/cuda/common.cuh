// Device helpers shared by the .cu files of kernels/cuda: element types,
// conversions, warp reductions and the dtype switch of the launch functions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/kernels.hpp"

namespace udaci::cuda::detail {

inline constexpr unsigned kFullMask = 0xffffffffu;

template <typename T>
__device__ __forceinline__ float to_f(T v);
template <>
__device__ __forceinline__ float to_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

// Round to nearest even, as ATen's casts.
template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float half_bits_to_f(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// 16 bytes of T as floats: 4 (fp32) or 8 (16-bit) values.
template <typename T>
struct Vec16 {
  static constexpr int kN = 16 / static_cast<int>(sizeof(T));
};

template <typename T>
__device__ __forceinline__ void load16(const T* p, float* out) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < Vec16<T>::kN; ++i) out[i] = to_f<T>(e[i]);
}

// N consecutive T as one aligned load (N * sizeof(T) is 2, 4, 8 or 16 bytes).
template <typename T, int N>
struct alignas(N * sizeof(T)) VecN {
  T v[N];
};

// A lane's next kN 16-byte loads of a row, issued before any is used (the
// memory system needs several requests in flight per lane to stream a
// weight at bandwidth): out[u] = p[c0 + 32 u], zeros from index n on.
template <int kN>
__device__ __forceinline__ void load_ahead(const uint4* __restrict__ p, int64_t c0, int64_t n, uint4 (&out)[kN]) {
#pragma unroll
  for (int u = 0; u < kN; ++u) {
    const int64_t c = c0 + 32 * u;
    out[u] = c < n ? __ldg(p + c) : make_uint4(0u, 0u, 0u, 0u);
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace udaci::cuda::detail

// Runs the statement with T bound to the element type of `dtype`.
#define UDACI_CUDA_DISPATCH_DTYPE(dtype, T, ...)                     \
  switch (dtype) {                                                   \
    case ::udaci::cuda::DType::kF32: {                               \
      using T = float;                                               \
      __VA_ARGS__;                                                   \
      break;                                                         \
    }                                                                \
    case ::udaci::cuda::DType::kF16: {                               \
      using T = __half;                                              \
      __VA_ARGS__;                                                   \
      break;                                                         \
    }                                                                \
    case ::udaci::cuda::DType::kBF16: {                              \
      using T = __nv_bfloat16;                                       \
      __VA_ARGS__;                                                   \
      break;                                                         \
    }                                                                \
    default:                                                         \
      return cudaErrorInvalidValue;                                  \
  }
