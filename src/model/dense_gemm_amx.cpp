// AMX-BF16 tile products for the prompt rows of bf16 dense projections
// (model/dense_gemm.hpp dense_gemm_bf16_prompt, issue #22).
//
// The weights are the A operand as stored: a tile is 16 weight rows of 32
// bf16 (64 bytes each, one row stride apart), so nothing is repacked or
// held twice. The activations, rounded to bf16 once per call, are the B
// operand: for each 32-column step, 16 rows of pairs (word 2m + j: column 2kk
// + j of activation row m). C[n][m] sums fp32 over the whole row in the tile
// and is written to y transposed. Two weight groups times two activation
// groups keep four products independent per column step.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/amx_tiles.hpp"
#include "model/dense_gemm.hpp"

namespace udaci {
namespace detail {

namespace {

uint16_t* aligned64(std::vector<uint16_t>& v, size_t words) {
  if (v.size() < words + 32) v.resize(words + 32);
  const uintptr_t at = reinterpret_cast<uintptr_t>(v.data());
  return v.data() + ((64 - at % 64) % 64) / 2;
}

// C (16 weight rows x 16 activation rows) into y[m * ldy + r0 + n].
void put_transposed(const float* c, float* y, int64_t ldy, int64_t r0, int nvalid, int mvalid) {
  for (int m = 0; m < mvalid; ++m)
    for (int n = 0; n < nvalid; ++n) y[m * ldy + r0 + n] = c[n * 16 + m];
}

// Weight rows [r, r + 16 * WG) of w (pointers a[0..WG)), activation groups
// b[0..AG) (16 rows each), all ksteps: WG x AG products per step.
template <int WG, int AG>
void block(const uint16_t* const* a, int64_t astride, const uint16_t* const* b, int64_t ksteps, float* y,
           int64_t ldy, int64_t j, int64_t n, int64_t r, const int* nvalid) {
  alignas(64) float c[4][256];
  bf16_tile_sums<WG, AG>(a, astride, b, ksteps, c);
  for (int g = 0; g < WG; ++g)
    for (int h = 0; h < AG; ++h) {
      const int64_t m0 = j + 16 * h;
      const int mvalid = static_cast<int>(std::min<int64_t>(16, n - m0));
      if (mvalid > 0) put_transposed(c[2 * g + h], y + m0 * ldy, ldy, r + 16 * g, nvalid[g], mvalid);
    }
}

}  // namespace

void bf16_pairs_amx(const float* x, int64_t n, int64_t in, std::vector<uint16_t>& buf, uint16_t** out) {
  const int64_t groups = (n + 31) / 32 * 2;  // activation groups of 16 rows, an even count
  const int64_t ksteps = in / 32;
  uint16_t* dst = aligned64(buf, static_cast<size_t>(groups * ksteps * 512));
  *out = dst;
  uint32_t* d32 = reinterpret_cast<uint32_t*>(dst);
  std::memset(dst, 0, static_cast<size_t>(groups * ksteps * 512) * sizeof(uint16_t));
  alignas(64) uint32_t pairs[16];
  for (int64_t m = 0; m < n; ++m) {
    const int64_t g = m / 16, mi = m % 16;
    for (int64_t ks = 0; ks < ksteps; ++ks) {
      const float* src = x + m * in + ks * 32;
      _mm512_store_si512(pairs, reinterpret_cast<__m512i>(
                                    _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 16), _mm512_loadu_ps(src))));
      uint32_t* blk = d32 + (g * ksteps + ks) * 256;
      for (int kk = 0; kk < 16; ++kk) blk[kk * 16 + mi] = pairs[kk];
    }
  }
}

void dense_gemm_bf16_amx(const uint16_t* w, int64_t out, int64_t in, const uint16_t* xb, int64_t n, float* y,
                         int64_t r0, int64_t r1, int64_t ldy) {
  const int64_t ksteps = in / 32;
  const int64_t groups = (n + 31) / 32 * 2;
  thread_local std::vector<uint16_t> pad_buf;
  std::vector<uint16_t>& pad_store = *opaque(&pad_buf);
  configure_bf16_tiles();
  for (int64_t r = r0; r < r1; r += 32) {
    // Weight groups of 16 rows; a group running past `out` (or r1) is read
    // from a zero-padded copy (a tile load reads 16 whole rows).
    const uint16_t* a[2] = {nullptr, nullptr};
    int nvalid[2] = {0, 0};
    int64_t astride = in * 2;
    const int wg = r + 16 < r1 ? 2 : 1;
    bool padded = false;
    for (int g = 0; g < wg; ++g) {
      const int64_t rg = r + 16 * g;
      nvalid[g] = static_cast<int>(std::min<int64_t>(16, r1 - rg));
      if (nvalid[g] < 16) padded = true;
    }
    if (padded) {
      uint16_t* p = aligned64(pad_store, static_cast<size_t>(32 * in));
      std::memset(p, 0, static_cast<size_t>(32 * in) * sizeof(uint16_t));
      for (int g = 0; g < wg; ++g)
        std::memcpy(p + 16 * g * in, w + (r + 16 * g) * in, static_cast<size_t>(nvalid[g] * in) * sizeof(uint16_t));
      for (int g = 0; g < wg; ++g) a[g] = p + 16 * g * in;
    } else {
      for (int g = 0; g < wg; ++g) a[g] = w + (r + 16 * g) * in;
    }
    for (int64_t gj = 0; gj < groups; gj += 2) {
      const int64_t j = gj * 16;
      if (j >= n) break;
      const uint16_t* b[2] = {xb + gj * ksteps * 512, xb + (gj + 1) * ksteps * 512};
      const bool ag2 = n - j > 16;
      if (wg == 2 && ag2) {
        block<2, 2>(a, astride, b, ksteps, y, ldy, j, n, r, nvalid);
      } else if (wg == 2) {
        block<2, 1>(a, astride, b, ksteps, y, ldy, j, n, r, nvalid);
      } else if (ag2) {
        block<1, 2>(a, astride, b, ksteps, y, ldy, j, n, r, nvalid);
      } else {
        block<1, 1>(a, astride, b, ksteps, y, ldy, j, n, r, nvalid);
      }
    }
  }
  _tile_release();
  (void)out;
}

}  // namespace detail
}  // namespace udaci
