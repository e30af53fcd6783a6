// safetensors reader on arbitrary bytes: read_safetensors_file over an
// in-memory copy, then every tensor it accepted read back through
// WeightStore::tensor (zero-copy view, converted to float).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "fuzz_common.hpp"
#include "io/safetensors_reader.hpp"

using namespace udaci;
using udaci::fuzz::expect_error_or_ok;
using udaci::fuzz::fuzz_check;

namespace {
constexpr int64_t kMaxElementsPerTensor = int64_t{1} << 20;
constexpr size_t kMaxTensorsRead = 8;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  WeightStore store;
  const auto file = MappedFile::from_bytes(data, size, "fuzz.safetensors");
  if (!expect_error_or_ok([&] { read_safetensors_file(file, store); })) return 0;
  size_t done = 0;
  for (const std::string& name : store.names()) {
    const TensorEntry& e = store.entry(name);
    fuzz_check(e.data >= file->data() && e.data + e.nbytes <= file->data() + file->size(),
               "tensor bytes lie inside the file");
    if (done++ == kMaxTensorsRead || e.numel() > kMaxElementsPerTensor) continue;
    expect_error_or_ok([&] {
      const at::Tensor t = store.tensor(name, at::kFloat);
      fuzz_check(t.numel() == e.numel(), "tensor has the entry's element count");
    });
  }
  return 0;
}
