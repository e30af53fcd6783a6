#pragma once
// fp32 y[j, r] = x[j, :] . w[r, :] for a few activation rows (decode steps)
// on udaci's pool, for dense fp32 projections (model/linear.cpp): at::linear
// would call OpenBLAS's sgemv/sgemm, which runs on OpenBLAS's own threads
// (the engine's compute thread keeps ATen single-threaded), so an fp32 model
// decoded on one core (issue #22: 0.35x llama.cpp's F32 decode).

#include <cstdint>

namespace udaci {

// Activation rows up to which dense fp32 projections use dense_gemv.
inline constexpr int64_t kDenseGemvMaxRows = 8;

// w [out, in] and x [n, in] row-major fp32, y [n, out] (ldy = out).
void dense_gemv(const float* w, int64_t out, int64_t in, const float* x, int64_t n, float* y);

namespace detail {
// Output rows [r0, r1) for every activation row; ldy the row stride of y.
void dense_gemv_scalar(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0,
                       int64_t r1, int64_t ldy);
void dense_gemv_avx2(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0,
                     int64_t r1, int64_t ldy);
}  // namespace detail

}  // namespace udaci
