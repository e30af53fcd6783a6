#include "io/gguf_writer.hpp"

#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <fmt/ranges.h>  // fmt::join (fmt >= 11 keeps it here)

#include "core/error.hpp"
#include "io/gguf_reader.hpp"

namespace udaci {
namespace {

constexpr uint32_t kVersion = 3;
constexpr uint64_t kAlignment = kGgufDefaultAlignment;


template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

uint64_t aligned(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

}  // namespace

// ---- GgufWriter --------------------------------------------------------------

void GgufWriter::key(const std::string& k, uint32_t value_type) {
  UDACI_CHECK(std::find(keys_.begin(), keys_.end(), k) == keys_.end(),
              "GGUF writer: metadata key '{}' set twice", k);
  keys_.push_back(k);
  put_string(kv_, k);
  put<uint32_t>(kv_, value_type);
  ++kv_count_;
}

void GgufWriter::set_u32(const std::string& k, uint32_t v) {
  key(k, static_cast<uint32_t>(GgufValueType::kUint32));
  put(kv_, v);
}
void GgufWriter::set_i32(const std::string& k, int32_t v) {
  key(k, static_cast<uint32_t>(GgufValueType::kInt32));
  put(kv_, v);
}
void GgufWriter::set_f32(const std::string& k, float v) {
  key(k, static_cast<uint32_t>(GgufValueType::kFloat32));
  put(kv_, v);
}
void GgufWriter::set_bool(const std::string& k, bool v) {
  key(k, static_cast<uint32_t>(GgufValueType::kBool));
  put<uint8_t>(kv_, v ? 1 : 0);
}
void GgufWriter::set_string(const std::string& k, const std::string& v) {
  key(k, static_cast<uint32_t>(GgufValueType::kString));
  put_string(kv_, v);
}
void GgufWriter::set_string_array(const std::string& k, const std::vector<std::string>& v) {
  key(k, static_cast<uint32_t>(GgufValueType::kArray));
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kString));
  put<uint64_t>(kv_, v.size());
  for (const std::string& s : v) put_string(kv_, s);
}
void GgufWriter::set_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  key(k, static_cast<uint32_t>(GgufValueType::kArray));
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kInt32));
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put(kv_, x);
}

void GgufWriter::add_tensor(const std::string& name, uint32_t ggml_type, std::vector<int64_t> dims,
                            const uint8_t* data, uint64_t nbytes, std::shared_ptr<const void> owner) {
  const GgmlTypeInfo* info = ggml_type_info(ggml_type);
  UDACI_CHECK(info != nullptr, "GGUF writer: tensor '{}' has unknown ggml type {}", name, ggml_type);
  UDACI_CHECK(!dims.empty() && dims.size() <= kGgufMaxDims && dims[0] % info->block_elems == 0,
              "GGUF writer: tensor '{}' ({}) has dims [{}]", name, info->name, fmt::join(dims, ", "));
  uint64_t n = 1;
  for (int64_t d : dims) n *= static_cast<uint64_t>(d);
  UDACI_CHECK(n / info->block_elems * info->block_bytes == nbytes,
              "GGUF writer: tensor '{}' ({}, {} elements) needs {} bytes, got {}", name, info->name,
              n, n / info->block_elems * info->block_bytes, nbytes);
  for (const Tensor& t : tensors_)
    UDACI_CHECK(t.name != name, "GGUF writer: tensor '{}' added twice", name);
  tensors_.push_back({name, ggml_type, std::move(dims), data, nbytes, std::move(owner)});
}

void GgufWriter::write(const std::string& path) const {
  std::string head = "GGUF";
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_count_);
  head += kv_;
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, t.type);
    put<uint64_t>(head, offset);
    offset = aligned(offset + t.nbytes);
  }
  head.resize(aligned(head.size()), '\0');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  UDACI_CHECK_S(Status::kInternal, out.good(), "cannot write '{}'", path);
  out.write(head.data(), static_cast<std::streamsize>(head.size()));
  const std::string pad(kAlignment, '\0');
  for (const Tensor& t : tensors_) {
    out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes));
    out.write(pad.data(), static_cast<std::streamsize>(aligned(t.nbytes) - t.nbytes));
  }
  out.close();
  UDACI_CHECK_S(Status::kInternal, !out.fail(), "writing '{}' failed", path);
}

}  // namespace udaci
