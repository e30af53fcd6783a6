#include "model/model_config.hpp"

#include "core/limits.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace udaci {

namespace {

using nlohmann::json;

int64_t get_int(const json& j, const std::string& src, const char* key, bool required,
                int64_t fallback) {
  if (!j.contains(key) || j[key].is_null()) {
    UDACI_CHECK_S(Status::kBadModelFile, !required, "{}: missing required key \"{}\"", src, key);
    return fallback;
  }
  const json& v = j[key];
  UDACI_CHECK_S(Status::kBadModelFile, v.is_number_integer(),
                "{}: key \"{}\" must be an integer, got {}", src, key, v.dump());
  return v.get<int64_t>();
}

double get_num(const json& j, const std::string& src, const char* key, double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const json& v = j[key];
  UDACI_CHECK_S(Status::kBadModelFile, v.is_number(), "{}: key \"{}\" must be a number, got {}",
                src, key, v.dump());
  return v.get<double>();
}

bool get_bool(const json& j, const std::string& src, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const json& v = j[key];
  UDACI_CHECK_S(Status::kBadModelFile, v.is_boolean(), "{}: key \"{}\" must be true or false, got {}",
                src, key, v.dump());
  return v.get<bool>();
}

}  // namespace

ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& src) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(Status::kBadModelFile, "{}: not valid JSON: {}", src, e.what());
  }
  UDACI_CHECK_S(Status::kBadModelFile, j.is_object(), "{}: expected a JSON object, got {}", src,
                j.type_name());

  const std::string model_type = j.value("model_type", std::string());
  UDACI_CHECK_S(Status::kUnsupported, model_type == "llama",
                "{}: key \"model_type\" must be \"llama\" (a Llama-architecture model), got \"{}\"",
                src, model_type);
  if (j.contains("hidden_act")) {
    UDACI_CHECK_S(Status::kUnsupported, j["hidden_act"] == "silu",
                  "{}: key \"hidden_act\" must be \"silu\", got {}", src, j["hidden_act"].dump());
  }

  ModelConfig c;
  c.vocab_size = get_int(j, src, "vocab_size", true, 0);
  c.hidden_size = get_int(j, src, "hidden_size", true, 0);
  c.intermediate_size = get_int(j, src, "intermediate_size", true, 0);
  c.num_layers = get_int(j, src, "num_hidden_layers", true, 0);
  c.num_heads = get_int(j, src, "num_attention_heads", true, 0);
  c.num_kv_heads = get_int(j, src, "num_key_value_heads", false, c.num_heads);
  c.head_dim = get_int(j, src, "head_dim", false, c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.max_position_embeddings = get_int(j, src, "max_position_embeddings", false, 2048);
  c.rms_norm_eps = get_num(j, src, "rms_norm_eps", 1e-6);
  c.rope_theta = get_num(j, src, "rope_theta", 10000.0);
  c.tie_word_embeddings = get_bool(j, src, "tie_word_embeddings", false);
  c.attention_bias = get_bool(j, src, "attention_bias", false);
  c.mlp_bias = get_bool(j, src, "mlp_bias", false);
  c.bos_token_id = get_int(j, src, "bos_token_id", false, -1);
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const json& e = j["eos_token_id"];
    if (e.is_array()) {
      for (const json& x : e) {
        UDACI_CHECK_S(Status::kBadModelFile, x.is_number_integer(),
                      "{}: key \"eos_token_id\" must hold integers, got {}", src, x.dump());
        c.eos_token_ids.push_back(x.get<int64_t>());
      }
    } else {
      c.eos_token_ids.push_back(get_int(j, src, "eos_token_id", true, 0));
    }
  }
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) c.torch_dtype = j["torch_dtype"];
  else if (j.contains("dtype") && j["dtype"].is_string()) c.torch_dtype = j["dtype"];

  // transformers < 5 writes "rope_theta" and "rope_scaling" at the top level;
  // transformers 5 writes one "rope_parameters" object holding both.
  const char* rope_key = nullptr;
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    rope_key = "rope_parameters";
    const json& rp = j["rope_parameters"];
    UDACI_CHECK_S(Status::kBadModelFile, rp.is_object(),
                  "{}: key \"rope_parameters\" must be an object, got {}", src, rp.dump());
    c.rope_theta = get_num(rp, src + " rope_parameters", "rope_theta", c.rope_theta);
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    rope_key = "rope_scaling";
  }
  if (rope_key != nullptr) {
    const json& rs = j[rope_key];
    UDACI_CHECK_S(Status::kBadModelFile, rs.is_object(),
                  "{}: key \"{}\" must be an object or null, got {}", src, rope_key, rs.dump());
    std::string type;
    if (rs.contains("rope_type") && rs["rope_type"].is_string()) type = rs["rope_type"];
    else if (rs.contains("type") && rs["type"].is_string()) type = rs["type"];
    if (type.empty() && std::string(rope_key) == "rope_parameters") type = "default";
    UDACI_CHECK_S(Status::kBadModelFile, !type.empty(),
                  "{}: key \"{}\" needs a \"rope_type\" string", src, rope_key);
    const std::string where = src + " " + rope_key;
    c.rope_scaling.type = type;
    if (type == "llama3") {
      c.rope_scaling.factor = get_num(rs, where, "factor", 0);
      c.rope_scaling.low_freq_factor = get_num(rs, where, "low_freq_factor", 0);
      c.rope_scaling.high_freq_factor = get_num(rs, where, "high_freq_factor", 0);
      c.rope_scaling.original_max_position_embeddings =
          get_int(rs, where, "original_max_position_embeddings", true, 0);
      UDACI_CHECK_S(Status::kBadModelFile,
                    c.rope_scaling.factor > 0 && c.rope_scaling.low_freq_factor > 0 &&
                        c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor &&
                        c.rope_scaling.original_max_position_embeddings > 0,
                    "{}: llama3 rope_scaling needs factor > 0 and high_freq_factor > "
                    "low_freq_factor > 0, original_max_position_embeddings > 0",
                    src);
    } else if (type == "linear") {
      c.rope_scaling.factor = get_num(rs, where, "factor", 0);
      UDACI_CHECK_S(Status::kBadModelFile, c.rope_scaling.factor > 0,
                    "{}: linear rope_scaling needs \"factor\" > 0", src);
    } else if (type != "default") {
      fail(Status::kUnsupported,
           "{}: {} type \"{}\" is not supported (expected default, linear or llama3)", src,
           rope_key, type);
    }
  }
  c.validate(src);
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  return from_json_text(read_file_capped(path, kMaxConfigFileBytes, "the model config"), path);
}

void ModelConfig::validate(const std::string& src) const {
  auto positive = [&](int64_t v, const char* key) {
    UDACI_CHECK_S(Status::kBadModelFile, v > 0, "{}: \"{}\" must be a positive integer, got {}",
                  src, key, v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_layers, "num_hidden_layers");
  positive(num_heads, "num_attention_heads");
  positive(num_kv_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(max_position_embeddings, "max_position_embeddings");
  auto at_most = [&](int64_t v, int64_t limit, const char* key) {
    UDACI_CHECK_S(Status::kBadModelFile, v <= limit, "{}: \"{}\" is {}, over the limit of {}", src,
                  key, v, limit);
  };
  at_most(vocab_size, kMaxVocabSize, "vocab_size");
  at_most(hidden_size, kMaxHiddenSize, "hidden_size");
  at_most(intermediate_size, kMaxIntermediateSize, "intermediate_size");
  at_most(num_layers, kMaxLayers, "num_hidden_layers");
  at_most(num_heads, kMaxHeads, "num_attention_heads");
  at_most(head_dim, kMaxHeadDim, "head_dim");
  at_most(max_position_embeddings, kMaxContext, "max_position_embeddings");
  UDACI_CHECK_S(Status::kBadModelFile, num_heads % num_kv_heads == 0,
                "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", src,
                num_heads, num_kv_heads);
  UDACI_CHECK_S(Status::kBadModelFile, head_dim % 2 == 0,
                "{}: head_dim must be even for rotary embeddings, got {}", src, head_dim);
  UDACI_CHECK_S(Status::kBadModelFile, rms_norm_eps > 0 && rms_norm_eps < 1,
                "{}: rms_norm_eps must be in (0, 1), got {}", src, rms_norm_eps);
  UDACI_CHECK_S(Status::kBadModelFile, rope_theta > 0, "{}: rope_theta must be > 0, got {}", src,
                rope_theta);
  for (int64_t e : eos_token_ids) {
    UDACI_CHECK_S(Status::kBadModelFile, e >= 0 && e < vocab_size,
                  "{}: eos_token_id {} is outside the vocabulary of {}", src, e, vocab_size);
  }
}

int64_t ModelConfig::parameter_count() const {
  const int64_t h = hidden_size;
  const int64_t attn = h * num_heads * head_dim * 2 + h * num_kv_heads * head_dim * 2;
  const int64_t mlp = 3 * h * intermediate_size;
  const int64_t per_layer = attn + mlp + 2 * h;
  const int64_t emb = vocab_size * h;
  return emb * (tie_word_embeddings ? 1 : 2) + num_layers * per_layer + h;
}

}  // namespace udaci
