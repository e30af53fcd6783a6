// The udaci artefact: one .safetensors file whose __metadata__ records the
// format version, the strategies that made it and the model config (layout in
// docs/ARTEFACT.md). `udaci convert` (engine/convert.hpp) writes it;
// open_model() (model/model_loader.hpp) reads it back as stored.
#pragma once

#include <map>
#include <string>

#include "io/weight_store.hpp"
#include "model/model_config.hpp"
#include "model/model_loader.hpp"

namespace udaci {

inline constexpr const char* kArtefactFormatKey = "udaci.format";
inline constexpr int kArtefactFormatVersion = 1;

// Writes `store` to `path` as a udaci artefact; `strategy_meta` adds keys to
// __metadata__ (all values strings).
void write_artefact(const std::string& path, const ModelConfig& config, const WeightStore& store,
                    const std::map<std::string, std::string>& strategy_meta);

// True when `path` is a .safetensors file whose header carries udaci.format.
bool is_artefact(const std::string& path);

// Reads an artefact; throws Error(kBadModelFile) for a truncated or malformed
// file, an unknown format version or metadata that does not match the tensors.
ModelFiles read_artefact(const std::string& path,
                         std::map<std::string, std::string>* metadata = nullptr);

// HF config.json text for `config`.
std::string config_to_json(const ModelConfig& config);

}  // namespace udaci
