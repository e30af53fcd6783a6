// A block-quantised weight matrix as stored (the source the CPU kernels'
// tiles are repacked from, quant/tiled_matrix.hpp), and the int8 activations
// those kernels multiply it by: y[n, rows] = x[n, cols] W^T.
//
// Every format is a sequence of blocks of 32 weights along a row (the block
// size of ggml's legacy formats and sub-block of its K-quants, and the
// smallest group of ours): a block gives 32 small integers q, a scale d and,
// for the affine formats, a min m, with w = d*q (+ m).
//
// Activations are quantised on the fly to int8 per block of 32, symmetric
// (x ~ dx * qx, dx = max|x| / 127), as llama.cpp does for its Q8_0 / Q8_1
// activations; a block's dot product is then an exact integer sum (AVX2
// maddubs / AVX-512 VNNI dpbusd), scaled once in float. Accuracy consequence:
// each activation carries a rounding error of at most dx/2 = max|x_block|/254,
// i.e. the result equals W applied to a slightly perturbed x; tests bound it
// (tests/unit/test_quant_kernels.cpp).
//
// Formats (layouts of ours are documented in quant/quant_formats.hpp):
//   kQ8_0, kQ4_0, kQ4_1, GGUF blocks of 32 as stored (ggml-common.h
//   kQ5_0, kQ5_1         block_q8_0, block_q4_0, ...).
//   kI8Row               int8 per output channel, one fp32 scale per row;
//                        any column count (a tail block shorter than 32).
//   kI4Affine            packed nibbles + f16 scale and min per group.
//   kNF4                 packed nibbles indexing the NormalFloat4 code book
//                        + f16 absmax per group (QLoRA, arXiv:2305.14314).
//   kQ4_K, kQ5_K, kQ6_K  GGUF K-quant super-blocks of 256 as stored
//                        (block_q4_K, block_q5_K, block_q6_K).
// The kernels run these formats repacked into tiles of 8 rows
// (quant/tiled_matrix.hpp); a QMatrix is the stored source they are made from
// and what embedding lookups and the CUDA path read.
#pragma once

#include <cstdint>
#include <vector>

#include "core/cpu_features.hpp"

namespace udaci {

enum class QFormat { kQ8_0, kQ4_0, kQ4_1, kQ5_0, kQ5_1, kI8Row, kI4Affine, kNF4, kQ4_K, kQ5_K, kQ6_K };

const char* qformat_name(QFormat f);

struct QMatrix {
  QFormat format = QFormat::kI8Row;
  int64_t rows = 0;  // out_features
  int64_t cols = 0;  // in_features (a multiple of 32 except for kI8Row; of 256 for K-quants)
  // Quantised data, row by row: GGUF rows hold whole blocks (scales inline);
  // ours hold only the quants (kI8Row: cols bytes; 4-bit: cols/2 bytes).
  const uint8_t* data = nullptr;
  int64_t row_bytes = 0;
  // When set, row r (Hugging Face order) is stored at row row_order[r]: GGUF
  // Q/K projections are row-permuted (WeightStore::stored_row_order).
  const int64_t* row_order = nullptr;
  // kI4Affine / kNF4: f16 bit patterns [rows, cols / group]; mins only affine.
  const uint16_t* scales = nullptr;
  const uint16_t* mins = nullptr;
  int64_t group = 32;  // 32, 64 or 128
  // kI8Row: fp32 [rows].
  const float* row_scale = nullptr;

  const uint8_t* row_data(int64_t r) const {
    return data + (row_order ? row_order[r] : r) * row_bytes;
  }
};

// Activations quantised per block of 32: rows padded with zeros to whole
// blocks. q, d and s also hold zero rows from n up to a multiple of
// kQActsRowGroup (the AMX kernel's tile loads read 16 rows at a time).
inline constexpr int64_t kQActsRowGroup = 16;
struct QActs {
  int64_t n = 0;
  int64_t cols = 0;
  int64_t blocks = 0;      // per row: ceil(cols / 32)
  std::vector<int8_t> q;   // [n rounded up to kQActsRowGroup, blocks * 32]
  std::vector<float> d;    // [same rows, blocks] scale of each block
  std::vector<float> s;    // [same rows, blocks] d * sum(q): the affine formats' min term
  std::vector<int32_t> s16;  // [n, blocks * 2] sum(q) over each half block of 16
};

// x: [n, cols] fp32 row-major.
void quantize_activations(const float* x, int64_t n, int64_t cols, QActs& out, KernelIsa isa);

// Row r of W as the format defines it (the exact values, in fp32).
void qmatrix_dequantize_row(const QMatrix& w, int64_t r, float* dst);

// The 16 NF4 levels (bitsandbytes' NF4 code book, normalised to [-1, 1]) and
// the int8 levels the integer kernels use in their place: round(127 * level).
// Using them costs at most 0.5/127 of a group's absmax per weight.
extern const float kNF4Levels[16];
extern const int8_t kNF4LevelsI8[16];

namespace detail {
void quantize_acts_scalar(const float* x, int64_t r0, int64_t r1, int64_t cols, QActs& out);
void quantize_acts_avx2(const float* x, int64_t r0, int64_t r1, int64_t cols, QActs& out);
}  // namespace detail

}  // namespace udaci
