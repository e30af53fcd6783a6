// Packed 2:4 sparse weights and the CPU kernel that multiplies by them.
//
// Layout, for a weight W [out, in] with in % 4 == 0 and G = in / 4 groups of 4
// consecutive inputs per row, each group keeping 2 weights:
//   values [out, in / 2] float32: the kept weights of group g at 2g and 2g+1,
//          the one with the lower input index first.
//   meta   [out, ceil(G / 2)] uint8: 4 bits per group, group g of a row in
//          byte g / 2 (low nibble for even g, high nibble for odd g); the
//          nibble is i0 | i1 << 2, where i0 < i1 are the positions (0..3) of
//          the kept weights inside the group.
// So a row costs 2 * in + ceil(in / 8) bytes instead of 4 * in: 0.53x of
// dense fp32.
//
// NVIDIA's sparse tensor cores (and cuSPARSELt, which drives them) keep the
// same information, 2-bit indices of 2 kept values per 4, but in their own
// interleaved metadata order, and cuSPARSELt builds it itself from the pruned
// dense matrix (cusparseLtSpMMACompress). The GPU path therefore takes
// unpack_2of4() of this format, not these bytes; until it exists, a CUDA
// model runs the unpacked weights dense.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

#include "model/linear.hpp"

namespace udaci {

struct Packed24 {
  at::Tensor values;  // [out, in / 2] float32
  at::Tensor meta;    // [out, ceil(in / 8)] uint8
};

// Keeps the 2 largest |w| of every group of 4 inputs of each row (ties: the
// lower input index stays). w: [out, in] float32, in % 4 == 0, else
// Error(kInvalidArgument).
Packed24 pack_2of4(const at::Tensor& w);

// The dense [out, in] float32 matrix the packed form stands for (zeros where
// pruned). Checks the shapes and that every nibble holds i0 < i1.
at::Tensor unpack_2of4(const at::Tensor& values, const at::Tensor& meta, int64_t in_features);

// Checks values/meta against [out, in]: Error(kBadModelFile) naming `what`.
void check_packed_2of4(const at::Tensor& values, const at::Tensor& meta, int64_t out_features,
                       int64_t in_features, const std::string& what);

enum class Sparse24Path {
  kAuto,    // AVX2 + FMA when the CPU has them, else scalar
  kScalar,  // portable C++
  kAvx2,    // Error(kUnsupported) when the CPU lacks AVX2 or FMA
};

bool sparse24_avx2_available();

// y = x W^T for the packed W. x: [n, in] float32 -> [n, out] float32.
// Threads over output rows (at::parallel_for).
at::Tensor sparse24_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                           int64_t in_features, Sparse24Path path = Sparse24Path::kAuto);

// A LinearKernel over the packed form; bias [out] optional. Computes in
// float32 and returns x's dtype.
std::unique_ptr<LinearKernel> make_sparse24_kernel(at::Tensor values, at::Tensor meta,
                                                   int64_t in_features, at::Tensor bias = {});

namespace detail {
// Rows [row_begin, row_end) of y [n, out] for x [n, in] (row-major floats).
// meta_stride: bytes of meta per row. Defined in sparse24_avx2.cpp, compiled
// with -mavx2 -mfma; call only when sparse24_avx2_available().
void sparse24_rows_avx2(const float* x, int64_t n, int64_t in, const float* values,
                        const uint8_t* meta, int64_t meta_stride, int64_t row_begin,
                        int64_t row_end, float* y, int64_t out);
}  // namespace detail

}  // namespace udaci
