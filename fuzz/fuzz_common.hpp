// Shared by the libFuzzer targets in fuzz/. A target feeds its input to one
// parser; udaci::Error is the parser's documented way to reject bad input and
// is caught. Anything else (another exception type escapes
// LLVMFuzzerTestOneInput and aborts), a sanitizer report, a broken invariant
// (fuzz_check), a hang (-timeout) or a memory blow-up (-rss_limit_mb /
// -malloc_limit_mb) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace udaci::fuzz {

// Runs f; an udaci::Error is an accepted outcome. Returns false when it threw.
template <typename F>
bool expect_error_or_ok(F&& f) {
  try {
    f();
    return true;
  } catch (const Error&) {
    return false;
  }
}

// An invariant of the API under test; its failure is a finding.
inline void fuzz_check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
  }
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Cuts `text` at each occurrence of `sep` (at most max_parts parts; the last
// keeps the rest). Targets that take several documents use it so that the
// mutator can move bytes between them.
inline std::vector<std::string_view> split_parts(std::string_view text, std::string_view sep,
                                                 size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = text.find(sep);
    if (at == std::string_view::npos) break;
    parts.push_back(text.substr(0, at));
    text.remove_prefix(at + sep.size());
  }
  parts.push_back(text);
  return parts;
}

}  // namespace udaci::fuzz
