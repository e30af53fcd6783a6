// The Llama checkpoint's tensor names, written once: the Hugging Face names
// udaci uses everywhere (WeightStore keys, LinearSpec names) and the GGUF names
// llama.cpp's converter writes, side by side in one table. The loader, the
// GGUF reader and writer, the pruners, the quantizers and the parallel plans
// spell names through this header only.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/model_config.hpp"

namespace udaci {

// Global tensors (Hugging Face prefixes; ".weight" / ".bias" follow).
inline constexpr const char* kLlamaEmbed = "model.embed_tokens";
inline constexpr const char* kLlamaFinalNorm = "model.norm";
inline constexpr const char* kLlamaHead = "lm_head";
inline constexpr const char* kLlamaLayerPrefix = "model.layers.";

// The parts of one decoder layer.
enum class LlamaPart { kAttnNorm, kQ, kK, kV, kO, kFfnNorm, kGate, kUp, kDown };

struct LlamaPartName {
  LlamaPart part;
  const char* hf;    // after "model.layers.N.": "self_attn.q_proj"
  const char* gguf;  // after "blk.N.": "attn_q"
  bool projection;   // a Linear (q/k/v/o, gate/up/down), not a norm
};

// Every part of a layer, in the order of the layer's computation.
const std::array<LlamaPartName, 9>& llama_parts();

// "model.layers.<layer>.<part>": the prefix, without ".weight" / ".bias".
std::string llama_layer_name(int64_t layer, LlamaPart part);

struct LlamaLayerTensor {
  int64_t layer = 0;
  LlamaPart part = LlamaPart::kQ;
};
// "model.layers.N.<part>", with or without ".weight" / ".bias" -> {N, part};
// nullopt for any other name.
std::optional<LlamaLayerTensor> parse_llama_layer_name(const std::string& hf_name);

// The shape of the part's weight under config c: [out, in] for a projection,
// [hidden] for a norm.
std::vector<int64_t> llama_part_shape(const ModelConfig& c, LlamaPart part);
// Whether the config gives the part a bias (attention_bias: q/k/v/o;
// mlp_bias: gate/up/down; norms never).
bool llama_part_has_bias(const ModelConfig& c, LlamaPart part);

// A GGUF tensor name as Hugging Face names it (blk.3.attn_q.weight ->
// model.layers.3.self_attn.q_proj.weight); other names are returned as they are.
std::string gguf_to_hf_tensor_name(const std::string& gguf_name);

// The inverse (model.layers.3.self_attn.q_proj.weight -> blk.3.attn_q.weight).
// Names with no GGUF counterpart (rotary caches, other architectures' parts)
// give "".
std::string hf_to_gguf_tensor_name(const std::string& hf_name);

}  // namespace udaci
