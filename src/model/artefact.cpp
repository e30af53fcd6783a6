#include "model/artefact.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/error.hpp"
#include "io/mapped_file.hpp"
#include "io/safetensors_writer.hpp"

namespace udaci {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Safetensors dtype for a storage type; block formats are stored as U8 bytes
// and their WeightType is recorded in the metadata.
const char* st_dtype(WeightType t, bool* ambiguous) {
  *ambiguous = weight_type_is_block(t);
  return *ambiguous ? "U8" : weight_type_name(t);
}

// A udaci weight type recorded in the metadata (any storage name).
WeightType type_from_name(const std::string& path, const std::string& s) {
  const std::optional<WeightType> t = weight_type_from_name(s);
  UDACI_CHECK_S(Status::kBadModelFile, t.has_value(), "{}: unknown udaci weight type '{}'", path, s);
  return *t;
}

// A tensor's safetensors dtype (a plain storage name).
WeightType type_from_st(const std::string& path, const std::string& name, const std::string& s) {
  const std::optional<WeightType> t = weight_type_from_name(s);
  UDACI_CHECK_S(Status::kBadModelFile, t && !weight_type_is_block(*t),
                "{}: tensor '{}' has unsupported dtype '{}'", path, name, s);
  return *t;
}

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

}  // namespace udaci
