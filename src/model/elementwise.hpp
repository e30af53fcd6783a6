#pragma once
// Elementwise steps of a decoder layer on float rows, for the CPU backend
// (layer_backend_cpu.cpp), which splits them over udaci's pool: SwiGLU's
// product silu(gate) * up, in AVX2 (elementwise_avx2.cpp, a vector exp) or
// the portable loop. Either gives a value the same bits in every batch.
#include <cstdint>

namespace udaci {
namespace detail {

// out[i] = gate[i] / (1 + e^-gate[i]) * up[i], i < n.
void swiglu_scalar(const float* gate, const float* up, float* out, int64_t n);
void swiglu_avx2(const float* gate, const float* up, float* out, int64_t n);

}  // namespace detail
}  // namespace udaci
