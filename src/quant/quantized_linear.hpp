// The LinearKernel of every quantised format: forward() quantises the input
// rows to int8 blocks once and runs qmatrix_gemm over the output rows in
// parallel (ATen's intra-op pool); gather_rows() dequantises only the looked-up
// rows, so a quantised token embedding never exists in float.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "model/linear.hpp"
#include "quant/qmatrix.hpp"

namespace udaci {

struct QuantizedKernelParts {
  QMatrix matrix;  // row_order is taken from `row_order` below
  std::vector<int64_t> row_order;  // empty: identity
  std::vector<std::shared_ptr<const void>> owners;  // keep matrix's memory alive
  at::Tensor bias;     // [out] fp32, or undefined
  int64_t bytes = 0;   // weight_bytes(): quants + scales (+ bias)
};

std::unique_ptr<LinearKernel> make_quantized_kernel(QuantizedKernelParts parts);

// Input rows from which forward() dequantises the weight to fp32 and calls
// at::linear (BLAS GEMM) instead of the integer kernel: prefill-sized batches,
// where the GEMM's arithmetic, not the weight bytes, is the bound. A first
// estimate (the integer kernel costs ~n GEMVs; dequantising a weight costs a
// few GEMVs); the crossover has not been measured yet.
inline constexpr int64_t kDequantGemmMinRows = 48;

}  // namespace udaci
