// A Llama model written as a GGUF file llama.cpp loads: the llama.* and
// tokenizer.* keys, HF tensor names mapped to GGUF's, Q/K rows permuted back
// to the converter's rotary order, 1-D tensors kept F32 (io/gguf_writer.hpp
// writes the container).
#pragma once

#include <cstdint>
#include <string>

#include "io/weight_store.hpp"
#include "model/llama_names.hpp"
#include "model/model_config.hpp"
#include "text/tokenizer_spec.hpp"

namespace udaci {


struct GgufExportReport {
  int64_t tensors = 0;
  int64_t tensor_bytes = 0;
  std::string file_type;  // general.file_type's name, e.g. "Q4_1"
};

// Writes a Llama model. `tokenizer` may be null (then no tokenizer.* keys are
// written and llama.cpp will not load the file; udaci can, given
// --tokenizer). Error(kUnsupported) naming the tensor and its format when a
// weight has no GGUF type.
GgufExportReport write_model_gguf(const std::string& path, const ModelConfig& config,
                                  const WeightStore& store, const TokenizerSpec* tokenizer,
                                  const std::string& model_name);

}  // namespace udaci
