// The SIMD body of dense_gemm and dense_gemm_half (model/dense_gemm.hpp),
// included by dense_gemm_avx2.cpp (8 floats a register) and
// dense_gemm_avx512.cpp (16) after they define, inside udaci::detail's
// anonymous namespace, three structs F32, BF16 and F16, each giving:
// `using V` (the register type), `using W` (the weight's element: float, or
// uint16_t for bf16/fp16 bits), `kRows`, `kActs` (the block: weight rows x
// activation rows, sized to the register file), `kWidth`, zero(),
// load(const float*), load_w(const W*) (kWidth weights as floats),
// fma(a, b, acc), hsum(v) and scalar(W) (one weight as a float); and the
// macros UDACI_DENSE_FN and UDACI_DENSE_HALF_FN, the entry points' names.
#include <algorithm>

#include "model/dense_gemm.hpp"

namespace udaci {
namespace detail {

namespace {

// Prefetches of the weight stream. With 2-6 activation rows the FMAs fill
// the core's window and the weight stream stalls: each block prefetches its
// own rows 1 KB ahead into L1 (SmolLM2 fp32 steps of 4 rows 33 -> 29 ms, 6
// rows 39 -> 32 ms; bench-forward, 2 threads, 2026-12-05). When the call is
// one pass over the weights (n <= kActs: decode and verification steps,
// the weights stream from memory once), each block also prefetches the
// next block into L2, one line per weight row and step, which keeps more
// lines in flight than L1's fill buffers allow: fp32 steps of 6 rows 26-33
// -> 22-24 ms, one row 22-23 -> 19-21 ms (session 24, AMX host). Prompts
// (n > kActs) re-read each panel from L2 and skip it (their prefill was
// ~8% slower with it).
constexpr int64_t kPrefetchBytes = 1024;

// Weight rows r .. r + R - 1 against activation rows j0 .. j0 + N - 1, as
// dot products along `in` (kWidth lanes each, summed at the end): each
// loaded weight vector serves N activation rows, each activation vector R
// weight rows. Every (activation row, weight row) pair runs the same
// operations whatever block it is in: a row's result does not depend on the
// rows batched with it.
template <class S, int R, int N>
void dense_block(const typename S::W* w, int64_t in, const float* x, int64_t j0, float* y, int64_t ldy,
                 int64_t r, int64_t r_end, bool stream) {
  typename S::V acc[R][N];
  for (int i = 0; i < R; ++i)
    for (int k = 0; k < N; ++k) acc[i][k] = S::zero();
  const int64_t full = in / S::kWidth * S::kWidth;
  constexpr int64_t kAhead = kPrefetchBytes / static_cast<int64_t>(sizeof(typename S::W));
  constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(typename S::W));  // weights a cache line
  // The next block's rows (contiguous after this block's), one line per
  // weight row and step, as far as this call's rows go (r_end).
  const int64_t next_rows = stream ? std::max<int64_t>(0, std::min<int64_t>(R, r_end - r - R)) : 0;
  const int64_t next_bytes = next_rows * in * static_cast<int64_t>(sizeof(typename S::W));
  const char* next = next_rows > 0 ? reinterpret_cast<const char*>(w + (r + R) * in) : nullptr;
  for (int64_t c = 0; c < full; c += S::kWidth) {
    if (c % kLine == 0) {
      for (int i = 0; i < R; ++i) {
        // past a row's end: the next row, read soon after
        if (N > 1) _mm_prefetch(reinterpret_cast<const char*>(w + (r + i) * in + c + kAhead), _MM_HINT_T0);
        const int64_t off = (c / kLine * R + i) * 64;
        if (off < next_bytes) _mm_prefetch(next + off, _MM_HINT_T1);
      }
    }
    typename S::V xv[N];
    for (int k = 0; k < N; ++k) xv[k] = S::load(x + (j0 + k) * in + c);
    for (int i = 0; i < R; ++i) {
      const typename S::V wv = S::load_w(w + (r + i) * in + c);
      for (int k = 0; k < N; ++k) acc[i][k] = S::fma(wv, xv[k], acc[i][k]);
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int k = 0; k < N; ++k) {
      float s = S::hsum(acc[i][k]);
      for (int64_t c = full; c < in; ++c) s += S::scalar(w[(r + i) * in + c]) * x[(j0 + k) * in + c];
      y[(j0 + k) * ldy + r + i] = s;
    }
  }
}

// Weight rows per block for N activation rows. One (decode): 8, 8 streams
// from memory in flight. With 32 vector registers (kWidth 16) as many as
// the accumulators, N activations and a weight leave room for, up to 8 and
// in steps that divide 24 (dense_run's panels): 2-3 rows take 8, 4 take 6
// (verification steps of speculative decoding, beams); else kRows.
template <class S, int N>
constexpr int block_rows() {
  if (N == 1) return 8;
  if (S::kWidth != 16) return S::kRows;
  if (N <= 3) return 8;
  if (N == 4) return 6;
  return S::kRows;
}

template <class S, int N>
void dense_rows(const typename S::W* w, int64_t in, const float* x, int64_t j0, float* y, int64_t ldy,
                int64_t r0, int64_t r1, bool stream) {
  constexpr int R = block_rows<S, N>();
  int64_t r = r0;
  for (; r + R <= r1; r += R) dense_block<S, R, N>(w, in, x, j0, y, ldy, r, r1, stream);
  for (; r < r1; ++r) dense_block<S, 1, N>(w, in, x, j0, y, ldy, r, r1, stream);
}

// The activation rows left after the full blocks of kActs, one count each.
template <class S, int N>
void dense_tail(const typename S::W* w, int64_t in, const float* x, int64_t j0, int64_t left, float* y,
                int64_t ldy, int64_t r0, int64_t r1, bool stream) {
  if constexpr (N > 0) {
    if (left == N) {
      dense_rows<S, N>(w, in, x, j0, y, ldy, r0, r1, stream);
      return;
    }
    dense_tail<S, N - 1>(w, in, x, j0, left, y, ldy, r0, r1, stream);
  }
}

template <class S>
void dense_run(const typename S::W* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0, int64_t r1,
               int64_t ldy) {
  // Weight rows in panels of ~96 KB, which stay in L2 while every activation
  // row passes over them: the weight is read from memory once per call
  // whatever n is (one pass for decode-sized n: then this is a GEMV).
  const int64_t row_bytes = std::max<int64_t>(1, in * static_cast<int64_t>(sizeof(typename S::W)));
  const int64_t panel = std::max<int64_t>(24, (96 * 1024) / row_bytes / 24 * 24);  // whole blocks
  const bool stream = n <= S::kActs;  // one pass over the weights
  for (int64_t p0 = r0; p0 < r1; p0 += panel) {
    const int64_t p1 = std::min(r1, p0 + panel);
    int64_t j = 0;
    for (; j + S::kActs <= n; j += S::kActs) dense_rows<S, S::kActs>(w, in, x, j, y, ldy, p0, p1, stream);
    dense_tail<S, S::kActs - 1>(w, in, x, j, n - j, y, ldy, p0, p1, stream);
  }
}

}  // namespace

void UDACI_DENSE_FN(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0, int64_t r1,
                    int64_t ldy) {
  dense_run<F32>(w, in, x, n, y, r0, r1, ldy);
}

void UDACI_DENSE_HALF_FN(const uint16_t* w, bool bf16, int64_t in, const float* x, int64_t n, float* y,
                         int64_t r0, int64_t r1, int64_t ldy) {
  if (bf16) {
    dense_run<BF16>(w, in, x, n, y, r0, r1, ldy);
  } else {
    dense_run<F16>(w, in, x, n, y, r0, r1, ldy);
  }
}

}  // namespace detail
}  // namespace udaci
