// The stored formats the "int8", "int4" and "nf4" quantizers write into a
// WeightStore (and read back from a saved artefact), and the offline
// quantisation into them. For a weight "<w>.weight" [out, in] (HF order):
//
// int8, symmetric per output channel (LLM.int8()'s vector-wise baseline,
// Dettmers et al., arXiv:2208.07339, without its outlier split):
//   <stem>          I8  [out, in]   q = round(w / s), |q| <= 127
//   <stem>_scale    F32 [out]       s = max|w_row| / 127;  w ~ s * q
//
// int4 affine, group-wise along the input (as gpt-fast's int4 / llama.cpp
// Q4_1, with the scales kept apart from the quants):
//   <stem>_packed   U8  [out, in/2] blocks of 32 weights in 16 bytes, ggml's
//                                   Q4 order: byte k of a block holds weight k
//                                   (low nibble) and weight k + 16 (high)
//   <stem>_scales   F16 [out, in/group]  s = (max - min) / 15
//   <stem>_mins     F16 [out, in/group]  m = min;  w ~ q * s + m, q in 0..15
//
// nf4 (NormalFloat4, QLoRA, Dettmers et al., arXiv:2305.14314), group-wise:
//   <stem>_packed   U8  [out, in/2] as above; q indexes kNF4Levels
//   <stem>_scales   F16 [out, in/group]  a = max|w_group|;  w ~ a * NF4[q]
//
// <stem> is "<w>.weight" (the float tensor is replaced or removed), except on a
// tied model whose LM head and embedding use different formats: then the head
// uses "<w>.head_weight" and, when the head stays float, the embedding
// "<w>.embed_weight", so that the float "<w>.weight" each needs stays.
// Scales are F16 so that int4 with group 32 costs 4.5 + 32/32 = 5 bits per
// weight (15.6% of fp32); in must be a multiple of the group (else the tensor
// stays float).
#pragma once

#include <cstdint>

namespace udaci {

// w: [rows, cols] fp32. q: [rows, cols]; scale: [rows].
void quantize_int8_rows(const float* w, int64_t rows, int64_t cols, int8_t* q, float* scale);

// w: [rows, cols] fp32, cols % group == 0, group % 32 == 0. packed:
// [rows, cols/2]; scales, mins: [rows, cols/group] f16 bits (mins unused and
// may be null for nf4). Throws Error(kInvalidArgument) for a weight that is not
// finite or too large for f16 scales.
void quantize_int4_groups(const float* w, int64_t rows, int64_t cols, int64_t group, bool nf4,
                          uint8_t* packed, uint16_t* scales, uint16_t* mins);

// f16 bit pattern of x (round to nearest even) and back.
uint16_t float_to_half_bits(float x);

}  // namespace udaci
