// `udaci info`: a model's config (as a Hugging Face config.json holds it),
// parameter count, tensor count and bytes by dtype, after checking that the
// model binds as the engine binds it.
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

#include "engine/model_lookup.hpp"
#include "engine/model_builder.hpp"
#include "model/artefact.hpp"
#include "model/model_loader.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

using nlohmann::json;

int cmd_info(const std::string& model_path) {
  ModelFiles m = open_model(resolve_model_path(model_path));
  const ModelConfig& c = m.config;
  {
    // What it describes must load: the model is bound as the engine binds it
    // (GGUF blocks in place, udaci's stored formats as stored, the rest
    // dense), which checks every tensor the config implies — present, with
    // its shape — and fails naming the first that is not.
    // (A copy of the entries: what is printed is the file as stored.)
    ModelConfig config = c;
    WeightStore weights = m.weights;
    build_quantized_model(config, weights, m.format == "gguf" ? "gguf-native" : "none", {}, at::kFloat, at::kCPU);
  }
  json out;
  out["path"] = m.path;
  out["format"] = m.format;
  // The config as a Hugging Face config.json would hold it (the mapping
  // `udaci convert` writes, src/model/artefact.cpp).
  out["config"] = json::parse(config_to_json(c));
  out["parameters"] = m.weights.total_elements();
  out["tensors"] = m.weights.size();
  json bytes = json::object();
  uint64_t total = 0;
  for (const auto& kv : m.weights.bytes_by_type()) {
    bytes[weight_type_name(kv.first)] = kv.second;
    total += kv.second;
  }
  out["bytes_by_dtype"] = bytes;
  out["bytes_total"] = total;
  std::cout << out.dump(2) << "\n";
  return 0;
}

}  // namespace

CommandRun setup_info(CLI::App& sub) {
  auto model = std::make_shared<std::string>();
  sub.add_option("--model", *model, "Hugging Face folder, .safetensors or .gguf (default: see README)");
  return [model](const GlobalOptions&) { return cmd_info(*model); };
}

}  // namespace udaci::cli
