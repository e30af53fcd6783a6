#pragma once
// Elementwise steps of a decoder layer on float rows, for the CPU backend
// (layer_backend_cpu.cpp), which splits them over udaci's pool: SwiGLU's
// product silu(gate) * up, in AVX2 (elementwise_avx2.cpp, a vector exp) or
// the portable loop. Either gives a value the same bits in every batch. And
// the log-sum-exp of a row of logits (a log-softmax's normaliser, for beam
// search).
#include <cstdint>

namespace udaci {
namespace detail {

// out[i] = gate[i] / (1 + e^-gate[i]) * up[i], i < n.
void swiglu_scalar(const float* gate, const float* up, float* out, int64_t n);
void swiglu_avx2(const float* gate, const float* up, float* out, int64_t n);

// log(sum_i e^x[i]), i < n (n > 0): the largest x, m, plus the log of the sum
// of e^(x[i] - m), each term in float (rel. error ~1e-7, terms below e^-87
// count as ~1e-38), summed in double. -inf when every x is -inf.
double log_sum_exp_scalar(const float* x, int64_t n);
double log_sum_exp_avx2(const float* x, int64_t n);

}  // namespace detail

// log_sum_exp_* on the kernels the CPU runs (active_kernel_isa()).
double log_sum_exp(const float* x, int64_t n);

}  // namespace udaci
