// Quantised weights repacked at load into tiles of 8 rows, and the one kernel
// that runs them for every row count: y[n, rows] = x[n, cols] W^T (issue #22).
//
// Why tiles. A block format read as stored (one row at a time) spends most of
// its time around the integer dot product: two f16 scale conversions, a
// broadcast and a horizontal sum per row and block. In a tile, 8 rows'
// quants are interleaved in 4-byte chunks, so one 256-bit register holds the
// same 4 columns of 8 rows: a broadcast of 4 activation bytes times that
// register (maddubs / VNNI dpbusd) gives 8 rows' partial dot products in 8
// lanes at once, the 8 rows' scales are one vector load, and the accumulator
// *is* the 8 outputs (no horizontal sum). llama.cpp does the same for Q4_0
// (its q4_0_8x8 repack); here every format has a tile layout, including the
// K-quants that llama.cpp's quantiser writes into Q4_0 / Q4_K_M files (the
// Q6_K head of every Q4_0 file ran dequantised to fp32 before).
//
// Values are exactly the stored ones: a tile row dequantises to the same
// floats as the source format (tiled_dequantize_row, tested bit for bit), and
// the kernel's integer sums are exact; the float scaling differs from the
// scalar reference only in rounding order.
//
// The kernel (tiled_gemm) quantises nothing itself: activations come in as
// QActs (int8 per block of 32, quant/qmatrix.hpp). One pass over a tile's
// weights serves up to 4 activation rows (tokens), so prompts and batched
// decode steps read each weight once per 4 rows from L1 rather than once per
// row from memory.
//
// Layout. A tile is `tile_bytes` bytes: superblocks of `sb_cols` columns, each
// `sb_bytes` long. Within a superblock (offsets in bytes; f16 = IEEE half, one
// per tile row i = 0..7; "nib" = 128 bytes of 4-bit quants for one block of
// 32 columns, see below):
//   kQ4_0    sb 32:  d[8] f16 | nib                      value d * (u - 8)
//   kQ4_1    sb 32:  d[8] | m[8] | nib                   value d * u + m
//   kQ5_0    sb 32:  d[8] | nib, hb                      value d * (u - 16)
//   kQ5_1    sb 32:  d[8] | m[8] | nib, hb               value d * u + m
//   kQ8_0    sb 32:  d[8] | q8 (256)                     value d * q
//   kI8Row   sb 32:  q8 (256); per-row fp32 scales in row_scale
//   kI4Affine sb group: d[8] | m[8] | nib x group/32     value d * u + m
//   kNF4     sb group: absmax[8] | nib x group/32        value absmax * level[u]
//   kQ4_K    sb 256: d[8] | dmin[8] | sc[8 blocks][8] u8 | m[8][8] u8 | nib x 8
//                                                        value d*sc * u - dmin*m
//   kQ5_K    sb 256: as kQ4_K, each block's nib followed by hb (32)
//   kQ6_K    sb 256: d[8] | sc[16 halves][8] s8 | per block nib, h2 (64)
//                                                        value d*sc * (u - 32)
// nib: 4 registers of 32 bytes; byte 4i + j of register k holds, in its low
// nibble, column 4k + j of row i and, in its high nibble, column 16 + 4k + j
// (ggml's Q4 order within a block: low nibbles are columns 0..15).
// q8: 8 registers; byte 4i + j of register c is column 4c + j of row i.
// hb (Q5_0 / Q5_1 / Q5_K fifth bits): byte 4i + j, bit 2k: column 4k + j; bit 2k + 1:
// column 16 + 4k + j.
// h2 (Q6_K high two bits): 2 registers; in the first, bits 2k..2k+1 of byte
// 4i + j belong to column 4k + j; in the second, to column 16 + 4k + j.
// Rows past `rows` in the last tile are zero.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "quant/qmatrix.hpp"

namespace udaci {

inline constexpr int64_t kTileRows = 8;

struct TiledMatrix {
  QFormat format = QFormat::kQ8_0;
  int64_t rows = 0;
  int64_t cols = 0;         // logical columns
  int64_t padded_cols = 0;  // a multiple of sb_cols (kI8Row pads its tail with zeros)
  int64_t tiles = 0;        // ceil(rows / 8)
  int64_t sb_cols = 32;
  int64_t sb_bytes = 0;
  int64_t tile_bytes = 0;
  // 64-byte aligned storage of tiles * tile_bytes bytes.
  std::shared_ptr<uint8_t> data;
  std::vector<float> row_scale;  // kI8Row: [tiles * 8], zero past rows

  const uint8_t* tile(int64_t t) const { return data.get() + t * tile_bytes; }
  int64_t bytes() const {
    return tiles * tile_bytes + static_cast<int64_t>(row_scale.size() * sizeof(float));
  }
};

// Repacks w (rows in w's Hugging Face order: row_order is applied here).
// Error(kBadModelFile) when cols does not fit the format (not a multiple of
// 32, or of 256 for the K-quants, or of the group).
TiledMatrix repack_tiles(const QMatrix& w);

// Row r as the source format defines it (bit-identical to
// qmatrix_dequantize_row of the source).
void tiled_dequantize_row(const TiledMatrix& w, int64_t r, float* dst);

// y[j * ldy + r] for every activation row j < a.n and output rows r in
// [8 * t0, min(rows, 8 * t1)): tiles [t0, t1).
void tiled_gemm(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1,
                KernelIsa isa);

// Prompt rows at bf16 (issue #22). On a CPU with AMX-BF16
// (core/cpu_features.hpp bf16_prompt_rows) the rows of a prompt skip the
// int8 activation blocks: activations are rounded to bf16, each weight panel
// is dequantised to bf16 once per call (its scales and mins applied, then
// rounded) and the tile unit sums fp32 over the whole row. Numbers differ
// from the int8 kernels by rounding (bf16 keeps 8 bits of every activation
// and weight), so a row must always take the same path: LlamaModel sends a
// prompt's rows here and decode rows to tiled_gemm, whatever the batch holds.
struct BActs {
  int64_t n = 0;
  int64_t cols = 0;
  int64_t stride = 0;       // cols rounded up to 32
  std::vector<uint16_t> buf;  // holds x, 64-byte aligned (a tile row is one cache line)
  uint16_t* x = nullptr;      // [n rounded up to 32, stride] bf16 bits; zero padding
};

// x: [n, cols] fp32 row-major, rounded to nearest even. Only when
// bf16_prompt_rows().
void bf16_activations(const float* x, int64_t n, int64_t cols, BActs& out);

// As tiled_gemm, for BActs rows. Only when bf16_prompt_rows().
void tiled_gemm_bf16(const TiledMatrix& w, const BActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1);

namespace detail {
// Byte offsets within a superblock (the table above).
struct TileLayout {
  int blocks = 1;       // blocks of 32 columns per superblock
  int header = 0;       // bytes before the first block
  int block_bytes = 0;  // per block: quants (+ Q5_K fifth bits / Q6_K high bits)
  int off_m = -1;       // f16 m[8] (Q4_1, int4) or dmin[8] (Q4_K, Q5_K)
  int off_sc = -1;      // K-quants' sub-block scales
  int off_kmin = -1;    // Q4_K / Q5_K sub-block mins
};
TileLayout tile_layout(QFormat f, int64_t sb_cols);

void tgemm_scalar(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1);
void tgemm_avx2(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1);
void tgemm_avx512(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1);
// AMX-INT8 tile products for 8 or more activation rows (fewer: tgemm_avx512).
void tgemm_amx(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1);
void tgemm_amx_bf16(const TiledMatrix& w, const BActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1);
void bf16_activations_amx(const float* x, int64_t r0, int64_t r1, int64_t cols, BActs& out);
}  // namespace detail

}  // namespace udaci
