// The LinearKernel of every quantised format on the CPU: the weight is
// repacked at construction into 8-row tiles (quant/tiled_matrix.hpp);
// forward() quantises the input rows to int8 blocks once and runs tiled_gemm
// over the tiles on udaci's pool, for one row (decode) or a whole prompt
// alike, so a row's output never depends on the rows it is batched with;
// gather_rows() dequantises only the looked-up rows, so a quantised token
// embedding never exists in float. Prompts used to take a dequantise + BLAS
// GEMM detour above 256 rows for small weights; the tiles are faster there
// too (perplexity on the default model, ~350 rows per forward: 4.0-4.4 s vs
// 6.7-8.2 s, 2026-12-03), so there is one path.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "io/mapped_file.hpp"
#include "model/linear.hpp"
#include "quant/qmatrix.hpp"

namespace udaci {

struct QuantizedKernelParts {
  QMatrix matrix;  // row_order is taken from `row_order` below
  std::vector<int64_t> row_order;  // empty: identity
  std::vector<std::shared_ptr<const void>> owners;  // keep matrix's memory alive
  // Set when matrix.data lies in a file map: the CPU kernel drops those pages
  // once it has repacked them (the tiles hold every value).
  std::shared_ptr<const MappedFile> source_file;
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


}  // namespace udaci
