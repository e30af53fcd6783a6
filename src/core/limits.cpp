#include "core/limits.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.hpp"

namespace udaci {

std::string read_file_capped(const std::string& path, uint64_t max_bytes, const char* what) {
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  UDACI_CHECK_S(Status::kNotFound, !ec, "{}: cannot open {}: {}", path, what, ec.message());
  UDACI_CHECK_S(Status::kBadModelFile, size <= max_bytes,
                "{}: {} is {} bytes, over the limit of {} bytes", path, what, size, max_bytes);
  std::ifstream in(path, std::ios::binary);
  UDACI_CHECK_S(Status::kNotFound, in.good(), "{}: cannot open {}", path, what);
  std::string text;
  text.reserve(static_cast<size_t>(size));
  text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  // A file that grew while being read (or a special file reporting size 0).
  UDACI_CHECK_S(Status::kBadModelFile, text.size() <= max_bytes,
                "{}: {} is over the limit of {} bytes", path, what, max_bytes);
  return text;
}

}  // namespace udaci
