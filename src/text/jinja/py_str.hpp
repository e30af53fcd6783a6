// Python str operations on valid UTF-8, shared by the lexer and the renderer.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace udaci {
namespace jinja {

// The code points of s, each as its UTF-8 bytes (Python's list(s)).
std::vector<std::string> code_points(std::string_view s);

// Python str.strip/lstrip/rstrip: chars == nullopt strips whitespace,
// otherwise the code points in *chars.
std::string py_strip(std::string_view s, bool left, bool right,
                     const std::optional<std::string>& chars = std::nullopt);

// True when every code point of s is Python whitespace (also when s is empty).
bool all_py_space(std::string_view s);

}  // namespace jinja
}  // namespace udaci
