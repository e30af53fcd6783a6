// Repacking into tiles, exact dequantisation from them, the portable kernel
// (the reference the SIMD ones are tested against) and the dispatch.
#include "quant/tiled_matrix.hpp"

#include <cstdlib>
#include <algorithm>
#include <cstring>

#include "core/cpu_features.hpp"
#include "core/error.hpp"
#include "core/thread_pool.hpp"
#include "core/weight_memory.hpp"
#include "io/gguf_quants.hpp"

namespace udaci {

using detail::tile_layout;
using detail::TileLayout;

namespace {

constexpr int kR = static_cast<int>(kTileRows);

inline uint16_t u16_at(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline void put_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xff);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline float h(const uint8_t* p) { return half_to_float(u16_at(p)); }

// One block of one row, decoded from the source: 32 integers and what scales
// them (raw f16 bits are copied, so values stay exact).
struct SrcBlock {
  int q[32];
  uint16_t d = 0, m = 0;  // f16 bits: scale, min (Q4_1, int4), dmin (K)
  uint8_t sc = 0, kmin = 0;  // Q4_K / Q5_K six-bit scale and min
  int8_t sc6[2] = {0, 0};  // Q6_K: the two halves' scales
};

// Block b (of 32 columns) of row r of w.
void read_block(const QMatrix& w, int64_t r, int64_t b, SrcBlock& o) {
  const uint8_t* row = w.row_data(r);
  switch (w.format) {
    case QFormat::kQ4_0:
    case QFormat::kQ4_1: {
      const bool q41 = w.format == QFormat::kQ4_1;
      const uint8_t* p = row + (q41 ? 20 : 18) * b;
      o.d = u16_at(p);
      if (q41) o.m = u16_at(p + 2);
      const uint8_t* qs = p + (q41 ? 4 : 2);
      for (int l = 0; l < 16; ++l) {
        o.q[l] = qs[l] & 0x0f;
        o.q[l + 16] = qs[l] >> 4;
      }
      return;
    }
    case QFormat::kQ5_0:
    case QFormat::kQ5_1: {
      const bool q51 = w.format == QFormat::kQ5_1;
      const uint8_t* p = row + (q51 ? 24 : 22) * b;
      o.d = u16_at(p);
      if (q51) o.m = u16_at(p + 2);
      uint32_t qh;
      std::memcpy(&qh, p + (q51 ? 4 : 2), 4);
      const uint8_t* qs = p + (q51 ? 8 : 6);
      for (int l = 0; l < 16; ++l) {
        o.q[l] = (qs[l] & 0x0f) | static_cast<int>(((qh >> l) & 1u) << 4);
        o.q[l + 16] = (qs[l] >> 4) | static_cast<int>(((qh >> (l + 16)) & 1u) << 4);
      }
      return;
    }
    case QFormat::kQ8_0: {
      const uint8_t* p = row + 34 * b;
      o.d = u16_at(p);
      for (int l = 0; l < 32; ++l) o.q[l] = static_cast<int8_t>(p[2 + l]);
      return;
    }
    case QFormat::kI8Row: {
      const int8_t* p = reinterpret_cast<const int8_t*>(row);
      for (int l = 0; l < 32; ++l) o.q[l] = 32 * b + l < w.cols ? p[32 * b + l] : 0;
      return;
    }
    case QFormat::kI4Affine:
    case QFormat::kNF4: {
      const uint8_t* qs = row + 16 * b;
      const int64_t g = r * (w.cols / w.group) + (32 * b) / w.group;
      o.d = w.scales[g];
      if (w.format == QFormat::kI4Affine) o.m = w.mins[g];
      for (int l = 0; l < 16; ++l) {
        o.q[l] = qs[l] & 0x0f;
        o.q[l + 16] = qs[l] >> 4;
      }
      return;
    }
    case QFormat::kQ4_K:
    case QFormat::kQ5_K: {
      const bool q5 = w.format == QFormat::kQ5_K;
      const uint8_t* p = row + (q5 ? 176 : 144) * (b / 8);
      const int s = static_cast<int>(b % 8);
      o.d = u16_at(p);
      o.m = u16_at(p + 2);
      uint8_t sc[8], mn[8];
      k4_scale_min(p + 4, sc, mn);
      o.sc = sc[s];
      o.kmin = mn[s];
      const uint8_t* qh = p + 16;
      const uint8_t* qs = p + (q5 ? 48 : 16);
      const int c = s / 2, k = s % 2;
      for (int l = 0; l < 32; ++l) {
        o.q[l] = (qs[32 * c + l] >> (4 * k)) & 0x0f;
        if (q5) o.q[l] |= ((qh[l] >> s) & 1) << 4;
      }
      return;
    }
    case QFormat::kQ6_K: {
      const uint8_t* p = row + 210 * (b / 8);
      const int s = static_cast<int>(b % 8);
      const uint8_t* ql = p;
      const uint8_t* qh = p + 128;
      const int hh = s / 4, part = s % 4;
      o.d = u16_at(p + 208);
      o.sc6[0] = static_cast<int8_t>(p[192 + 2 * s]);
      o.sc6[1] = static_cast<int8_t>(p[192 + 2 * s + 1]);
      for (int l = 0; l < 32; ++l) {
        const int rr = 32 * part + l;
        const int low = (ql[64 * hh + rr % 64] >> (4 * (rr / 64))) & 0x0f;
        const int high = (qh[32 * hh + l] >> (2 * part)) & 3;
        o.q[l] = low | (high << 4);
      }
      return;
    }
  }
}

// Register layouts (the header's "nib", "q8", "hb", "h2").
void put_nib(uint8_t* nib, int i, const int* q) {
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 4; ++j)
      nib[32 * k + 4 * i + j] = static_cast<uint8_t>((q[4 * k + j] & 0x0f) | ((q[16 + 4 * k + j] & 0x0f) << 4));
}
void get_nib(const uint8_t* nib, int i, int* q) {
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 4; ++j) {
      const uint8_t v = nib[32 * k + 4 * i + j];
      q[4 * k + j] = v & 0x0f;
      q[16 + 4 * k + j] = v >> 4;
    }
}
void put_q8(uint8_t* q8, int i, const int* q) {
  for (int c = 0; c < 8; ++c)
    for (int j = 0; j < 4; ++j) q8[32 * c + 4 * i + j] = static_cast<uint8_t>(static_cast<int8_t>(q[4 * c + j]));
}
void get_q8(const uint8_t* q8, int i, int* q) {
  for (int c = 0; c < 8; ++c)
    for (int j = 0; j < 4; ++j) q[4 * c + j] = static_cast<int8_t>(q8[32 * c + 4 * i + j]);
}
void put_hb(uint8_t* hb, int i, const int* q) {
  for (int j = 0; j < 4; ++j) {
    int v = 0;
    for (int k = 0; k < 4; ++k) v |= ((q[4 * k + j] >> 4) & 1) << (2 * k) | ((q[16 + 4 * k + j] >> 4) & 1) << (2 * k + 1);
    hb[4 * i + j] = static_cast<uint8_t>(v);
  }
}
void get_hb(const uint8_t* hb, int i, int* q) {
  for (int j = 0; j < 4; ++j)
    for (int k = 0; k < 4; ++k) {
      q[4 * k + j] |= ((hb[4 * i + j] >> (2 * k)) & 1) << 4;
      q[16 + 4 * k + j] |= ((hb[4 * i + j] >> (2 * k + 1)) & 1) << 4;
    }
}
void put_h2(uint8_t* h2, int i, const int* q) {
  for (int j = 0; j < 4; ++j) {
    int lo = 0, hi = 0;
    for (int k = 0; k < 4; ++k) {
      lo |= ((q[4 * k + j] >> 4) & 3) << (2 * k);
      hi |= ((q[16 + 4 * k + j] >> 4) & 3) << (2 * k);
    }
    h2[4 * i + j] = static_cast<uint8_t>(lo);
    h2[32 + 4 * i + j] = static_cast<uint8_t>(hi);
  }
}
void get_h2(const uint8_t* h2, int i, int* q) {
  for (int j = 0; j < 4; ++j)
    for (int k = 0; k < 4; ++k) {
      q[4 * k + j] |= ((h2[4 * i + j] >> (2 * k)) & 3) << 4;
      q[16 + 4 * k + j] |= ((h2[32 + 4 * i + j] >> (2 * k)) & 3) << 4;
    }
}

bool is_k_quant(QFormat f) {
  return f == QFormat::kQ4_K || f == QFormat::kQ5_K || f == QFormat::kQ6_K;
}

// Row i of a tile, block blk of superblock sp: the integers (q) and, through
// the out-parameters, what scales them, read back from the tile.
struct TileBlock {
  int q[32];
  float d = 0, m = 0;     // Q4_0/Q4_1/Q8_0/int4/nf4: scale and min
  float dsub[2] = {0, 0}; // K-quants: d * sc per half (Q4_K/Q5_K: equal)
  float msub = 0;         // Q4_K/Q5_K: dmin * m
};

void read_tile_block(QFormat f, const TileLayout& l, const uint8_t* sp, int blk, int i, TileBlock& o) {
  const uint8_t* bp = sp + l.header + blk * l.block_bytes;
  switch (f) {
    case QFormat::kQ8_0:
    case QFormat::kI8Row: get_q8(bp, i, o.q); break;
    case QFormat::kQ4_0:
    case QFormat::kQ4_1:
    case QFormat::kI4Affine:
    case QFormat::kNF4:
    case QFormat::kQ4_K: get_nib(bp, i, o.q); break;
    case QFormat::kQ5_0:
    case QFormat::kQ5_1:
    case QFormat::kQ5_K:
      get_nib(bp, i, o.q);
      get_hb(bp + 128, i, o.q);
      break;
    case QFormat::kQ6_K:
      get_nib(bp, i, o.q);
      get_h2(bp + 128, i, o.q);
      break;
  }
  if (f != QFormat::kI8Row) o.d = h(sp + 2 * i);
  if (l.off_m >= 0) o.m = h(sp + l.off_m + 2 * i);
  if (f == QFormat::kQ4_K || f == QFormat::kQ5_K) {
    o.dsub[0] = o.dsub[1] = o.d * static_cast<float>(sp[l.off_sc + 8 * blk + i]);
    o.msub = o.m * static_cast<float>(sp[l.off_kmin + 8 * blk + i]);
  } else if (f == QFormat::kQ6_K) {
    for (int hf = 0; hf < 2; ++hf)
      o.dsub[hf] = o.d * static_cast<float>(static_cast<int8_t>(sp[l.off_sc + 8 * (2 * blk + hf) + i]));
  }
}

}  // namespace

namespace detail {
TileLayout tile_layout(QFormat f, int64_t sb_cols) {
  TileLayout l;
  l.blocks = static_cast<int>(sb_cols / 32);
  switch (f) {
    case QFormat::kQ4_0: l.header = 16; l.block_bytes = 128; break;
    case QFormat::kQ4_1: l.header = 32; l.off_m = 16; l.block_bytes = 128; break;
    case QFormat::kQ5_0: l.header = 16; l.block_bytes = 160; break;
    case QFormat::kQ5_1: l.header = 32; l.off_m = 16; l.block_bytes = 160; break;
    case QFormat::kQ8_0: l.header = 16; l.block_bytes = 256; break;
    case QFormat::kI8Row: l.header = 0; l.block_bytes = 256; break;
    case QFormat::kI4Affine: l.header = 32; l.off_m = 16; l.block_bytes = 128; break;
    case QFormat::kNF4: l.header = 16; l.block_bytes = 128; break;
    case QFormat::kQ4_K:
    case QFormat::kQ5_K:
      l.header = 16 + 16 + 64 + 64;
      l.off_m = 16;
      l.off_sc = 32;
      l.off_kmin = 96;
      l.block_bytes = f == QFormat::kQ4_K ? 128 : 160;
      break;
    case QFormat::kQ6_K: l.header = 16 + 128; l.off_sc = 16; l.block_bytes = 192; break;
  }
  return l;
}
}  // namespace detail

TiledMatrix repack_tiles(const QMatrix& w) {
  TiledMatrix t;
  t.format = w.format;
  t.rows = w.rows;
  t.cols = w.cols;
  t.tiles = (w.rows + kTileRows - 1) / kTileRows;
  const QFormat f = w.format;
  t.sb_cols = is_k_quant(f) ? 256 : (f == QFormat::kI4Affine || f == QFormat::kNF4) ? w.group : 32;
  if (f == QFormat::kI8Row) {
    t.padded_cols = (w.cols + 31) / 32 * 32;
  } else {
    UDACI_CHECK_S(Status::kBadModelFile, w.cols > 0 && w.cols % t.sb_cols == 0,
                  "{} weight: {} input features is not a multiple of its block of {}",
                  qformat_name(f), w.cols, t.sb_cols);
    t.padded_cols = w.cols;
  }
  const TileLayout l = tile_layout(f, t.sb_cols);
  t.sb_bytes = l.header + l.blocks * l.block_bytes;
  const int64_t nsb = t.padded_cols / t.sb_cols;
  t.tile_bytes = nsb * t.sb_bytes;
  const size_t total = static_cast<size_t>(t.tiles * t.tile_bytes);
  t.data = allocate_weight_memory(total);  // zeroed; 2 MB pages where the system has them
  if (f == QFormat::kI8Row) t.row_scale.assign(static_cast<size_t>(t.tiles * kTileRows), 0.0f);

  SrcBlock src;
  for (int64_t ti = 0; ti < t.tiles; ++ti) {
    uint8_t* tp = t.data.get() + ti * t.tile_bytes;
    for (int i = 0; i < kR; ++i) {
      const int64_t r = ti * kTileRows + i;
      if (r >= w.rows) break;
      if (f == QFormat::kI8Row) t.row_scale[static_cast<size_t>(r)] = w.row_scale[r];
      for (int64_t s = 0; s < nsb; ++s) {
        uint8_t* sp = tp + s * t.sb_bytes;
        for (int blk = 0; blk < l.blocks; ++blk) {
          read_block(w, r, s * l.blocks + blk, src);
          uint8_t* bp = sp + l.header + blk * l.block_bytes;
          switch (f) {
            case QFormat::kQ8_0:
            case QFormat::kI8Row: put_q8(bp, i, src.q); break;
            case QFormat::kQ5_0:
            case QFormat::kQ5_1:
            case QFormat::kQ5_K:
              put_nib(bp, i, src.q);
              put_hb(bp + 128, i, src.q);
              break;
            case QFormat::kQ6_K:
              put_nib(bp, i, src.q);
              put_h2(bp + 128, i, src.q);
              break;
            default: put_nib(bp, i, src.q); break;
          }
          if (f == QFormat::kQ4_K || f == QFormat::kQ5_K) {
            sp[l.off_sc + 8 * blk + i] = src.sc;
            sp[l.off_kmin + 8 * blk + i] = src.kmin;
          } else if (f == QFormat::kQ6_K) {
            sp[l.off_sc + 8 * (2 * blk) + i] = static_cast<uint8_t>(src.sc6[0]);
            sp[l.off_sc + 8 * (2 * blk + 1) + i] = static_cast<uint8_t>(src.sc6[1]);
          }
        }
        if (f != QFormat::kI8Row) put_u16(sp + 2 * i, src.d);
        if (l.off_m >= 0) put_u16(sp + l.off_m + 2 * i, src.m);
      }
    }
  }
  return t;
}

void tiled_dequantize_row(const TiledMatrix& w, int64_t r, float* dst) {
  UDACI_CHECK(r >= 0 && r < w.rows, "row {} is outside the weight's {} rows", r, w.rows);
  const TileLayout l = tile_layout(w.format, w.sb_cols);
  const uint8_t* tp = w.tile(r / kTileRows);
  const int i = static_cast<int>(r % kTileRows);
  TileBlock tb;
  for (int64_t c0 = 0; c0 < w.cols; c0 += 32) {
    const int64_t s = c0 / w.sb_cols;
    const int blk = static_cast<int>((c0 % w.sb_cols) / 32);
    read_tile_block(w.format, l, tp + s * w.sb_bytes, blk, i, tb);
    const int len = static_cast<int>(std::min<int64_t>(32, w.cols - c0));
    float* o = dst + c0;
    // The same float operations as the source formats' dequantisers
    // (io/gguf_quants.cpp, qmatrix_dequantize_row), so values are identical.
    for (int e = 0; e < len; ++e) {
      const int q = tb.q[e];
      switch (w.format) {
        case QFormat::kQ4_0: o[e] = tb.d * static_cast<float>(q - 8); break;
        case QFormat::kQ4_1:
        case QFormat::kQ5_1: o[e] = tb.d * static_cast<float>(q) + tb.m; break;
        case QFormat::kQ5_0: o[e] = tb.d * static_cast<float>(q - 16); break;
        case QFormat::kQ8_0: o[e] = tb.d * static_cast<float>(q); break;
        case QFormat::kI8Row: o[e] = static_cast<float>(q) * w.row_scale[static_cast<size_t>(r)]; break;
        case QFormat::kI4Affine: o[e] = static_cast<float>(q) * tb.d + tb.m; break;
        case QFormat::kNF4: o[e] = tb.d * kNF4Levels[q]; break;
        case QFormat::kQ4_K:
        case QFormat::kQ5_K: o[e] = tb.dsub[0] * static_cast<float>(q) - tb.msub; break;
        case QFormat::kQ6_K: o[e] = tb.dsub[e / 16] * static_cast<float>(q - 32); break;
      }
    }
  }
}

namespace detail {

// Row by row, block by block, with the same integer sums and the same float
// scaling as the SIMD kernels (which differ only in the order of the float
// additions and in fused multiply-adds).
void tgemm_scalar(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1) {
  const TileLayout l = tile_layout(w.format, w.sb_cols);
  const int64_t nb = a.blocks;
  const int64_t nsb = w.padded_cols / w.sb_cols;
  TileBlock tb;
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* tp = w.tile(t);
    for (int i = 0; i < kR; ++i) {
      const int64_t r = t * kTileRows + i;
      if (r >= w.rows) break;
      for (int64_t j = 0; j < a.n; ++j) {
        float acc = 0.0f;
        for (int64_t s = 0; s < nsb; ++s) {
          for (int blk = 0; blk < l.blocks; ++blk) {
            const int64_t b = s * l.blocks + blk;
            read_tile_block(w.format, l, tp + s * w.sb_bytes, blk, i, tb);
            const int8_t* x = a.q.data() + (j * nb + b) * 32;
            const float xd = a.d[static_cast<size_t>(j * nb + b)];
            const float xs = a.s[static_cast<size_t>(j * nb + b)];
            const int32_t* x16 = a.s16.data() + 2 * (j * nb + b);
            int32_t dot[2] = {0, 0};
            for (int e = 0; e < 32; ++e) {
              const int q = w.format == QFormat::kNF4 ? kNF4LevelsI8[tb.q[e]] : tb.q[e];
              dot[e / 16] += q * x[e];
            }
            const int32_t sum = dot[0] + dot[1];
            switch (w.format) {
              case QFormat::kQ4_0: acc += tb.d * xd * static_cast<float>(sum - 8 * (x16[0] + x16[1])); break;
              case QFormat::kQ8_0: acc += tb.d * xd * static_cast<float>(sum); break;
              case QFormat::kI8Row: acc += xd * static_cast<float>(sum); break;
              case QFormat::kQ5_0: acc += tb.d * xd * static_cast<float>(sum - 16 * (x16[0] + x16[1])); break;
              case QFormat::kQ4_1:
              case QFormat::kQ5_1:
              case QFormat::kI4Affine: acc += tb.d * xd * static_cast<float>(sum) + tb.m * xs; break;
              case QFormat::kNF4: acc += tb.d * (1.0f / 127.0f) * xd * static_cast<float>(sum); break;
              case QFormat::kQ4_K:
              case QFormat::kQ5_K: acc += tb.dsub[0] * xd * static_cast<float>(sum) - tb.msub * xs; break;
              case QFormat::kQ6_K:
                acc += tb.dsub[0] * xd * static_cast<float>(dot[0] - 32 * x16[0]) +
                       tb.dsub[1] * xd * static_cast<float>(dot[1] - 32 * x16[1]);
                break;
            }
          }
        }
        if (w.format == QFormat::kI8Row) acc *= w.row_scale[static_cast<size_t>(r)];
        y[j * ldy + r] = acc;
      }
    }
  }
}

}  // namespace detail

void bf16_activations(const float* x, int64_t n, int64_t cols, BActs& out) {
  UDACI_CHECK_S(Status::kInternal, bf16_prompt_rows(), "bf16 activations without AMX-BF16");
  out.n = n;
  out.cols = cols;
  out.stride = (cols + 31) / 32 * 32;
  const int64_t rows = (n + 31) / 32 * 32;
  // Reused across calls: the rows write their own padding columns; only the
  // padding rows are zeroed here.
  if (out.buf.size() < static_cast<size_t>(rows * out.stride + 32)) out.buf.resize(static_cast<size_t>(rows * out.stride + 32));
  const uintptr_t at = reinterpret_cast<uintptr_t>(out.buf.data());
  out.x = out.buf.data() + ((64 - at % 64) % 64) / 2;
  std::memset(out.x + n * out.stride, 0, static_cast<size_t>((rows - n) * out.stride) * sizeof(uint16_t));
#if defined(UDACI_HAVE_AMX)
  parallel_for(0, n, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols)),
               [&](int64_t r0, int64_t r1) { detail::bf16_activations_amx(x, r0, r1, cols, out); });
#endif
}

void tiled_gemm_bf16(const TiledMatrix& w, const BActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1) {
  UDACI_CHECK(a.cols == w.cols, "quantised kernel: input has {} features, the weight {}", a.cols, w.cols);
  UDACI_CHECK_S(Status::kInternal, bf16_prompt_rows() && a.stride == w.padded_cols,
                "bf16 tile products without AMX-BF16 or with a padding mismatch");
#if defined(UDACI_HAVE_AMX)
  detail::tgemm_amx_bf16(w, a, y, ldy, t0, t1);
#else
  (void)y;
  (void)ldy;
  (void)t0;
  (void)t1;
#endif
}

void tiled_gemm(const TiledMatrix& w, const QActs& a, float* y, int64_t ldy, int64_t t0, int64_t t1,
                KernelIsa isa) {
  UDACI_CHECK(a.cols == w.cols, "quantised kernel: input has {} features, the weight {}", a.cols,
              w.cols);
  switch (isa) {
    case KernelIsa::kAmx:
#if defined(UDACI_HAVE_AMX)
      detail::tgemm_amx(w, a, y, ldy, t0, t1);
      return;
#else
      [[fallthrough]];
#endif
    case KernelIsa::kAvx512: detail::tgemm_avx512(w, a, y, ldy, t0, t1); return;
    case KernelIsa::kAvx2: detail::tgemm_avx2(w, a, y, ldy, t0, t1); return;
    case KernelIsa::kScalar: detail::tgemm_scalar(w, a, y, ldy, t0, t1); return;
  }
}

}  // namespace udaci
