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

// The same weight on a CUDA device (issue #10): the quants and scales are
// copied there once (rows in HF order), forward() runs the CUDA GEMV for up to
// 8 input rows and dequantise + cuBLAS above, gather_rows() dequantises the
// looked-up rows on the device. kI8Row, kI4Affine and kNF4 only (GGUF blocks:
// Error(kUnsupported)). Defined in kernels/cuda/cuda_linear.cpp, only in a
// build with UDACI_WITH_CUDA; callers guard the call with that macro.
std::unique_ptr<LinearKernel> make_quantized_cuda_kernel(const QuantizedKernelParts& parts,
                                                         at::Device device);

// Input rows from which forward() dequantises the weight to fp32 and calls
// at::linear (BLAS GEMM) instead of the integer kernel: prefill-sized batches
// of small weights. Measured (2 cores, 64-token prefill): SmolLM2-135M, whose
// largest fp32 weight is 3.5 MB, prefills faster this way (int8 532 vs 449
// tokens/s); the Llama-3.2-1B shape, whose 64 MB FFN weights do not stay in
// cache while dequantised, 2.4x slower (24 vs 58 tokens/s). So the GEMM path
// is taken only for weights up to kDequantGemmMaxBytes of fp32.
// Since the integer kernel runs on udaci's own thread pool (core/thread_pool),
// it prefills SmolLM2 faster too (int4, 60 tokens: 490-570 vs 380 tokens/s
// dequantised, 2026-11-29) and is even at 512 (417-484 vs 335-521), so the
// row threshold is 256: a headline's prompt and batched decode steps stay off
// BLAS (whose spinning helper threads slowed the decode that follows).
inline constexpr int64_t kDequantGemmMinRows = 256;
inline constexpr int64_t kDequantGemmMaxBytes = int64_t{8} << 20;
// kDequantGemmMinRows, or UDACI_DEQUANT_GEMM_MIN_ROWS when set (read once;
// for measuring the crossover).
int64_t dequant_gemm_min_rows();

}  // namespace udaci
