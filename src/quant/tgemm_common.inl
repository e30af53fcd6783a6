// Register helpers shared by the tiled kernels (quant/tiled_matrix.hpp):
// loads, f16 / u8 / s8 to fp32 conversions, and unpack<F>, which turns one
// block of a tile into 8 registers of bytes, register c holding columns
// 4c .. 4c + 3 of the tile's 8 rows (the layout the VNNI / AMX dot products
// read). Included inside namespace udaci::detail's anonymous namespace by
// tgemm_simd.inl and tgemm_amx.cpp, which are compiled with AVX2 or AVX-512
// flags.
inline __m256i ld(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

inline __m256 f16x8(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 u8x8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline __m256 s8x8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <int S>
inline __m256i shift16(__m256i v) {
  if constexpr (S > 0) return _mm256_slli_epi16(v, S);
  else if constexpr (S < 0) return _mm256_srli_epi16(v, -S);
  else return v;
}

// The 8 registers of block bp: w[c] holds columns 4c .. 4c + 3 of the 8 rows.
template <QFormat F>
inline void unpack(const uint8_t* bp, __m256i* w) {
  if constexpr (F == QFormat::kQ8_0 || F == QFormat::kI8Row) {
    for (int c = 0; c < 8; ++c) w[c] = ld(bp + 32 * c);
  } else {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int k = 0; k < 4; ++k) {
      const __m256i b = ld(bp + 32 * k);
      w[k] = _mm256_and_si256(b, m4);
      w[k + 4] = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
    }
    if constexpr (F == QFormat::kQ5_0 || F == QFormat::kQ5_1 || F == QFormat::kQ5_K) {
      const __m256i hb = ld(bp + 128);
      const __m256i b4 = _mm256_set1_epi8(0x10);
      w[0] = _mm256_or_si256(w[0], _mm256_and_si256(shift16<4>(hb), b4));
      w[4] = _mm256_or_si256(w[4], _mm256_and_si256(shift16<3>(hb), b4));
      w[1] = _mm256_or_si256(w[1], _mm256_and_si256(shift16<2>(hb), b4));
      w[5] = _mm256_or_si256(w[5], _mm256_and_si256(shift16<1>(hb), b4));
      w[2] = _mm256_or_si256(w[2], _mm256_and_si256(hb, b4));
      w[6] = _mm256_or_si256(w[6], _mm256_and_si256(shift16<-1>(hb), b4));
      w[3] = _mm256_or_si256(w[3], _mm256_and_si256(shift16<-2>(hb), b4));
      w[7] = _mm256_or_si256(w[7], _mm256_and_si256(shift16<-3>(hb), b4));
    } else if constexpr (F == QFormat::kQ6_K) {
      const __m256i h0 = ld(bp + 128), h1 = ld(bp + 160);
      const __m256i b45 = _mm256_set1_epi8(0x30);
      w[0] = _mm256_or_si256(w[0], _mm256_and_si256(shift16<4>(h0), b45));
      w[1] = _mm256_or_si256(w[1], _mm256_and_si256(shift16<2>(h0), b45));
      w[2] = _mm256_or_si256(w[2], _mm256_and_si256(h0, b45));
      w[3] = _mm256_or_si256(w[3], _mm256_and_si256(shift16<-2>(h0), b45));
      w[4] = _mm256_or_si256(w[4], _mm256_and_si256(shift16<4>(h1), b45));
      w[5] = _mm256_or_si256(w[5], _mm256_and_si256(shift16<2>(h1), b45));
      w[6] = _mm256_or_si256(w[6], _mm256_and_si256(h1, b45));
      w[7] = _mm256_or_si256(w[7], _mm256_and_si256(shift16<-2>(h1), b45));
    } else if constexpr (F == QFormat::kNF4) {
      const __m256i lut = _mm256_broadcastsi128_si256(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(kNF4LevelsI8)));
      for (int c = 0; c < 8; ++c) w[c] = _mm256_shuffle_epi8(lut, w[c]);
    }
  }
}


#ifdef __AVX512BW__
// Formats whose quants are 4-bit codes alone (no fifth / sixth bits).
template <QFormat F>
constexpr bool nibbles_only() {
  return F == QFormat::kQ4_0 || F == QFormat::kQ4_1 || F == QFormat::kI4Affine || F == QFormat::kQ4_K ||
         F == QFormat::kNF4;
}

// unpack<F> of blocks b0 and b1 (two neighbouring tiles) at once, for the
// formats of 4-bit codes: register c holds b0's register c in its low half
// and b1's in its high half (the same bytes in the same lanes, in half the
// instructions of two 256-bit unpacks).
template <QFormat F>
inline void unpack_nibble_pair(const uint8_t* b0, const uint8_t* b1, __m512i* w) {
  static_assert(nibbles_only<F>());
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  for (int k = 0; k < 4; ++k) {
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(ld(b0 + 32 * k)), ld(b1 + 32 * k), 1);
    w[k] = _mm512_and_si512(v, m4);
    w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
  }
  if constexpr (F == QFormat::kNF4) {
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kNF4LevelsI8)));
    for (int c = 0; c < 8; ++c) w[c] = _mm512_shuffle_epi8(lut, w[c]);
  }
}
#endif
