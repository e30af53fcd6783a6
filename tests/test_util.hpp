// Helpers shared by the C++ tests: fixture and shared/ paths.
#pragma once

#include <filesystem>
#include <string>

namespace udaci_test {

inline std::string fixture(const std::string& rel) {
  return (std::filesystem::path(UDACI_FIXTURES_DIR) / rel).string();
}

// ../shared beside the checkout; tests that need it call shared_available()
// and WARN + return with a clear message when a user's clone has none.
inline std::string shared_path(const std::string& rel) {
  return (std::filesystem::path(UDACI_SHARED_DIR) / rel).string();
}
inline bool shared_available() {
  return std::filesystem::exists(std::filesystem::path(UDACI_SHARED_DIR) / "assets");
}

}  // namespace udaci_test
