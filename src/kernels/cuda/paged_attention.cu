// Decode attention over a paged (or contiguous) K/V cache (kernels.hpp), in
// the manner of vLLM's PagedAttention (Kwon et al., arXiv:2309.06180) and
// the one-pass softmax of Milakov & Gimelshein (arXiv:1805.02867).
//
// One thread block per (KV head, sequence, chunk of up to kMaxGroup query
// heads): every query head that shares the KV head is served by the same
// block, so each K/V row is read from memory once per group (GQA). The
// block's warps (8 or 16) take tokens in turn; a lane holds head_dim / 32 consecutive
// elements of q, of the K/V row and of the output. Each warp keeps, per
// query head, a running max m, a running sum l and an unnormalised output,
// rescaled by exp(m_old - m_new) whenever the max grows; at the end the warps'
// states are merged through shared memory the same way.
#include <cmath>

#include "kernels/cuda/kv_cache.cuh"

namespace udaci::cuda {

namespace {

using detail::from_f;
using detail::kv_row;
using detail::to_f;
using detail::VecN;
using detail::warp_sum;

constexpr int kMaxGroup = 8;  // query heads per thread block

// Warps per block: each walks every kWarps-th token, so the serial chain of
// dependent loads and shuffles per warp is len / kWarps tokens long. A
// decode step at batch 1 has only n_kv_heads blocks (8 for Llama-3.2-1B),
// so the warps are what spreads the work: 16 for head_dim 64, 8 for 128
// (the merge buffer below stays at 32 KB of shared memory either way).
template <int D>
constexpr int warps_for() {
  return D == 64 ? 16 : 8;
}

template <typename T, int D, int kWarps = warps_for<D>()>
__global__ void __launch_bounds__(kWarps * 32)
    attention_decode_kernel(const T* __restrict__ q, T* __restrict__ out, int n_heads, int n_kv_heads,
                            const int32_t* __restrict__ seq_lens, int32_t uniform_len,
                            KvCacheView cache, float scale) {
  constexpr int kPer = D / 32;  // elements per lane
  using Vec = VecN<T, kPer>;
  __shared__ float sm_m[kWarps][kMaxGroup];
  __shared__ float sm_l[kWarps][kMaxGroup];
  __shared__ float sm_o[kWarps][kMaxGroup][D];

  const int kvh = blockIdx.x;
  const int64_t seq = blockIdx.y;
  const int group = n_heads / n_kv_heads;
  const int h_first = kvh * group + blockIdx.z * kMaxGroup;  // first query head of this block
  const int gh = min(kMaxGroup, group - static_cast<int>(blockIdx.z) * kMaxGroup);
  const int len = seq_lens ? seq_lens[seq] : uniform_len;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  float qr[kMaxGroup][kPer];
  float m[kMaxGroup], l[kMaxGroup], o[kMaxGroup][kPer];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int p = 0; p < kPer; ++p) {
      o[g][p] = 0.0f;
      qr[g][p] = 0.0f;
    }
    if (g < gh) {
      const Vec qv = *reinterpret_cast<const Vec*>(q + (seq * n_heads + h_first + g) * D + lane * kPer);
#pragma unroll
      for (int p = 0; p < kPer; ++p) qr[g][p] = to_f<T>(qv.v[p]);
    }
  }

  const int64_t row_elems = static_cast<int64_t>(n_kv_heads) * D;
  const T* kbase = static_cast<const T*>(cache.k) + kvh * D + lane * kPer;
  const T* vbase = static_cast<const T*>(cache.v) + kvh * D + lane * kPer;
  for (int t = warp; t < len; t += kWarps) {
    const int64_t row = kv_row(cache, seq, t);
    const Vec kv = *reinterpret_cast<const Vec*>(kbase + row * row_elems);
    const Vec vv = *reinterpret_cast<const Vec*>(vbase + row * row_elems);
    float kf[kPer], vf[kPer];
#pragma unroll
    for (int p = 0; p < kPer; ++p) {
      kf[p] = to_f<T>(kv.v[p]);
      vf[p] = to_f<T>(vv.v[p]);
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < gh) {  // uniform across the warp: the shuffles below see every lane
        float s = 0.0f;
#pragma unroll
        for (int p = 0; p < kPer; ++p) s = fmaf(qr[g][p], kf[p], s);
        s = warp_sum(s) * scale;
        const float m_new = fmaxf(m[g], s);
        const float corr = expf(m[g] - m_new);  // 0 on the first token (m = -inf)
        const float pr = expf(s - m_new);
        l[g] = l[g] * corr + pr;
#pragma unroll
        for (int p = 0; p < kPer; ++p) o[g][p] = fmaf(pr, vf[p], o[g][p] * corr);
        m[g] = m_new;
      }
    }
  }

#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < gh) {
      if (lane == 0) {
        sm_m[warp][g] = m[g];
        sm_l[warp][g] = l[g];
      }
#pragma unroll
      for (int p = 0; p < kPer; ++p) sm_o[warp][g][lane * kPer + p] = o[g][p];
    }
  }
  __syncthreads();
  // Merge the warps' states: out = sum_w o_w e^(m_w - M) / sum_w l_w e^(m_w - M).
  for (int i = threadIdx.x; i < gh * D; i += kWarps * 32) {
    const int g = i / D, e = i % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w][g]);
    float num = 0.0f, den = 0.0f;
    if (mx != -INFINITY) {  // len == 0 leaves every warp empty: output zeros
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float f = expf(sm_m[w][g] - mx);  // 0 for a warp that saw no token
        num = fmaf(sm_o[w][g][e], f, num);
        den = fmaf(sm_l[w][g], f, den);
      }
    }
    out[(seq * n_heads + h_first + g) * D + e] = from_f<T>(den > 0.0f ? num / den : 0.0f);
  }
}

template <typename T, int D>
void launch(const void* q, void* out, int64_t n_seqs, int64_t n_heads, int64_t n_kv_heads,
            const int32_t* seq_lens, int32_t uniform_len, const KvCacheView& cache, float scale,
            cudaStream_t stream) {
  const int64_t group = n_heads / n_kv_heads;
  const dim3 grid(static_cast<unsigned>(n_kv_heads), static_cast<unsigned>(n_seqs),
                  static_cast<unsigned>(detail::ceil_div(group, kMaxGroup)));
  attention_decode_kernel<T, D><<<grid, warps_for<D>() * 32, 0, stream>>>(
      static_cast<const T*>(q), static_cast<T*>(out), static_cast<int>(n_heads),
      static_cast<int>(n_kv_heads), seq_lens, uniform_len, cache, scale);
}

}  // namespace

cudaError_t paged_attention_decode(const void* q, void* out, int64_t n_seqs, int64_t n_heads,
                                   int64_t n_kv_heads, int64_t head_dim, const int32_t* seq_lens,
                                   int32_t uniform_len, const KvCacheView& cache, float scale,
                                   DType dtype, cudaStream_t stream) {
  if (n_seqs < 0 || n_seqs > 65535 || n_kv_heads <= 0 || n_heads <= 0 || n_heads % n_kv_heads != 0 ||
      (head_dim != 64 && head_dim != 128) || (seq_lens == nullptr && uniform_len < 0) ||
      cache.k == nullptr || cache.v == nullptr ||
      (cache.block_tables != nullptr && (cache.block_size <= 0 || cache.max_blocks_per_seq <= 0)))
    return cudaErrorInvalidValue;
  if (n_seqs == 0) return cudaSuccess;
  UDACI_CUDA_DISPATCH_DTYPE(dtype, T, {
    if (head_dim == 64) {
      launch<T, 64>(q, out, n_seqs, n_heads, n_kv_heads, seq_lens, uniform_len, cache, scale, stream);
    } else {
      launch<T, 128>(q, out, n_seqs, n_heads, n_kv_heads, seq_lens, uniform_len, cache, scale, stream);
    }
  });
  return cudaGetLastError();
}

}  // namespace udaci::cuda
