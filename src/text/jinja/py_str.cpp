// Python str operations on valid UTF-8 (see py_str.hpp).
#include "text/jinja/py_str.hpp"

#include <algorithm>
#include <cstdint>

#include "core/utf8.hpp"

namespace udaci {
namespace jinja {

std::vector<std::string> code_points(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0, n = 0; i < s.size(); i += n) {
    decode_utf8_at(s, i, &n);
    out.emplace_back(s.substr(i, n));
  }
  return out;
}

std::string py_strip(std::string_view s, bool left, bool right,
                     const std::optional<std::string>& chars) {
  std::vector<std::string> set;
  if (chars) set = code_points(*chars);
  const auto strippable = [&](size_t i, size_t* n) {
    const uint32_t cp = decode_utf8_at(s, i, n);
    if (!chars) return is_unicode_space(cp);
    return std::find(set.begin(), set.end(), std::string(s.substr(i, *n))) != set.end();
  };
  size_t begin = 0, end = s.size(), n = 0;
  if (left)
    while (begin < end && strippable(begin, &n)) begin += n;
  if (right) {
    while (end > begin) {
      const size_t start = utf8_char_start_before(s, end);
      if (!strippable(start, &n)) break;
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

bool all_py_space(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); i += n)
    if (!is_unicode_space(decode_utf8_at(s, i, &n))) return false;
  return true;
}

}  // namespace jinja
}  // namespace udaci
