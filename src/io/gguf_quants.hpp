// Dequantisation of GGUF block formats to float, on raw pointers (no ATen), so
// that kernels and tests can share it. Block layouts follow ggml's
// ggml-common.h as documented in the GGUF specification.
#pragma once

#include <cstdint>

#include "io/weight_store.hpp"

namespace udaci {

// Writes n_elements floats to dst from data of type t. n_elements must be a
// multiple of the block size of t. Throws Error(kUnsupported) for a type that
// has no dequantiser.
void dequantize_row(WeightType t, const uint8_t* src, float* dst, int64_t n_elements);

// The 12 scale bytes of a Q4_K / Q5_K super-block: 8 six-bit scales and 8
// six-bit mins, one per sub-block of 32 (ggml-quants.c get_scale_min_k4).
void k4_scale_min(const uint8_t* scales12, uint8_t* sc, uint8_t* m);

// IEEE binary16 and bfloat16 bit patterns to float (exact; inf/nan kept).
float half_to_float(uint16_t h);
float bf16_to_float(uint16_t b);

}  // namespace udaci
