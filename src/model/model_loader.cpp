#include "model/model_loader.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "model/artefact.hpp"
#include "io/gguf_reader.hpp"
#include "io/safetensors_reader.hpp"
#include "model/gguf_llama.hpp"
#include "model/llama_names.hpp"

namespace udaci {

namespace fs = std::filesystem;

namespace {

bool has_gguf_magic(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

ModelFiles open_model(const std::string& path) {
  ModelFiles m;
  m.path = path;
  std::error_code ec;
  const fs::path p(path);
  UDACI_CHECK_S(Status::kNotFound, fs::exists(p, ec), "model path '{}' does not exist", path);
  if (fs::is_directory(p, ec)) {
    const fs::path config = p / "config.json";
    UDACI_CHECK_S(Status::kNotFound, fs::exists(config, ec),
                  "'{}' is a folder without config.json (expected a Hugging Face model folder)",
                  path);
    m.config = ModelConfig::from_file(config.string());
    if (fs::exists(p / "model.safetensors.index.json", ec)) {
      m.format = "safetensors-sharded";
      read_safetensors_index((p / "model.safetensors.index.json").string(), m.weights);
    } else if (fs::exists(p / "model.safetensors", ec)) {
      m.format = "safetensors";
      read_safetensors_file((p / "model.safetensors").string(), m.weights);
    } else {
      fail(Status::kNotFound, "'{}' has neither model.safetensors nor model.safetensors.index.json",
           path);
    }
    return m;
  }
  if (has_gguf_magic(p)) {
    std::shared_ptr<GgufFile> g = GgufFile::open(path);
    m.format = "gguf";
    m.config = model_config_from_gguf(*g);
    m.config.rope_freq_factors = gguf_rope_freq_factors(*g);
    gguf_weights_to_store(g, m.weights);
    return m;
  }
  if (is_artefact(path)) return read_artefact(path);  // udaci convert output (docs/ARTEFACT.md)
  if (p.extension() == ".safetensors") {
    const fs::path config = p.parent_path() / "config.json";
    UDACI_CHECK_S(Status::kNotFound, fs::exists(config, ec),
                  "'{}' needs a config.json beside it", path);
    m.config = ModelConfig::from_file(config.string());
    m.format = "safetensors";
    read_safetensors_file(path, m.weights);
    return m;
  }
  fail(Status::kUnsupported,
       "'{}' is not a model: expected a Hugging Face folder, a .safetensors file or a .gguf file",
       path);
}

ModelConfig preset_config(const std::string& name) {
  ModelConfig c;
  if (name == "llama-3.2-1b") {
    // meta-llama/Llama-3.2-1B config.json.
    c.vocab_size = 128256;
    c.hidden_size = 2048;
    c.intermediate_size = 8192;
    c.num_layers = 16;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.head_dim = 64;
    c.max_position_embeddings = 131072;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 500000.0;
    c.rope_scaling = {"llama3", 32.0, 1.0, 4.0, 8192};
    c.tie_word_embeddings = true;
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001};
  } else if (name == "smollm2-135m") {
    // HuggingFaceTB/SmolLM2-135M-Instruct config.json.
    c.vocab_size = 49152;
    c.hidden_size = 576;
    c.intermediate_size = 1536;
    c.num_layers = 30;
    c.num_heads = 9;
    c.num_kv_heads = 3;
    c.head_dim = 64;
    c.max_position_embeddings = 8192;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 100000.0;
    c.tie_word_embeddings = true;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else if (name == "tiny") {
    // SmolLM2's vocabulary on a toy body: for load and fuzz tests that need a
    // real tokenizer but not a real model's cost.
    c.vocab_size = 49152;
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 16;
    c.max_position_embeddings = 2048;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.tie_word_embeddings = true;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else {
    fail(Status::kInvalidArgument,
         "unknown model shape '{}' (expected llama-3.2-1b, smollm2-135m or tiny)", name);
  }
  c.validate("preset " + name);
  return c;
}

WeightStore random_weights(const ModelConfig& c, at::ScalarType dtype, uint64_t seed, double std) {
  at::manual_seed(seed);
  WeightStore store;
  auto opts = at::TensorOptions().dtype(at::kFloat);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool ones) {
    at::Tensor t = (ones ? at::ones(shape, opts) : at::randn(shape, opts).mul_(std)).to(dtype);
    store.add(tensor_entry(name, t, "random"));
  };
  const int64_t h = c.hidden_size;
  add(std::string(kLlamaEmbed) + ".weight", {c.vocab_size, h}, false);
  for (int64_t i = 0; i < c.num_layers; ++i)
    for (const LlamaPartName& p : llama_parts())
      add(llama_layer_name(i, p.part) + ".weight", llama_part_shape(c, p.part), !p.projection);
  add(std::string(kLlamaFinalNorm) + ".weight", {h}, true);
  if (!c.tie_word_embeddings) add(std::string(kLlamaHead) + ".weight", {c.vocab_size, h}, false);
  return store;
}

}  // namespace udaci
