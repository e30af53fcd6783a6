// Shared by the AMX kernels (files named *_amx.cpp, compiled with the tile
// instructions; include it from nowhere else): the tile configuration block
// and the bf16 tile products that quant/tgemm_amx.cpp (prompt rows of the
// quantised formats) and model/dense_gemm_amx.cpp (prompt rows of bf16
// weights) both run.
#pragma once

#include <immintrin.h>

#include <cstdint>

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() (`__Y = __Y`),
// which -Wuninitialized reports wherever they are inlined (for the rest of
// the including file).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace udaci {
namespace detail {

// The 64-byte block ldtilecfg reads (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// ldtilecfg of c. GCC 12 does not see the instruction read the whole block:
// with a constant-propagated copy of a configuring function it kept the
// palette byte and dropped the stores of the rows and widths, and the first
// tile load raised SIGILL. The barrier makes every store of c happen first.
inline void load_tile_config(const TileConfig& c) {
  asm volatile("" : : "r"(&c) : "memory");
  _tile_loadconfig(&c);
}

// p, hidden from the optimiser: given a thread_local's address, GCC clones
// the kernels with it as a constant and recomputes it (__tls_get_addr)
// inside their loops.
template <typename T>
inline T* opaque(T* p) {
  asm("" : "+r"(p));
  return p;
}

// Tile registers 0-3: C, 4-5: A, 6-7: B, all 16 rows x 64 bytes (the
// layout bf16_tile_sums uses).
inline void configure_bf16_tiles() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.colsb[t] = 64;
    c.rows[t] = 16;
  }
  load_tile_config(c);
}

// Work for the vector units between the tile multiplies of bf16_tile_sums:
// none.
struct NoSideWork {
  void operator()() const {}
};

// c[2 i + j] = sum over `ksteps` steps of 32 columns of A_i x B_j (fp32,
// 16 x 16 each): A_i 16 rows of 32 bf16 (astride bytes apart, 32 columns
// further each step), B_j the pair layout (16 rows of 64 bytes, 1 KB further
// each step). Four independent products per step when NA = NB = 2. side()
// runs after each step's multiplies are issued: the tile unit works through
// them (16 cycles each) while the core runs side's vector instructions.
template <int NA, int NB, class Side = NoSideWork>
inline void bf16_tile_sums(const uint16_t* const* a, int64_t astride, const uint16_t* const* b, int64_t ksteps,
                           float (&c)[4][256], Side&& side = Side()) {
  static_assert(NA >= 1 && NA <= 2 && NB >= 1 && NB <= 2);
  _tile_zero(0);
  if constexpr (NB == 2) _tile_zero(1);
  if constexpr (NA == 2) _tile_zero(2);
  if constexpr (NA == 2 && NB == 2) _tile_zero(3);
  for (int64_t ks = 0; ks < ksteps; ++ks) {
    _tile_loadd(4, a[0] + ks * 32, astride);
    _tile_loadd(6, b[0] + ks * 512, 64);
    if constexpr (NB == 2) _tile_loadd(7, b[1] + ks * 512, 64);
    if constexpr (NA == 2) _tile_loadd(5, a[1] + ks * 32, astride);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NB == 2) _tile_dpbf16ps(1, 4, 7);
    if constexpr (NA == 2) _tile_dpbf16ps(2, 5, 6);
    if constexpr (NA == 2 && NB == 2) _tile_dpbf16ps(3, 5, 7);
    side();
  }
  _tile_stored(0, c[0], 64);
  if constexpr (NB == 2) _tile_stored(1, c[1], 64);
  if constexpr (NA == 2) _tile_stored(2, c[2], 64);
  if constexpr (NA == 2 && NB == 2) _tile_stored(3, c[3], 64);
}

}  // namespace detail
}  // namespace udaci
