// Fused RMSNorm (kernels.hpp): one thread block per row; the sum of squares
// in fp32 through a warp-shuffle and shared-memory reduction, then one pass
// that writes w * cast(x * inv). Replaces the five ATen ops of
// LlamaModel::rms_norm's generic path (each a kernel launch at decode time).
#include "kernels/cuda/common.cuh"

namespace udaci::cuda {

namespace {

using detail::from_f;
using detail::to_f;
using detail::warp_sum;

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    rms_norm_kernel(const T* x, const T* __restrict__ w, T* y, int64_t cols, float eps) {
  __shared__ float partial[kThreads / 32];
  __shared__ float inv_shared;
  const T* xr = x + static_cast<int64_t>(blockIdx.x) * cols;
  T* yr = y + static_cast<int64_t>(blockIdx.x) * cols;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += kThreads) {
    const float v = to_f<T>(xr[i]);
    ss = fmaf(v, v, ss);
  }
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float t = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0.0f;
    t = warp_sum(t);
    // 1 / sqrt(mean + eps) with IEEE division and square root (no fast math),
    // as the CPU path.
    if (threadIdx.x == 0) inv_shared = 1.0f / sqrtf(t / static_cast<float>(cols) + eps);
  }
  __syncthreads();
  const float inv = inv_shared;
  for (int64_t i = threadIdx.x; i < cols; i += kThreads) {
    // HF LlamaRMSNorm: normalise in fp32, cast to the input dtype, then scale
    // (for fp32 the cast is the identity).
    const float normed = to_f<T>(from_f<T>(to_f<T>(xr[i]) * inv));
    yr[i] = from_f<T>(to_f<T>(w[i]) * normed);
  }
}

}  // namespace

cudaError_t rms_norm(const void* x, const void* weight, void* y, int64_t rows, int64_t cols,
                     float eps, DType dtype, cudaStream_t stream) {
  if (rows < 0 || cols <= 0 || rows > 0x7fffffff) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  UDACI_CUDA_DISPATCH_DTYPE(dtype, T, {
    rms_norm_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<T*>(y), cols, eps);
  });
  return cudaGetLastError();
}

}  // namespace udaci::cuda
