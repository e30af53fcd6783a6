#pragma once
// fp32 y[j, r] = x[j, :] . w[r, :] on udaci's pool, for dense fp32
// projections (model/linear.cpp) of decode steps and headline prompts.
// at::linear would call OpenBLAS's sgemv/sgemm, which runs on OpenBLAS's own
// threads beside udaci's pool (the engine keeps ATen single-threaded) and
// packs the weight again on every call; here the weight is read as stored
// (row-major, as loaded), in blocks of rows that stay in cache while every
// activation row passes over them (issue #22: an fp32 model decoded on one
// core at 0.35x llama.cpp before the GEMV, and its prompts went to OpenBLAS).

#include <cstdint>
#include <cstring>
#include <vector>

namespace udaci {

// Activation rows up to which dense fp32 projections use dense_gemm rather
// than at::linear (OpenBLAS's packed SGEMM won on longer inputs on the AMD
// host): the crossover measured per instruction set, docs/BENCHMARKS.md "M13
// third step" — 128 with AVX-512 (16 floats a register), 64 with AVX2, 8
// for the scalar reference. On the Intel AMX host (Debian's OpenBLAS 0.3.21
// takes it for a Cooper Lake) dense_gemm is 3.6-4.3x at::linear at every
// row count up to 512 (`dense bench`, session 24): 4096 there, a bound that
// keeps the tests' inputs small. A headline prompt is ~35-150 new tokens; a
// batch of prompts, or a long one, is more.
int64_t dense_gemm_max_rows();

// w [out, in] and x [n, in] row-major fp32, y [n, out] (ldy = out).
void dense_gemm(const float* w, int64_t out, int64_t in, const float* x, int64_t n, float* y);

// The same with 16-bit weights as stored (bf16 when `bf16`, else IEEE fp16
// bits), widened to fp32 as they are read: a bf16/fp16 model's projections
// read half the bytes of fp32 and accumulate in fp32. x and y fp32.
void dense_gemm_half(const uint16_t* w, bool bf16, int64_t out, int64_t in, const float* x, int64_t n, float* y);

// Prompt rows of a bf16 projection through AMX-BF16 tile products (where
// core/cpu_features.hpp bf16_prompt_rows() says so): x rounded to bf16, the
// weights read as stored, sums in fp32 over the whole row. Only when
// dense_bf16_prompt_ok(in) (in a multiple of 32: a tile reads 32 columns).
bool dense_bf16_prompt_ok(int64_t in);
void dense_gemm_bf16_prompt(const uint16_t* w, int64_t out, int64_t in, const float* x, int64_t n, float* y);

inline float bf16_bits_to_float(uint16_t v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

namespace detail {
// Output columns [r0, r1) (weight rows) for every activation row; ldy the row
// stride of y.
void dense_gemm_scalar(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0,
                       int64_t r1, int64_t ldy);
void dense_gemm_avx2(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0,
                     int64_t r1, int64_t ldy);
void dense_gemm_avx512(const float* w, int64_t in, const float* x, int64_t n, float* y, int64_t r0,
                       int64_t r1, int64_t ldy);
void dense_gemm_half_scalar(const uint16_t* w, bool bf16, int64_t in, const float* x, int64_t n, float* y,
                            int64_t r0, int64_t r1, int64_t ldy);
void dense_gemm_half_avx2(const uint16_t* w, bool bf16, int64_t in, const float* x, int64_t n, float* y,
                          int64_t r0, int64_t r1, int64_t ldy);
void dense_gemm_half_avx512(const uint16_t* w, bool bf16, int64_t in, const float* x, int64_t n, float* y,
                            int64_t r0, int64_t r1, int64_t ldy);
// AMX-BF16 (dense_gemm_amx.cpp): x [n, in] as the tiles' pair layout, and
// weight rows [r0, r1) times it.
void bf16_pairs_amx(const float* x, int64_t n, int64_t in, std::vector<uint16_t>& buf, uint16_t** out);
void dense_gemm_bf16_amx(const uint16_t* w, int64_t out, int64_t in, const uint16_t* xb, int64_t n, float* y,
                         int64_t r0, int64_t r1, int64_t ldy);
}  // namespace detail

}  // namespace udaci
