// GGUF reader on arbitrary bytes: GgufFile::open over an in-memory copy, then
// what a model load reads from it: every metadata value (value_to_string and
// the typed array getters), model_config_from_gguf, gguf_rope_freq_factors,
// tokenizer_spec_from_gguf (and a Tokenizer built from it), and
// gguf_weights_to_store with a few tensors dequantised by WeightStore::tensor.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "fuzz_common.hpp"
#include "io/gguf_reader.hpp"
#include "text/tokenizer.hpp"
#include "model/gguf_llama.hpp"

using namespace udaci;
using udaci::fuzz::expect_error_or_ok;
using udaci::fuzz::fuzz_check;

namespace {

// Bounds the work of one input: dequantised elements per tensor and tensors
// dequantised (each is at most ~12x its bytes in the file, Q2_K).
constexpr int64_t kMaxElementsPerTensor = int64_t{1} << 20;
constexpr size_t kMaxTensorsDequantised = 8;

void read_metadata(const GgufFile& g) {
  for (const std::string& key : g.keys()) {
    expect_error_or_ok([&] { (void)g.value_to_string(key, 4); });
    const GgufValue& v = g.value(key);
    if (v.type != GgufValueType::kArray) {
      expect_error_or_ok([&] { (void)g.get_int(key); });
      expect_error_or_ok([&] { (void)g.get_float(key); });
      continue;
    }
    fuzz_check(g.array_length(key) == v.array_length, "array_length matches the value");
    switch (v.array_type) {
      case GgufValueType::kString: {
        const std::vector<std::string> s = g.get_string_array(key);
        fuzz_check(s.size() == v.array_length, "string array has its declared length");
        break;
      }
      case GgufValueType::kFloat32:
      case GgufValueType::kFloat64:
        fuzz_check(g.get_float_array(key).size() == v.array_length, "float array length");
        break;
      case GgufValueType::kArray:
      case GgufValueType::kBool:
        break;
      default:
        expect_error_or_ok([&] { (void)g.get_int_array(key); });
        break;
    }
  }
}

void read_weights(const std::shared_ptr<GgufFile>& g) {
  WeightStore store;
  if (!expect_error_or_ok([&] { gguf_weights_to_store(g, store); })) return;
  fuzz_check(store.size() == g->tensors().size(), "every tensor is in the store");
  size_t done = 0;
  for (const std::string& name : store.names()) {
    if (done++ == kMaxTensorsDequantised) break;
    const TensorEntry& e = store.entry(name);
    if (e.numel() > kMaxElementsPerTensor) continue;
    expect_error_or_ok([&] {
      (void)stored_row_order(e);
      const at::Tensor t = store.tensor(name, at::kFloat);
      fuzz_check(t.numel() == e.numel(), "dequantised tensor has the entry's element count");
    });
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<GgufFile> g;
  if (!expect_error_or_ok([&] { g = GgufFile::open(MappedFile::from_bytes(data, size, "fuzz.gguf")); }))
    return 0;
  read_metadata(*g);
  expect_error_or_ok([&] { (void)model_config_from_gguf(*g); });
  expect_error_or_ok([&] { (void)gguf_rope_freq_factors(*g); });
  expect_error_or_ok([&] {
    TokenizerSpec spec = tokenizer_spec_from_gguf(*g);
    const Tokenizer tok = Tokenizer::from_spec(std::move(spec));
    const std::vector<int32_t> ids = tok.encode("Hello world 123 <|im_start|>", true);
    (void)tok.decode(ids);
  });
  read_weights(g);
  return 0;
}
