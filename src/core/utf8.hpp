// UTF-8, written once: the well-formedness rules of Unicode 15 Table 3-7 (no
// overlong forms, no surrogates, nothing above U+10FFFF) and the few code
// point helpers the tokenizer, the prompt builder and the chat-template
// interpreter share. Everything here works on bytes; nothing allocates except
// where a std::string is returned or appended to.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace udaci {

// U+FFFD REPLACEMENT CHARACTER, as UTF-8.
inline constexpr std::string_view kUtf8Replacement = "\xEF\xBF\xBD";

// What stands at s[i].
struct Utf8Sequence {
  size_t length = 0;       // bytes of the well-formed sequence at i; 0 when ill-formed
  size_t bad_length = 0;   // when ill-formed: the maximal subpart (>= 1 byte), what
                           // one U+FFFD replaces in the Unicode "best practice"
  bool truncated = false;  // ill-formed only because the input ends inside a
                           // well-formed prefix (a stream cut mid-character)
};
Utf8Sequence utf8_sequence_at(std::string_view s, size_t i);

bool is_valid_utf8(std::string_view s);

// Appends `in` to `out` with each ill-formed maximal subpart replaced by one
// U+FFFD (what Python's bytes.decode("utf-8", "replace") does). With
// final = false a well-formed prefix cut by the end of `in` is held back.
// Returns how many bytes of `in` were consumed.
size_t append_utf8_lossy(std::string_view in, std::string& out, bool final = true);

// A coarser repair for generated text: each ill-formed byte and the
// continuation bytes after it become one U+FFFD, and a sequence cut by the end
// of the input is dropped.
std::string sanitize_utf8(std::string_view s);

// The code point at s[i] of well-formed UTF-8; *len receives its byte count.
uint32_t decode_utf8_at(std::string_view s, size_t i, size_t* len);

// Appends the UTF-8 encoding of the code point cp (<= U+10FFFF).
void append_utf8(std::string& out, uint32_t cp);

// Index of the first byte of the character that ends at `end` (> 0).
size_t utf8_char_start_before(std::string_view s, size_t end);

// Unicode White_Space as Python's str.isspace() sees it (what str.strip() and
// the regex \s remove).
bool is_unicode_space(uint32_t cp);

}  // namespace udaci
