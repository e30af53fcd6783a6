// Rotary embedding of one decode step fused with the K/V cache write
// (kernels.hpp). Unfused, a step runs cos/sin (outer, cat, cos, sin), two
// rotations of seven ops each and two cache copies per layer; here one kernel
// per layer reads q, k, v once and writes q in place and K/V into their cache
// rows. cos/sin are computed from the position on the fly (accurate cosf /
// sinf: positions reach 10^5 radians, where the fast intrinsics lose digits).
#include "kernels/cuda/kv_cache.cuh"

namespace udaci::cuda {

namespace {

using detail::from_f;
using detail::kv_row;
using detail::to_f;

constexpr int kThreads = 128;

// One thread block per token; threads stride over the (head, j) pairs of q
// and k (j < d/2) and the elements of v.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    rope_kv_write_kernel(T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                         int n_heads, int n_kv_heads, int d, const int64_t* __restrict__ positions,
                         const float* __restrict__ inv_freq, KvCacheView cache) {
  const int64_t t = blockIdx.x;
  const int half = d / 2;
  const int64_t pos = positions[t];
  const int64_t row = kv_row(cache, t, pos);
  const int64_t row_elems = static_cast<int64_t>(n_kv_heads) * d;
  T* k_dst = static_cast<T*>(cache.k) + row * row_elems;
  T* v_dst = static_cast<T*>(cache.v) + row * row_elems;
  const T* k_src = k + t * row_elems;
  const T* v_src = v + t * row_elems;
  T* q_row = q + t * static_cast<int64_t>(n_heads) * d;

  const int q_pairs = n_heads * half;
  const int k_pairs = n_kv_heads * half;
  const int v_elems = n_kv_heads * d;
  for (int i = threadIdx.x; i < q_pairs + k_pairs + v_elems; i += kThreads) {
    if (i >= q_pairs + k_pairs) {
      const int e = i - q_pairs - k_pairs;
      v_dst[e] = v_src[e];
      continue;
    }
    const bool is_q = i < q_pairs;
    const int p = is_q ? i : i - q_pairs;
    const int h = p / half, j = p % half;
    // As Rope::cos_sin: the angle in fp32 (float(position) * inv_freq).
    const float a = static_cast<float>(pos) * inv_freq[j];
    float s, c;
    sincosf(a, &s, &c);
    const T* src = is_q ? q_row + h * d : k_src + h * d;
    const float x1 = to_f<T>(src[j]);
    const float x2 = to_f<T>(src[j + half]);
    const float o1 = x1 * c + (-x2) * s;
    const float o2 = x2 * c + x1 * s;
    T* dst = is_q ? q_row + h * d : k_dst + h * d;
    dst[j] = from_f<T>(o1);
    dst[j + half] = from_f<T>(o2);
  }
}

}  // namespace

cudaError_t rope_kv_write(void* q, const void* k, const void* v, int64_t n_tokens, int64_t n_heads,
                          int64_t n_kv_heads, int64_t head_dim, const int64_t* positions,
                          const float* inv_freq, const KvCacheView& cache, DType dtype,
                          cudaStream_t stream) {
  if (n_tokens < 0 || n_tokens > 0x7fffffff || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 ||
      head_dim % 2 != 0 || (n_heads + 2 * n_kv_heads) * head_dim > (int64_t{1} << 30) ||
      cache.k == nullptr || cache.v == nullptr ||
      (cache.block_tables != nullptr && (cache.block_size <= 0 || cache.max_blocks_per_seq <= 0)))
    return cudaErrorInvalidValue;
  if (n_tokens == 0) return cudaSuccess;
  UDACI_CUDA_DISPATCH_DTYPE(dtype, T, {
    rope_kv_write_kernel<T><<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(
        static_cast<T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
        static_cast<int>(n_heads), static_cast<int>(n_kv_heads), static_cast<int>(head_dim),
        positions, inv_freq, cache);
  });
  return cudaGetLastError();
}

}  // namespace udaci::cuda
