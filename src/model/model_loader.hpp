// Finds what a model path holds and reads its config and weights: a Hugging
// Face folder (config.json + model.safetensors or a sharded index), a single
// .safetensors file with config.json beside it, or (issue #3) a GGUF file.
#pragma once

#include <string>

#include "io/weight_store.hpp"
#include "model/model_config.hpp"

namespace udaci {

struct ModelFiles {
  std::string path;
  std::string format;  // "safetensors", "safetensors-sharded", "gguf"
  ModelConfig config;
  WeightStore weights;
};

// Throws Error(kNotFound) when nothing usable is at `path`, kBadModelFile when
// a file is malformed; messages name the file.
ModelFiles open_model(const std::string& path);

// Shapes of well-known models, for benchmarks with random weights:
// "llama-3.2-1b", "smollm2-135m", "tiny" (SmolLM2's vocabulary, 2 layers of
// width 64). Throws for an unknown name.
ModelConfig preset_config(const std::string& name);

// N(0, std) weights for every tensor of `config` (norm weights 1), in `dtype`.
WeightStore random_weights(const ModelConfig& config, at::ScalarType dtype, uint64_t seed,
                           double std = 0.02);

}  // namespace udaci
