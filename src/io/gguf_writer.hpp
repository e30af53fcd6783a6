// Writing GGUF (version 3), the file format of llama.cpp: `udaci convert
// --output model.gguf` saves a model, quantised or not, as one self-contained
// file (config, tokenizer, weights) that udaci and llama.cpp both load.
//
// Which udaci weight formats GGUF can hold (quant/quant_formats.hpp):
//   F32, F16, BF16 and GGUF blocks (Q4_0, Q4_1, Q8_0, K-quants) as stored;
//   int4 affine with group 32 -> Q4_1, bit for bit (same packing, f16 scale
//     and minimum per 32 weights);
//   int8 per output channel -> Q8_0 (one f16 scale per 32 weights), re-rounded
//     from the dequantised values;
//   NF4, int4 with group 64/128 and the packed 2:4 format have no GGUF type
//     and are refused with a message saying so.
// Q and K projections are written in llama.cpp's rotary row order (the
// permutation gguf_reader undoes on load).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/weight_store.hpp"

namespace udaci {

// A GGUF file being assembled in memory (metadata) and streamed to disk
// (tensor data, from the pointers given).
class GgufWriter {
 public:
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);

  // dims innermost first (ggml's ne[]); `data` must stay valid until write()
  // (`owner` keeps it alive). nbytes must match the type and dims.
  void add_tensor(const std::string& name, uint32_t ggml_type, std::vector<int64_t> dims,
                  const uint8_t* data, uint64_t nbytes, std::shared_ptr<const void> owner = {});

  // Throws Error(kInternal) naming the file when it cannot be written.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    uint32_t type;
    std::vector<int64_t> dims;
    const uint8_t* data;
    uint64_t nbytes;
    std::shared_ptr<const void> owner;
  };
  void key(const std::string& k, uint32_t value_type);
  std::string kv_;  // the serialised metadata pairs
  uint64_t kv_count_ = 0;
  std::vector<std::string> keys_;
  std::vector<Tensor> tensors_;
};

}  // namespace udaci
