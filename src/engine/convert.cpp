#include "engine/convert.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/error.hpp"
#include "engine/engine_config.hpp"
#include "engine/registry.hpp"
#include "engine/model_lookup.hpp"
#include "io/gguf_writer.hpp"
#include "io/mapped_file.hpp"
#include "io/safetensors_writer.hpp"
#include "prune/pruner.hpp"
#include "quant/quantizer.hpp"
#include "model/gguf_llama_writer.hpp"

namespace udaci {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string ConvertReport::to_json() const {
  json j{{"output", output_path},     {"bytes_before", bytes_before},
         {"bytes_after", bytes_after}, {"file_bytes", file_bytes},
         {"tensors", tensors},         {"sparsity", sparsity}};
  if (!file_type.empty()) {
    j["gguf_file_type"] = file_type;
    j["tokenizer"] = tokenizer;
  }
  return j.dump();
}

ConvertReport convert_model(const std::string& input_path, const std::string& output_path,
                            const ConvertOptions& o) {
  ModelFiles files = open_model(input_path);
  ConvertReport r;
  r.output_path = output_path;
  r.bytes_before = stored_bytes(files.weights);
  const auto& reg = builtin_strategies();
  auto pruner = reg.pruners.create(o.pruner, StrategyOptions(o.pruner_options));
  auto quantizer = reg.quantizers.create(o.quantizer, StrategyOptions(o.quantizer_options));
  const PruneReport pr = pruner->prune(files.weights, files.config);
  quantizer->quantize(files.weights);
  r.sparsity = pr.sparsity();
  std::error_code ec;
  if (o.dequantize != "none") {
    const at::ScalarType dt = parse_dtype(o.dequantize);  // f32, f16, bf16 (and their long names)
    UDACI_CHECK(o.quantizer == "none" && o.pruner != "2:4",
                "--dequantize writes plain dense weights; it cannot be combined with a quantizer "
                "or the packed 2:4 pruner");
    fs::create_directories(output_path, ec);
    std::vector<at::Tensor> keep;
    std::vector<OutTensor> out;
    for (const std::string& name : files.weights.names()) {
      at::Tensor t = files.weights.tensor(name, dt).contiguous();
      keep.push_back(t);
      out.push_back({name, weight_type_name(*weight_type_of(dt)),
                     t.sizes().vec(), static_cast<const uint8_t*>(t.data_ptr()),
                     static_cast<uint64_t>(t.nbytes())});
      r.bytes_after += static_cast<int64_t>(t.nbytes());
    }
    ModelConfig c = files.config;
    c.torch_dtype = dt == at::kFloat ? "float32" : dt == at::kHalf ? "float16" : "bfloat16";
    const std::string model = (fs::path(output_path) / "model.safetensors").string();
    write_safetensors(model, out, {{"format", "pt"}});
    std::ofstream(fs::path(output_path) / "config.json") << config_to_json(c) << "\n";
    const fs::path tok = fs::path(input_path).parent_path() / "tokenizer.json";
    const fs::path tok2 = fs::path(input_path) / "tokenizer.json";
    if (fs::is_regular_file(tok2, ec)) fs::copy_file(tok2, fs::path(output_path) / "tokenizer.json", fs::copy_options::overwrite_existing, ec);
    else if (fs::is_regular_file(tok, ec)) fs::copy_file(tok, fs::path(output_path) / "tokenizer.json", fs::copy_options::overwrite_existing, ec);
    r.tensors = static_cast<int64_t>(out.size());
    r.file_bytes = static_cast<int64_t>(fs::file_size(model));
    return r;
  }
  if (fs::path(output_path).extension() == ".gguf") {
    // One self-contained file: the tokenizer goes into its metadata.
    std::optional<Tokenizer> tok;
    const std::string tok_path = o.tokenizer.empty() ? input_path : o.tokenizer;
    try {
      tok.emplace(load_tokenizer(tok_path));
    } catch (const Error& e) {
      UDACI_CHECK_S(Status::kNotFound, o.tokenizer.empty() && e.status() == Status::kNotFound,
                    "convert: cannot read the tokenizer for the GGUF output: {}", e.what());
    }
    const GgufExportReport g =
        write_model_gguf(output_path, files.config, files.weights, tok ? &tok->spec() : nullptr,
                         fs::path(input_path).filename().string());
    r.bytes_after = g.tensor_bytes;
    r.tensors = g.tensors;
    r.file_bytes = static_cast<int64_t>(fs::file_size(output_path));
    r.file_type = g.file_type;
    r.tokenizer = tok.has_value();
    return r;
  }
  std::map<std::string, std::string> meta;
  meta["udaci.quantizer"] = o.quantizer;
  meta["udaci.quantizer_options"] = json(o.quantizer_options).dump();
  meta["udaci.pruner"] = o.pruner;
  meta["udaci.pruner_options"] = json(o.pruner_options).dump();
  meta["udaci.sparsity"] = std::to_string(r.sparsity);
  meta["udaci.source"] = input_path;
  const fs::path dir = fs::path(input_path);
  for (const fs::path& tok : {dir / "tokenizer.json", dir.parent_path() / "tokenizer.json"}) {
    if (fs::is_regular_file(tok, ec)) {
      std::ifstream in(tok, std::ios::binary);
      meta["udaci.tokenizer_json"] = std::string(std::istreambuf_iterator<char>(in), {});
      break;
    }
  }
  write_artefact(output_path, files.config, files.weights, meta);
  r.bytes_after = stored_bytes(files.weights);
  r.tensors = static_cast<int64_t>(files.weights.size());
  r.file_bytes = static_cast<int64_t>(fs::file_size(output_path));
  return r;
}

}  // namespace udaci
