#include "core/utf8.hpp"

#include <cstring>

namespace udaci {

namespace {

// For a lead byte: how many continuation bytes follow and the allowed range of
// the first one (the others are always 80..BF). n = 0 with lo > hi marks a
// byte that can never start a sequence.
struct Lead {
  uint8_t n;
  uint8_t lo;
  uint8_t hi;
};

Lead lead_info(uint8_t b) {
  if (b < 0x80) return {0, 1, 0};
  if (b < 0xC2) return {0, 0xFF, 0};  // continuation byte or overlong C0/C1
  if (b < 0xE0) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};  // no overlong 3-byte forms
  if (b == 0xED) return {2, 0x80, 0x9F};  // no surrogates
  if (b < 0xF0) return {2, 0x80, 0xBF};
  if (b == 0xF0) return {3, 0x90, 0xBF};  // no overlong 4-byte forms
  if (b < 0xF4) return {3, 0x80, 0xBF};
  if (b == 0xF4) return {3, 0x80, 0x8F};  // <= U+10FFFF
  return {0, 0xFF, 0};
}

}  // namespace

Utf8Sequence utf8_sequence_at(std::string_view s, size_t i) {
  const auto b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) return {1, 0, false};
  const Lead L = lead_info(b);
  if (L.n == 0) return {0, 1, false};
  for (size_t k = 1; k <= L.n; ++k) {
    if (i + k >= s.size()) return {0, k, true};
    const auto c = static_cast<uint8_t>(s[i + k]);
    const uint8_t lo = k == 1 ? L.lo : 0x80, hi = k == 1 ? L.hi : 0xBF;
    if (c < lo || c > hi) return {0, k, false};
  }
  return {size_t{L.n} + 1, 0, false};
}

bool is_valid_utf8(std::string_view s) {
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    const size_t len = utf8_sequence_at(s, i).length;
    if (len == 0) return false;
    i += len;
  }
  return true;
}

size_t append_utf8_lossy(std::string_view in, std::string& out, bool final) {
  const size_t n = in.size();
  size_t i = 0;
  size_t run = 0;  // start of the pending run of well-formed bytes
  while (i < n) {
    if (static_cast<uint8_t>(in[i]) < 0x80) {
      ++i;
      continue;
    }
    const Utf8Sequence q = utf8_sequence_at(in, i);
    if (q.length > 0) {
      i += q.length;
      continue;
    }
    out.append(in.data() + run, i - run);
    if (q.truncated && !final) return i;  // wait for the rest of the character
    out += kUtf8Replacement;
    i += q.bad_length;
    run = i;
  }
  out.append(in.data() + run, n - run);
  return n;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const Utf8Sequence q = utf8_sequence_at(s, i);
    if (q.length > 0) {
      out.append(s.substr(i, q.length));
      i += q.length;
    } else if (q.truncated) {
      break;
    } else {
      out += kUtf8Replacement;
      ++i;
      while (i < s.size() && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) ++i;
    }
  }
  return out;
}

uint32_t decode_utf8_at(std::string_view s, size_t i, size_t* len) {
  const auto c = static_cast<uint8_t>(s[i]);
  if (c < 0x80) return *len = 1, c;
  const size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  uint32_t cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  *len = n;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t utf8_char_start_before(std::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  return start;
}

bool is_unicode_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

}  // namespace udaci
