#pragma once
// SIMD bodies of the fused CPU decode attention (llama_model.cpp), one file
// per instruction set as for the quantised kernels (src/quant).

#include <cstdint>

namespace udaci {
namespace detail {

// One head of one decoding token: q [d]; key and value of token t at
// k + t * stride and v + t * stride; p: scratch for `total` scores; out [d].
// softmax(q . k_t * scale) weighted sum of v_t, in fp32.
void attend_decode_head_avx2(const float* q, const float* k, const float* v, int64_t stride, int64_t d,
                             int64_t total, float scale, float* p, float* out);

}  // namespace detail
}  // namespace udaci
