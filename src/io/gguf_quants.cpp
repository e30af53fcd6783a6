#include "io/gguf_quants.hpp"

#include <cstring>

#include "core/error.hpp"

// Block layouts are those of ggml's ggml-common.h (block_q4_0 ... block_q6_K);
// the element order inside a block and the arithmetic (float32, in the order
// written below) follow gguf-py's reference dequantisers (gguf/quants.py), so
// that results match it bit for bit when the compiler does not fuse multiply
// and add (tests/unit/test_gguf_quants.cpp).

namespace udaci {

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: normalise into a float32 exponent.
    int e = -1;
    do {
      mant <<= 1;
      ++e;
    } while ((mant & 0x400u) == 0);
    bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

namespace {

constexpr int kQK = 32;    // elements per block of the legacy formats
constexpr int kQKK = 256;  // elements per super-block of the K formats

inline float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}

// block_q4_0 {half d; uint8 qs[16]}: element j is the low nibble of qs[j],
// element j + 16 the high nibble; value d * (q - 8).
void dq_q4_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
    y[j + kQK / 2] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

// block_q4_1 {half d, m; uint8 qs[16]}: value d * q + m.
void dq_q4_1(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float m = f16_at(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
    y[j + kQK / 2] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

// block_q5_0 {half d; uint32 qh; uint8 qs[16]}: bit j of qh is the fifth bit
// of element j; value d * (q - 16).
void dq_q5_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + kQK / 2] = d * static_cast<float>(hi - 16);
  }
}

// block_q5_1 {half d, m; uint32 qh; uint8 qs[16]}: value d * q + m.
void dq_q5_1(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float m = f16_at(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + kQK / 2] = d * static_cast<float>(hi) + m;
  }
}

// block_q8_0 {half d; int8 qs[32]}: value q * d.
void dq_q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// block_q2_K {uint8 scales[16]; uint8 qs[64]; half d, dmin}: 16 sub-blocks of
// 16; scales byte = 4-bit scale | 4-bit min << 4. Element 128h + 32s + l is
// bits 2s..2s+1 of qs[32h + l]; value (d * sc) * q - dmin * m.
void dq_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = f16_at(b + 80);
  const float dmin = f16_at(b + 82);
  for (int e = 0; e < kQKK; ++e) {
    const int h = e / 128, s = (e / 32) % 4, l = e % 32;
    const int q = (qs[32 * h + l] >> (2 * s)) & 3;
    const uint8_t sc = scales[e / 16];
    const float dl = d * static_cast<float>(sc & 0x0f);
    const float ml = dmin * static_cast<float>(sc >> 4);
    y[e] = dl * static_cast<float>(q) - ml;
  }
}

// block_q3_K {uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; half d}: 16
// sub-blocks of 16 with 6-bit signed scales (low 4 bits in scales[0..7], two
// nibbles each; high 2 bits in scales[8..11], four pairs each). Element
// 128h + 32s + l takes its low 2 bits from qs[32h + l] >> 2s and its third bit
// from hmask[l] >> (e / 32), where a clear bit means "subtract 4".
void dq_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = f16_at(b + 108);
  float dl[16];
  for (int i = 0; i < 16; ++i) {
    const int lo = (i < 8 ? sc[i] : sc[i - 8] >> 4) & 0x0f;
    const int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
    dl[i] = d * static_cast<float>((lo | (hi << 4)) - 32);
  }
  for (int e = 0; e < kQKK; ++e) {
    const int h = e / 128, s = (e / 32) % 4, l = e % 32;
    const int low = (qs[32 * h + l] >> (2 * s)) & 3;
    const int high = (hmask[l] >> (e / 32)) & 1;
    y[e] = dl[e / 16] * static_cast<float>(low - ((high ^ 1) << 2));
  }
}

}  // namespace

void k4_scale_min(const uint8_t* s, uint8_t* sc, uint8_t* m) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3f;
    m[j] = s[j + 4] & 0x3f;
    sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0f) | ((s[j] >> 2) & 0x30));
    m[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30));
  }
}

namespace {

// block_q4_K {half d, dmin; uint8 scales[12]; uint8 qs[128]}: 8 sub-blocks of
// 32; sub-block 2c + k is nibble k of qs[32c .. 32c + 31]; value
// (d * sc) * q - dmin * m.
void dq_q4_k(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  uint8_t sc[8], m[8];
  k4_scale_min(b + 4, sc, m);
  const uint8_t* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    const float ds = d * static_cast<float>(sc[s]);
    const float ms = dmin * static_cast<float>(m[s]);
    const int c = s / 2, k = s % 2;
    for (int l = 0; l < 32; ++l) {
      const int q = (qs[32 * c + l] >> (4 * k)) & 0x0f;
      y[32 * s + l] = ds * static_cast<float>(q) - ms;
    }
  }
}

// block_q5_K {half d, dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]}:
// as Q4_K, with bit s of qh[l] the fifth bit of element 32s + l.
void dq_q5_k(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  uint8_t sc[8], m[8];
  k4_scale_min(b + 4, sc, m);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    const float ds = d * static_cast<float>(sc[s]);
    const float ms = dmin * static_cast<float>(m[s]);
    const int c = s / 2, k = s % 2;
    for (int l = 0; l < 32; ++l) {
      const int q = ((qs[32 * c + l] >> (4 * k)) & 0x0f) | (((qh[l] >> s) & 1) << 4);
      y[32 * s + l] = ds * static_cast<float>(q) - ms;
    }
  }
}

// block_q6_K {uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d}: 16
// sub-blocks of 16. Element 128h + 64k + j (j < 64) takes nibble k of
// ql[64h + j]; element 128h + 32s + l takes bits 2s..2s+1 of qh[32h + l] as its
// high two bits; value (d * scale) * (q - 32).
void dq_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int e = 0; e < kQKK; ++e) {
    const int h = e / 128, r = e % 128;
    const int low = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
    const int high = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
    const float ds = d * static_cast<float>(scales[e / 16]);
    y[e] = ds * static_cast<float>((low | (high << 4)) - 32);
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(WeightType t) {
  switch (t) {
    case WeightType::kQ4_0: return dq_q4_0;
    case WeightType::kQ4_1: return dq_q4_1;
    case WeightType::kQ5_0: return dq_q5_0;
    case WeightType::kQ5_1: return dq_q5_1;
    case WeightType::kQ8_0: return dq_q8_0;
    case WeightType::kQ2_K: return dq_q2_k;
    case WeightType::kQ3_K: return dq_q3_k;
    case WeightType::kQ4_K: return dq_q4_k;
    case WeightType::kQ5_K: return dq_q5_k;
    case WeightType::kQ6_K: return dq_q6_k;
    default: return nullptr;
  }
}

}  // namespace

void dequantize_row(WeightType t, const uint8_t* src, float* dst, int64_t n) {
  UDACI_CHECK(n >= 0, "dequantize_row: negative element count {}", n);
  switch (t) {
    case WeightType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case WeightType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = half_to_float(h);
      }
      return;
    case WeightType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_float(h);
      }
      return;
    default: break;
  }
  const BlockFn fn = block_fn(t);
  if (fn == nullptr) {
    fail(Status::kUnsupported, "no dequantiser for {} tensors", weight_type_name(t));
  }
  const int64_t be = weight_type_block_elems(t);
  const int64_t bb = weight_type_block_bytes(t);
  UDACI_CHECK_S(Status::kBadModelFile, n % be == 0,
                "{} data holds whole blocks of {} elements, got {} elements", weight_type_name(t),
                be, n);
  const int64_t blocks = n / be;
  for (int64_t i = 0; i < blocks; ++i) fn(src + i * bb, dst + i * be);
}

}  // namespace udaci
