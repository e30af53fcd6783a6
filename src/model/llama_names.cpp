#include "model/llama_names.hpp"

#include <cstring>

#include "core/strings.hpp"

namespace udaci {

namespace {

struct GlobalName {
  const char* hf;
  const char* gguf;
};
constexpr GlobalName kGlobals[] = {
    {kLlamaEmbed, "token_embd"},
    {kLlamaFinalNorm, "output_norm"},
    {kLlamaHead, "output"},
};

constexpr const char* kGgufLayerPrefix = "blk.";

// Splits "<stem>.weight" / "<stem>.bias"; other names have no suffix.
void split_suffix(const std::string& name, std::string* stem, std::string* suffix) {
  *stem = name;
  suffix->clear();
  for (const char* s : {".weight", ".bias"}) {
    if (ends_with(name, s)) {
      *stem = name.substr(0, name.size() - std::strlen(s));
      *suffix = s;
    }
  }
}

// "<prefix><digits>.<rest>" -> digits and rest; false when it is not that.
bool split_layer(const std::string& stem, const char* prefix, std::string* layer, std::string* rest) {
  if (!starts_with(stem, prefix)) return false;
  const size_t begin = std::strlen(prefix);
  const size_t dot = stem.find('.', begin);
  if (dot == std::string::npos || dot == begin) return false;
  *layer = stem.substr(begin, dot - begin);
  if (layer->find_first_not_of("0123456789") != std::string::npos) return false;
  *rest = stem.substr(dot + 1);
  return true;
}

}  // namespace

const std::array<LlamaPartName, 9>& llama_parts() {
  static const std::array<LlamaPartName, 9> kParts = {{
      {LlamaPart::kAttnNorm, "input_layernorm", "attn_norm", false},
      {LlamaPart::kQ, "self_attn.q_proj", "attn_q", true},
      {LlamaPart::kK, "self_attn.k_proj", "attn_k", true},
      {LlamaPart::kV, "self_attn.v_proj", "attn_v", true},
      {LlamaPart::kO, "self_attn.o_proj", "attn_output", true},
      {LlamaPart::kFfnNorm, "post_attention_layernorm", "ffn_norm", false},
      {LlamaPart::kGate, "mlp.gate_proj", "ffn_gate", true},
      {LlamaPart::kUp, "mlp.up_proj", "ffn_up", true},
      {LlamaPart::kDown, "mlp.down_proj", "ffn_down", true},
  }};
  return kParts;
}

std::string llama_layer_name(int64_t layer, LlamaPart part) {
  return kLlamaLayerPrefix + std::to_string(layer) + "." + llama_parts()[static_cast<size_t>(part)].hf;
}

std::vector<int64_t> llama_part_shape(const ModelConfig& c, LlamaPart part) {
  const int64_t h = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  switch (part) {
    case LlamaPart::kAttnNorm:
    case LlamaPart::kFfnNorm: return {h};
    case LlamaPart::kQ: return {q, h};
    case LlamaPart::kK:
    case LlamaPart::kV: return {kv, h};
    case LlamaPart::kO: return {h, q};
    case LlamaPart::kGate:
    case LlamaPart::kUp: return {c.intermediate_size, h};
    case LlamaPart::kDown: return {h, c.intermediate_size};
  }
  return {};
}

bool llama_part_has_bias(const ModelConfig& c, LlamaPart part) {
  switch (part) {
    case LlamaPart::kQ:
    case LlamaPart::kK:
    case LlamaPart::kV:
    case LlamaPart::kO: return c.attention_bias;
    case LlamaPart::kGate:
    case LlamaPart::kUp:
    case LlamaPart::kDown: return c.mlp_bias;
    default: return false;
  }
}

std::optional<LlamaLayerTensor> parse_llama_layer_name(const std::string& name) {
  std::string stem, suffix, layer, rest;
  split_suffix(name, &stem, &suffix);
  if (!split_layer(stem, kLlamaLayerPrefix, &layer, &rest) || layer.size() > 9) return std::nullopt;
  for (const LlamaPartName& p : llama_parts())
    if (rest == p.hf) return LlamaLayerTensor{std::stoll(layer), p.part};
  return std::nullopt;
}

std::string gguf_to_hf_tensor_name(const std::string& name) {
  // Whatever follows the last dot (".weight", ".bias") is kept.
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return name;
  const std::string stem = name.substr(0, dot), suffix = name.substr(dot);
  std::string layer, rest;
  for (const GlobalName& g : kGlobals)
    if (stem == g.gguf) return g.hf + suffix;
  if (!split_layer(stem, kGgufLayerPrefix, &layer, &rest)) return name;
  for (const LlamaPartName& p : llama_parts())
    if (rest == p.gguf) return kLlamaLayerPrefix + layer + "." + p.hf + suffix;
  return name;
}

std::string hf_to_gguf_tensor_name(const std::string& name) {
  std::string stem, suffix, layer, rest;
  split_suffix(name, &stem, &suffix);
  for (const GlobalName& g : kGlobals)
    if (stem == g.hf) return g.gguf + suffix;
  if (!split_layer(stem, kLlamaLayerPrefix, &layer, &rest)) return {};
  for (const LlamaPartName& p : llama_parts())
    if (rest == p.hf) return kGgufLayerPrefix + layer + "." + p.gguf + suffix;
  return {};
}

}  // namespace udaci
