// `udaci convert`: load a model, prune and quantise it, and save the result as
// a udaci artefact (one .safetensors file whose __metadata__ records the
// format version, the strategies and the model config; layout in
// docs/ARTEFACT.md), as a GGUF file (an output path ending in .gguf; the
// formats GGUF has, io/gguf_writer.hpp), or dequantise it back to a plain
// Hugging Face folder.
// open_model() recognises an artefact (model/artefact.hpp) and returns its
// entries as stored.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "model/artefact.hpp"
#include "model/model_loader.hpp"

namespace udaci {

struct ConvertOptions {
  std::string quantizer = "none";
  std::map<std::string, std::string> quantizer_options;
  std::string pruner = "none";
  std::map<std::string, std::string> pruner_options;
  // "none": write a udaci artefact. "f32" | "f16" | "bf16": write a plain HF
  // folder (config.json + model.safetensors) with every weight dequantised.
  std::string dequantize = "none";
  // GGUF output only: where the tokenizer comes from (default: the input,
  // when it has one; a GGUF is written without tokenizer otherwise).
  std::string tokenizer;
};

struct ConvertReport {
  std::string output_path;
  int64_t bytes_before = 0;   // weights as stored in the input
  int64_t bytes_after = 0;    // weights as stored in the output
  int64_t file_bytes = 0;     // size of the written model file
  int64_t tensors = 0;
  double sparsity = 0.0;      // the pruner's achieved zero fraction
  std::string file_type;      // GGUF output: general.file_type, e.g. "Q4_1"
  bool tokenizer = false;     // GGUF output: tokenizer metadata written
  std::string to_json() const;
};

ConvertReport convert_model(const std::string& input_path, const std::string& output_path,
                            const ConvertOptions& options);

}  // namespace udaci
