#include "io/convert.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/error.hpp"
#include "engine/registry.hpp"
#include "engine/model_lookup.hpp"
#include "io/gguf_writer.hpp"
#include "io/mapped_file.hpp"
#include "prune/pruner.hpp"
#include "quant/quantizer.hpp"

namespace udaci {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Safetensors dtype for a storage type; block formats are stored as U8 bytes
// and their WeightType is recorded in the metadata.
const char* st_dtype(WeightType t, bool* ambiguous) {
  *ambiguous = false;
  switch (t) {
    case WeightType::kF32: return "F32";
    case WeightType::kF16: return "F16";
    case WeightType::kBF16: return "BF16";
    case WeightType::kF64: return "F64";
    case WeightType::kI8: return "I8";
    case WeightType::kI16: return "I16";
    case WeightType::kI32: return "I32";
    case WeightType::kI64: return "I64";
    case WeightType::kU8: return "U8";
    case WeightType::kBool: return "BOOL";
    default: *ambiguous = true; return "U8";
  }
}

WeightType type_from_name(const std::string& path, const std::string& s) {
  for (int i = 0; i <= static_cast<int>(WeightType::kQ6_K); ++i) {
    const auto t = static_cast<WeightType>(i);
    if (s == weight_type_name(t)) return t;
  }
  fail(Status::kBadModelFile, "{}: unknown udaci weight type '{}'", path, s);
}

WeightType type_from_st(const std::string& path, const std::string& name, const std::string& s) {
  static const std::map<std::string, WeightType> m = {
      {"F32", WeightType::kF32}, {"F16", WeightType::kF16}, {"BF16", WeightType::kBF16},
      {"F64", WeightType::kF64}, {"I8", WeightType::kI8},   {"I16", WeightType::kI16},
      {"I32", WeightType::kI32}, {"I64", WeightType::kI64}, {"U8", WeightType::kU8},
      {"BOOL", WeightType::kBool}};
  auto it = m.find(s);
  UDACI_CHECK_S(Status::kBadModelFile, it != m.end(), "{}: tensor '{}' has unsupported dtype '{}'",
                path, name, s);
  return it->second;
}

struct OutTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  const uint8_t* data;
  uint64_t nbytes;
};

void write_safetensors(const std::string& path, const std::vector<OutTensor>& tensors,
                       const std::map<std::string, std::string>& meta) {
  json h = json::object();
  if (!meta.empty()) h["__metadata__"] = meta;
  uint64_t off = 0;
  for (const OutTensor& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes}}};
    off += t.nbytes;
  }
  std::string header = h.dump();
  while (header.size() % 8 != 0) header.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  UDACI_CHECK_S(Status::kInternal, out.good(), "cannot write '{}'", path);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(header.data(), static_cast<std::streamsize>(n));
  for (const OutTensor& t : tensors)
    out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes));
  out.close();
  UDACI_CHECK_S(Status::kInternal, !out.fail(), "writing '{}' failed", path);
}

// Header JSON of a safetensors file, with bounds checked against the file size.
json read_header(const MappedFile& f, uint64_t* data_start) {
  const std::string& path = f.path();
  UDACI_CHECK_S(Status::kBadModelFile, f.size() >= 8, "{}: truncated (no header length)", path);
  uint64_t n = 0;
  std::memcpy(&n, f.data(), 8);
  UDACI_CHECK_S(Status::kBadModelFile, n <= f.size() - 8,
                "{}: truncated or malformed: header length {} exceeds the file ({} bytes)", path, n,
                f.size());
  *data_start = 8 + n;
  try {
    return json::parse(reinterpret_cast<const char*>(f.data()) + 8,
                       reinterpret_cast<const char*>(f.data()) + 8 + n);
  } catch (const json::exception& e) {
    fail(Status::kBadModelFile, "{}: malformed safetensors header: {}", path, e.what());
  }
}

}  // namespace

std::string config_to_json(const ModelConfig& c) {
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_hidden_layers", c.num_layers},
            {"num_attention_heads", c.num_heads},
            {"num_key_value_heads", c.num_kv_heads},
            {"head_dim", c.head_dim},
            {"max_position_embeddings", c.max_position_embeddings},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope_theta},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"attention_bias", c.attention_bias},
            {"mlp_bias", c.mlp_bias},
            {"hidden_act", "silu"}};
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids;
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  if (c.rope_scaling.type != "default") {
    j["rope_scaling"] = {{"rope_type", c.rope_scaling.type},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings",
                          c.rope_scaling.original_max_position_embeddings}};
  }
  return j.dump(2);
}

void write_artefact(const std::string& path, const ModelConfig& config, const WeightStore& store,
                    const std::map<std::string, std::string>& strategy_meta) {
  std::map<std::string, std::string> meta = strategy_meta;
  meta[kArtefactFormatKey] = std::to_string(kArtefactFormatVersion);
  meta["udaci.config"] = config_to_json(config);
  if (!config.rope_freq_factors.empty())
    meta["udaci.rope_freq_factors"] = json(config.rope_freq_factors).dump();
  json types = json::object(), unpermute = json::object();
  std::vector<OutTensor> out;
  for (const std::string& name : store.names()) {
    const TensorEntry& e = store.entry(name);
    bool ambiguous = false;
    const char* dt = st_dtype(e.type, &ambiguous);
    std::vector<int64_t> shape = e.shape;
    if (ambiguous) {
      types[name] = weight_type_name(e.type);
      shape = {static_cast<int64_t>(e.nbytes)};  // raw block bytes; logical shape in metadata
    }
    if (ambiguous || e.unpermute_heads > 0) {
      unpermute[name] = {{"shape", e.shape}, {"unpermute_heads", e.unpermute_heads}};
    }
    out.push_back({name, dt, shape, e.data, e.nbytes});
  }
  meta["udaci.weight_types"] = types.dump();
  meta["udaci.entries"] = unpermute.dump();
  write_safetensors(path, out, meta);
}

bool is_artefact(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec) || fs::path(path).extension() != ".safetensors") return false;
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  if (!in.read(reinterpret_cast<char*>(&n), 8) || n > (64u << 20)) return false;
  std::string h(n, '\0');
  if (!in.read(h.data(), static_cast<std::streamsize>(n))) {
    // A truncated header: claim it when it mentions our key, so that
    // read_artefact reports the truncation.
    return h.find(kArtefactFormatKey) != std::string::npos;
  }
  return h.find(std::string("\"") + kArtefactFormatKey + "\"") != std::string::npos;
}

ModelFiles read_artefact(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::shared_ptr<MappedFile> f = MappedFile::open(path);
  uint64_t data_start = 0;
  const json h = read_header(*f, &data_start);
  UDACI_CHECK_S(Status::kBadModelFile, h.is_object() && h.contains("__metadata__") &&
                                           h["__metadata__"].is_object(),
                "{}: not a udaci artefact (no __metadata__)", path);
  std::map<std::string, std::string> meta;
  for (auto it = h["__metadata__"].begin(); it != h["__metadata__"].end(); ++it) {
    UDACI_CHECK_S(Status::kBadModelFile, it.value().is_string(),
                  "{}: __metadata__ value of '{}' is not a string", path, it.key());
    meta[it.key()] = it.value().get<std::string>();
  }
  UDACI_CHECK_S(Status::kBadModelFile, meta.count(kArtefactFormatKey),
                "{}: not a udaci artefact (no '{}' in __metadata__)", path, kArtefactFormatKey);
  UDACI_CHECK_S(Status::kBadModelFile,
                meta[kArtefactFormatKey] == std::to_string(kArtefactFormatVersion),
                "{}: unknown udaci artefact format version '{}' (this build reads {})", path,
                meta[kArtefactFormatKey], kArtefactFormatVersion);
  for (const char* k : {"udaci.config", "udaci.weight_types", "udaci.entries"})
    UDACI_CHECK_S(Status::kBadModelFile, meta.count(k), "{}: __metadata__ lacks '{}'", path, k);

  ModelFiles m;
  m.path = path;
  m.format = "udaci-artefact";
  m.config = ModelConfig::from_json_text(meta["udaci.config"], path + " (udaci.config)");
  json types, entries;
  try {
    types = json::parse(meta["udaci.weight_types"]);
    entries = json::parse(meta["udaci.entries"]);
    if (meta.count("udaci.rope_freq_factors"))
      m.config.rope_freq_factors =
          json::parse(meta["udaci.rope_freq_factors"]).get<std::vector<float>>();
  } catch (const json::exception& e) {
    fail(Status::kBadModelFile, "{}: malformed udaci metadata: {}", path, e.what());
  }
  const uint64_t data_len = f->size() - data_start;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const json& t = it.value();
    UDACI_CHECK_S(Status::kBadModelFile,
                  t.is_object() && t.contains("dtype") && t.contains("shape") &&
                      t.contains("data_offsets") && t["data_offsets"].is_array() &&
                      t["data_offsets"].size() == 2,
                  "{}: tensor '{}' needs dtype, shape and data_offsets", path, name);
    TensorEntry e;
    e.name = name;
    e.source = path;
    e.owner = f;
    const uint64_t b = t["data_offsets"][0].get<uint64_t>();
    const uint64_t end = t["data_offsets"][1].get<uint64_t>();
    UDACI_CHECK_S(Status::kBadModelFile, b <= end && end <= data_len,
                  "{}: truncated: tensor '{}' spans bytes [{}, {}) of a {}-byte data section",
                  path, name, b, end, data_len);
    e.data = f->data() + data_start + b;
    e.nbytes = end - b;
    e.type = type_from_st(path, name, t["dtype"].get<std::string>());
    e.shape = t["shape"].get<std::vector<int64_t>>();
    if (types.contains(name)) {
      UDACI_CHECK_S(Status::kBadModelFile, e.type == WeightType::kU8,
                    "{}: tensor '{}' has a udaci weight type but dtype is not U8", path, name);
      e.type = type_from_name(path, types[name].get<std::string>());
    }
    if (entries.contains(name)) {
      try {
        e.shape = entries[name].at("shape").get<std::vector<int64_t>>();
        e.unpermute_heads = entries[name].at("unpermute_heads").get<int64_t>();
      } catch (const json::exception& ex) {
        fail(Status::kBadModelFile, "{}: malformed udaci.entries for '{}': {}", path, name,
             ex.what());
      }
    }
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      UDACI_CHECK_S(Status::kBadModelFile, d >= 0, "{}: tensor '{}' has a negative dimension",
                    path, name);
      numel *= static_cast<uint64_t>(d);
    }
    uint64_t want = 0;
    try {
      want = weight_type_nbytes(e.type, numel);
    } catch (const Error&) {
      fail(Status::kBadModelFile, "{}: tensor '{}': {} elements do not fit type {}", path, name,
           numel, weight_type_name(e.type));
    }
    UDACI_CHECK_S(Status::kBadModelFile, want == e.nbytes,
                  "{}: metadata/tensor mismatch: '{}' ({} {}) needs {} bytes, holds {}", path,
                  name, weight_type_name(e.type), numel, want, e.nbytes);
    m.weights.add(std::move(e));
  }
  for (auto it = types.begin(); it != types.end(); ++it)
    UDACI_CHECK_S(Status::kBadModelFile, m.weights.has(it.key()),
                  "{}: udaci.weight_types names '{}', which has no tensor", path, it.key());
  if (metadata) *metadata = std::move(meta);
  return m;
}

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
    at::ScalarType dt = at::kFloat;
    if (o.dequantize == "f16") dt = at::kHalf;
    else if (o.dequantize == "bf16") dt = at::kBFloat16;
    else UDACI_CHECK(o.dequantize == "f32", "--dequantize wants f32, f16 or bf16, not '{}'", o.dequantize);
    UDACI_CHECK(o.quantizer == "none" && o.pruner != "2:4",
                "--dequantize writes plain dense weights; it cannot be combined with a quantizer "
                "or the packed 2:4 pruner");
    fs::create_directories(output_path, ec);
    std::vector<at::Tensor> keep;
    std::vector<OutTensor> out;
    for (const std::string& name : files.weights.names()) {
      at::Tensor t = files.weights.tensor(name, dt).contiguous();
      keep.push_back(t);
      out.push_back({name, dt == at::kFloat ? "F32" : dt == at::kHalf ? "F16" : "BF16",
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
