#include "model/gguf_llama.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"

namespace udaci {

namespace {

std::string llama_key(const char* suffix) { return std::string("llama.") + suffix; }

int64_t required_int(const GgufFile& g, const std::string& key) {
  UDACI_CHECK_S(Status::kBadModelFile, g.has(key), "{}: missing required metadata key '{}'",
                g.path(), key);
  return g.get_int(key);
}

// Collects eos, eot and eom ids (deduplicated, in that order): chat models end
// a turn with eot/eom rather than eos (llama.cpp llama_vocab::is_eog).
std::vector<int64_t> end_of_generation_ids(const GgufFile& g) {
  std::vector<int64_t> ids;
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                        "tokenizer.ggml.eom_token_id"}) {
    if (!g.has(k)) continue;
    const int64_t id = g.get_int(k);
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

// general.file_type: llama_ftype of llama.h (the dominant tensor format).
std::string file_type_name(int64_t ft) {
  switch (ft) {
    case 0: return "F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K_S";
    case 12: return "Q3_K_M";
    case 13: return "Q3_K_L";
    case 14: return "Q4_K_S";
    case 15: return "Q4_K_M";
    case 16: return "Q5_K_S";
    case 17: return "Q5_K_M";
    case 18: return "Q6_K";
    case 32: return "BF16";
    default: return fmt::format("GGUF file_type {}", ft);
  }
}

}  // namespace

ModelConfig model_config_from_gguf(const GgufFile& g) {
  const std::string& src = g.path();
  UDACI_CHECK_S(Status::kBadModelFile, g.has("general.architecture"),
                "{}: missing metadata key 'general.architecture'", src);
  const std::string& arch = g.get_string("general.architecture");
  UDACI_CHECK_S(Status::kUnsupported, arch == "llama",
                "{}: general.architecture must be \"llama\" (a Llama-architecture model), got \"{}\"",
                src, arch);

  ModelConfig c;
  c.hidden_size = required_int(g, llama_key("embedding_length"));
  c.num_layers = required_int(g, llama_key("block_count"));
  c.intermediate_size = required_int(g, llama_key("feed_forward_length"));
  c.num_heads = required_int(g, llama_key("attention.head_count"));
  c.num_kv_heads = g.get_int_or(llama_key("attention.head_count_kv"), c.num_heads);
  c.rms_norm_eps = g.get_float(llama_key("attention.layer_norm_rms_epsilon"));
  c.rope_theta = g.get_float_or(llama_key("rope.freq_base"), 10000.0);
  c.max_position_embeddings = g.get_int_or(llama_key("context_length"), 2048);

  // head_dim: attention.key_length when present (it may differ from
  // hidden/heads), else hidden / heads. The rotary dimension must cover the
  // whole head: partial rotary is not a Llama feature.
  const int64_t default_head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  c.head_dim = g.get_int_or(llama_key("attention.key_length"), default_head_dim);
  if (g.has(llama_key("attention.value_length"))) {
    const int64_t vl = g.get_int(llama_key("attention.value_length"));
    UDACI_CHECK_S(Status::kUnsupported, vl == c.head_dim,
                  "{}: llama.attention.value_length ({}) differs from the key length ({})", src, vl,
                  c.head_dim);
  }
  if (g.has(llama_key("rope.dimension_count"))) {
    const int64_t rot = g.get_int(llama_key("rope.dimension_count"));
    UDACI_CHECK_S(Status::kUnsupported, rot == c.head_dim,
                  "{}: llama.rope.dimension_count ({}) must equal the head dimension ({}); partial "
                  "rotary embeddings are not supported",
                  src, rot, c.head_dim);
  }

  // Vocabulary: llama.vocab_size, else the token list; the embedding matrix
  // must agree (llama.cpp builds it as [n_embd, n_vocab]).
  if (g.has(llama_key("vocab_size"))) {
    c.vocab_size = g.get_int(llama_key("vocab_size"));
  } else if (g.has("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(g.array_length("tokenizer.ggml.tokens"));
  } else if (g.has_tensor("token_embd.weight")) {
    c.vocab_size = g.tensor("token_embd.weight").shape()[0];
  }
  if (g.has_tensor("token_embd.weight")) {
    const GgufTensorInfo& e = g.tensor("token_embd.weight");
    UDACI_CHECK_S(Status::kBadModelFile,
                  e.dims.size() == 2 && e.dims[0] == c.hidden_size && e.dims[1] == c.vocab_size,
                  "{}: token_embd.weight has dims [{}], expected [{}, {}] (embedding_length, "
                  "vocab size)",
                  src, fmt::join(e.dims, ", "), c.hidden_size, c.vocab_size);
  }

  // Rope scaling. Llama 3.x carries its scaling as rope_freqs.weight instead
  // (see gguf_rope_freq_factors).
  const std::string stype = g.get_string_or(llama_key("rope.scaling.type"), "none");
  if (stype == "linear") {
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = g.get_float(llama_key("rope.scaling.factor"));
    UDACI_CHECK_S(Status::kBadModelFile, c.rope_scaling.factor > 0,
                  "{}: llama.rope.scaling.factor must be > 0, got {}", src,
                  c.rope_scaling.factor);
  } else if (stype != "none") {
    fail(Status::kUnsupported,
         "{}: llama.rope.scaling.type \"{}\" is not supported (expected none or linear)", src,
         stype);
  }

  c.tie_word_embeddings = !g.has_tensor("output.weight");
  c.attention_bias = g.has_tensor("blk.0.attn_q.bias");
  c.mlp_bias = g.has_tensor("blk.0.ffn_up.bias");
  c.bos_token_id = g.get_int_or("tokenizer.ggml.bos_token_id", -1);
  c.eos_token_ids = end_of_generation_ids(g);
  if (g.has("general.file_type")) c.torch_dtype = file_type_name(g.get_int("general.file_type"));
  c.validate(src);
  return c;
}

std::vector<float> gguf_rope_freq_factors(const GgufFile& g) {
  if (!g.has_tensor("rope_freqs.weight")) return {};
  const GgufTensorInfo& t = g.tensor("rope_freqs.weight");
  UDACI_CHECK_S(Status::kBadModelFile, t.ggml_type == 0 && t.dims.size() == 1,
                "{}: rope_freqs.weight must be a 1-D F32 tensor, got {} with {} dims", g.path(),
                t.type_info->name, t.dims.size());
  std::vector<float> out(static_cast<size_t>(t.dims[0]));
  std::memcpy(out.data(), t.data, out.size() * sizeof(float));
  for (float f : out) {
    UDACI_CHECK_S(Status::kBadModelFile, std::isfinite(f) && f > 0,
                  "{}: rope_freqs.weight holds {}, expected positive finite factors", g.path(), f);
  }
  return out;
}

void gguf_weights_to_store(const std::shared_ptr<GgufFile>& g, WeightStore& store) {
  UDACI_CHECK(g != nullptr, "gguf_weights_to_store: null GgufFile");
  // Head counts for the Q/K unpermutation; a non-llama file has no
  // permutation to undo.
  const bool llama = g->has("general.architecture") &&
                     g->type("general.architecture") == GgufValueType::kString &&
                     g->get_string("general.architecture") == "llama";
  const int64_t n_head = llama ? g->get_int_or("llama.attention.head_count", 0) : 0;
  const int64_t n_head_kv = llama ? g->get_int_or("llama.attention.head_count_kv", n_head) : 0;
  std::shared_ptr<const void> owner = g;
  for (const GgufTensorInfo& t : g->tensors()) {
    UDACI_CHECK_S(Status::kUnsupported, t.type_info->weight_type.has_value(),
                  "{}: tensor '{}' has ggml type {}, which udaci cannot dequantise", g->path(),
                  t.name, t.type_info->name);
    TensorEntry e;
    e.name = gguf_to_hf_tensor_name(t.name);
    e.type = *t.type_info->weight_type;
    e.shape = t.shape();
    e.data = t.data;
    e.nbytes = t.nbytes;
    e.owner = owner;
    e.file = g->mapping();
    e.source = g->path();
    // convert_hf_to_gguf.py (LlamaModel.permute) reorders the rows of
    // attn_q (by head_count) and attn_k (by head_count_kv) for llama.cpp's
    // rotary layout.
    const size_t dot = t.name.rfind('.');
    const std::string stem = dot == std::string::npos ? t.name : t.name.substr(0, dot);
    auto ends_with = [&](const char* s) {
      const size_t n = std::strlen(s);
      return stem.size() >= n && stem.compare(stem.size() - n, n, s) == 0;
    };
    if (stem.rfind("blk.", 0) == 0 && ends_with(".attn_q")) e.unpermute_heads = n_head;
    if (stem.rfind("blk.", 0) == 0 && ends_with(".attn_k")) e.unpermute_heads = n_head_kv;
    if (e.unpermute_heads > 0) {
      UDACI_CHECK_S(Status::kBadModelFile, e.shape[0] % (2 * e.unpermute_heads) == 0,
                    "{}: tensor '{}' has {} rows, not divisible into {} heads of even size",
                    g->path(), t.name, e.shape[0], e.unpermute_heads);
    }
    store.add(std::move(e));
  }
}

// ---- tokenizer ---------------------------------------------------------------------

TokenizerSpec tokenizer_spec_from_gguf(const GgufFile& g) {
  const std::string& src = g.path();
  UDACI_CHECK_S(Status::kBadModelFile, g.has("tokenizer.ggml.model"),
                "{}: missing metadata key 'tokenizer.ggml.model' (the file has no tokenizer)", src);
  const std::string& model = g.get_string("tokenizer.ggml.model");
  UDACI_CHECK_S(Status::kUnsupported, model == "gpt2",
                "{}: tokenizer.ggml.model \"{}\" is not supported (udaci reads byte-level BPE, "
                "\"gpt2\")",
                src, model);
  TokenizerSpec s;
  UDACI_CHECK_S(Status::kBadModelFile, g.has("tokenizer.ggml.tokens"),
                "{}: missing metadata key 'tokenizer.ggml.tokens'", src);
  s.tokens = g.get_string_array("tokenizer.ggml.tokens");
  UDACI_CHECK_S(Status::kBadModelFile, !s.tokens.empty(), "{}: tokenizer.ggml.tokens is empty",
                src);
  const int64_t n = static_cast<int64_t>(s.tokens.size());
  if (g.has("tokenizer.ggml.token_type")) {
    const std::vector<int64_t> types = g.get_int_array("tokenizer.ggml.token_type");
    UDACI_CHECK_S(Status::kBadModelFile, static_cast<int64_t>(types.size()) == n,
                  "{}: tokenizer.ggml.token_type has {} entries for {} tokens", src, types.size(),
                  n);
    s.token_types.reserve(types.size());
    for (size_t i = 0; i < types.size(); ++i) {
      UDACI_CHECK_S(Status::kBadModelFile, types[i] >= 0 && types[i] <= 6,
                    "{}: tokenizer.ggml.token_type[{}] is {}, expected 0..6", src, i, types[i]);
      s.token_types.push_back(static_cast<TokenType>(types[i]));
    }
  }
  if (g.has("tokenizer.ggml.merges")) s.merges = g.get_string_array("tokenizer.ggml.merges");
  s.pre_tokenizer = g.get_string_or("tokenizer.ggml.pre", "default");

  auto id = [&](const char* key) {
    const int64_t v = g.get_int_or(key, -1);
    UDACI_CHECK_S(Status::kBadModelFile, v >= -1 && v < n,
                  "{}: {} is {}, outside the vocabulary of {} tokens", src, key, v, n);
    return v;
  };
  s.bos_id = id("tokenizer.ggml.bos_token_id");
  s.eos_id = id("tokenizer.ggml.eos_token_id");
  s.pad_id = id("tokenizer.ggml.padding_token_id");
  s.unk_id = id("tokenizer.ggml.unknown_token_id");
  id("tokenizer.ggml.eot_token_id");
  id("tokenizer.ggml.eom_token_id");
  s.eos_ids = end_of_generation_ids(g);
  // convert_hf_to_gguf.py writes the key from tokenizer_config.json; when it
  // is absent, follow the HF byte-level BPE default of not adding BOS.
  s.add_bos = g.get_bool_or("tokenizer.ggml.add_bos_token", false);
  s.add_eos = g.get_bool_or("tokenizer.ggml.add_eos_token", false);
  s.chat_template = g.get_string_or("tokenizer.chat_template", "");
  return s;
}

}  // namespace udaci
