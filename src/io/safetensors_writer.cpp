#include "io/safetensors_writer.hpp"

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/error.hpp"

namespace udaci {

void write_safetensors(const std::string& path, const std::vector<OutTensor>& tensors,
                       const std::map<std::string, std::string>& meta) {
  nlohmann::json h = nlohmann::json::object();
  if (!meta.empty()) h["__metadata__"] = meta;
  uint64_t off = 0;
  for (const OutTensor& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes}}};
    off += t.nbytes;
  }
  std::string header = h.dump();
  while (header.size() % 8 != 0) header.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  UDACI_CHECK_S(Status::kInternal, out.good(), "cannot write '{}'", path);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(header.data(), static_cast<std::streamsize>(n));
  for (const OutTensor& t : tensors)
    out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes));
  out.close();
  UDACI_CHECK_S(Status::kInternal, !out.fail(), "writing '{}' failed", path);
}

// Header JSON of a safetensors file, with bounds checked against the file size.

}  // namespace udaci
