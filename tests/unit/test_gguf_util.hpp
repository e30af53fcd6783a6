// Helpers for the GGUF tests: a little-endian byte builder for hand-made
// (valid v2 or deliberately malformed) GGUF files, a temp file that removes
// itself, and an assertion that opening bytes fails with a given status and
// message.
#pragma once

#include "udaci_catch.hpp"
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/gguf_reader.hpp"

namespace udaci_gguf_test {

struct GgufBytes {
  std::string b;

  GgufBytes& u8(uint8_t v) { b.push_back(static_cast<char>(v)); return *this; }
  GgufBytes& u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  GgufBytes& u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  GgufBytes& f32(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    return u32(bits);
  }
  GgufBytes& str(const std::string& s) { u64(s.size()); b += s; return *this; }
  GgufBytes& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b += "GGUF";
    return u32(version).u64(n_tensors).u64(n_kv);
  }
  GgufBytes& kv_u32(const std::string& k, uint32_t v) { return str(k).u32(4).u32(v); }
  GgufBytes& kv_f32(const std::string& k, float v) { return str(k).u32(6).f32(v); }
  GgufBytes& kv_string(const std::string& k, const std::string& v) { return str(k).u32(8).str(v); }
  GgufBytes& tensor_info(const std::string& name, const std::vector<uint64_t>& dims,
                         uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(offset);
  }
  GgufBytes& pad(size_t align) {
    while (b.size() % align != 0) b.push_back(0);
    return *this;
  }
  GgufBytes& zeros(size_t n) { b.append(n, '\0'); return *this; }
};

class TempFile {
 public:
  explicit TempFile(const std::string& bytes) {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("udaci_gguf_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) +
              ".gguf"))
                .string();
    std::ofstream out(path_, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Opening `bytes` must throw udaci::Error with `status` and a message holding
// `needle`.
inline void expect_open_fails(const std::string& bytes, const std::string& needle,
                              udaci::Status status = udaci::Status::kBadModelFile) {
  TempFile f(bytes);
  try {
    udaci::GgufFile::open(f.path());
    FAIL("opened a malformed GGUF file; expected an error containing: " << needle);
  } catch (const udaci::Error& e) {
    INFO("message: " << e.what());
    CHECK(e.status() == status);
    CHECK_THAT(std::string(e.what()), Catch::Contains(needle));
  }
}

}  // namespace udaci_gguf_test
