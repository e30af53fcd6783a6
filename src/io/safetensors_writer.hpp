// Writing one .safetensors file: a JSON header (dtype, shape, byte range per
// tensor, optional __metadata__ strings) padded to 8 bytes, then the tensors'
// bytes in order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace udaci {

struct OutTensor {
  std::string name;
  std::string dtype;  // safetensors dtype: "F32", "F16", "BF16", "I8", "U8" ...
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // valid until write_safetensors returns
  uint64_t nbytes = 0;
};

// Error(kInternal) naming the file when it cannot be written.
void write_safetensors(const std::string& path, const std::vector<OutTensor>& tensors,
                       const std::map<std::string, std::string>& meta);

}  // namespace udaci
