// UDACI_CUDA_CHECK(expr): a CUDA runtime call or kernel launch function that
// returns cudaError_t; anything but cudaSuccess throws Error(kCuda) with the
// expression and CUDA's name and text for the error.
#pragma once

#include <cuda_runtime_api.h>

#include "core/error.hpp"

#define UDACI_CUDA_CHECK(expr)                                                          \
  do {                                                                                  \
    const cudaError_t udaci_cuda_err_ = (expr);                                         \
    if (udaci_cuda_err_ != cudaSuccess)                                                 \
      ::udaci::fail(::udaci::Status::kCuda, "{} failed: {} ({})", #expr,                \
                    cudaGetErrorName(udaci_cuda_err_), cudaGetErrorString(udaci_cuda_err_)); \
  } while (0)
