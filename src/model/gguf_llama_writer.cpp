#include "model/gguf_llama_writer.hpp"

#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>

#include "core/error.hpp"
#include "core/strings.hpp"
#include "io/gguf_reader.hpp"
#include "io/gguf_writer.hpp"
#include "model/rope.hpp"

namespace udaci {
namespace {

// ggml type ids (enum ggml_type) of what udaci writes.
constexpr uint32_t kGgmlF32 = 0, kGgmlQ4_1 = 3, kGgmlQ8_0 = 8;

// ggml type id of a stored WeightType that GGUF holds as it is; nullopt else.
std::optional<uint32_t> ggml_id_of(WeightType t) {
  for (uint32_t id = 0; id < 64; ++id) {
    const GgmlTypeInfo* info = ggml_type_info(id);
    if (info && info->weight_type == t && t != WeightType::kI8 && t != WeightType::kI16 &&
        t != WeightType::kI32 && t != WeightType::kI64 && t != WeightType::kF64)
      return id;
  }
  return std::nullopt;
}

using Buffer = std::shared_ptr<std::vector<uint8_t>>;

// For each row of a Q or K projection in llama.cpp's order, the row in the
// Hugging Face (rotate-half) order it comes from: convert_hf_to_gguf.py's
// permute interleaves the two halves of every head.
std::vector<int64_t> hf_rows_in_gguf_order(int64_t rows, int64_t heads, const std::string& name) {
  UDACI_CHECK_S(Status::kBadModelFile, heads > 0 && rows % (2 * heads) == 0,
                "tensor '{}': {} rows do not split into {} heads of even size", name, rows, heads);
  const int64_t hd = rows / heads, half = hd / 2;
  std::vector<int64_t> order(static_cast<size_t>(rows));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j) order[h * hd + 2 * i + j] = h * hd + j * half + i;
  return order;
}

Buffer permute_rows(const uint8_t* data, uint64_t nbytes, const std::vector<int64_t>& order) {
  const uint64_t rows = order.size(), row_bytes = nbytes / rows;
  auto out = std::make_shared<std::vector<uint8_t>>(nbytes);
  for (uint64_t r = 0; r < rows; ++r)
    std::memcpy(out->data() + r * row_bytes, data + static_cast<uint64_t>(order[r]) * row_bytes,
                row_bytes);
  return out;
}

// Q8_0 blocks (ggml's quantize_row_q8_0: d = max|x| / 127 stored as f16,
// q = round(x / d)) of a [rows, cols] fp32 matrix.
Buffer quantize_q8_0(const float* w, int64_t rows, int64_t cols) {
  const int64_t blocks = cols / 32;
  auto out = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(rows * blocks * 34));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* x = w + r * cols + b * 32;
      uint8_t* blk = out->data() + (r * blocks + b) * 34;
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
      const float d = amax / 127.0f;
      const float id = d > 0.0f ? 1.0f / d : 0.0f;
      const uint16_t dh = c10::Half(d).x;
      std::memcpy(blk, &dh, 2);
      for (int i = 0; i < 32; ++i)
        blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::nearbyint(x[i] * id)));
    }
  }
  return out;
}

// Q4_1 blocks from udaci's int4 affine parts with group 32: the same packed
// nibbles, f16 scale and minimum, interleaved per block as ggml's block_q4_1
// {d, m, qs[16]}.
Buffer int4_to_q4_1(const TensorEntry& packed, const TensorEntry& scales, const TensorEntry& mins,
                    int64_t rows, int64_t cols) {
  const int64_t blocks = cols / 32;
  auto out = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(rows * blocks * 20));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* blk = out->data() + (r * blocks + b) * 20;
      std::memcpy(blk, scales.data + (r * blocks + b) * 2, 2);
      std::memcpy(blk + 2, mins.data + (r * blocks + b) * 2, 2);
      std::memcpy(blk + 4, packed.data + r * (cols / 2) + b * 16, 16);
    }
  }
  return out;
}

// GGUF's tokenizer.ggml.pre for a udaci pre-tokenizer name.
std::string gguf_pre_name(const std::string& pre) {
  if (pre == "gpt2") return "gpt-2";
  if (pre == "llama3") return "llama-bpe";
  return pre;  // GGUF names ("smollm", "llama-bpe", ...) pass through
}

// llama.cpp's llama_ftype for the type of the model's projections.
std::pair<uint32_t, std::string> file_type_of(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0: return {0, "F32"};
    case 1: return {1, "F16"};
    case 2: return {2, "Q4_0"};
    case 3: return {3, "Q4_1"};
    case 8: return {7, "Q8_0"};
    case 12: return {15, "Q4_K_M"};
    case 13: return {17, "Q5_K_M"};
    case 14: return {18, "Q6_K"};
    case 30: return {32, "BF16"};
    default: return {0, "F32"};
  }
}

}  // namespace

// ---- the model -------------------------------------------------------------------

GgufExportReport write_model_gguf(const std::string& path, const ModelConfig& c,
                                  const WeightStore& store, const TokenizerSpec* tok,
                                  const std::string& model_name) {
  GgufWriter w;
  GgufExportReport report;

  // Where a tensor of the store goes: its GGUF name, and the Hugging Face
  // name whose rows follow the rotary permutation.
  const bool split_embed = store.has("model.embed_tokens.embed_weight");
  auto gguf_name_of = [&](const std::string& stem) -> std::string {
    if (stem == "model.embed_tokens.head_weight") return "output.weight";
    if (stem == "model.embed_tokens.embed_weight") return "token_embd.weight";
    if (stem == "model.embed_tokens.weight" && split_embed) return "output.weight";
    if (!starts_with(stem, "model.") && !starts_with(stem, "lm_head")) return stem;  // rope_freqs ...
    return hf_to_gguf_tensor_name(stem);
  };
  auto heads_of = [&](const std::string& stem) -> int64_t {
    const std::optional<LlamaLayerTensor> t = parse_llama_layer_name(stem);
    if (t && t->part == LlamaPart::kQ) return c.num_heads;
    if (t && t->part == LlamaPart::kK) return c.num_kv_heads;
    return 0;
  };

  uint32_t projection_type = kGgmlF32;
  for (const std::string& name : store.names()) {
    if (ends_with(name, "_scale") || ends_with(name, "_scales") || ends_with(name, "_mins") ||
        ends_with(name, "_sparse_meta"))
      continue;  // read with their weight
    UDACI_CHECK_S(Status::kUnsupported, !ends_with(name, "_sparse_values"),
                  "tensor '{}' is in udaci's packed 2:4 format, which GGUF has no type for: write a "
                  ".safetensors artefact, or prune with 'magnitude' for a dense GGUF",
                  name);
    const TensorEntry& e = store.entry(name);
    std::string stem = name;
    uint32_t type = 0;
    std::vector<int64_t> shape = e.shape;  // HF order
    const uint8_t* data = e.data;
    uint64_t nbytes = e.nbytes;
    Buffer buf;
    bool hf_row_order = e.unpermute_heads == 0;
    if (ends_with(name, "_packed")) {
      stem = name.substr(0, name.size() - 7);
      UDACI_CHECK_S(Status::kUnsupported, store.has(stem + "_mins"),
                    "tensor '{}' is NF4, which GGUF has no type for: write a .safetensors artefact, "
                    "or use --quantizer int4 (group 32 becomes GGUF Q4_1)",
                    stem);
      const TensorEntry& sc = store.entry(stem + "_scales");
      const int64_t rows = e.shape.at(0), cols = e.shape.at(1) * 2;
      const int64_t group = sc.shape.size() == 2 && sc.shape[1] > 0 ? cols / sc.shape[1] : 0;
      UDACI_CHECK_S(Status::kUnsupported, group == 32,
                    "tensor '{}' is int4 with group {}, which GGUF has no type for: GGUF's Q4_1 is "
                    "int4 affine with group 32 (--quantizer-opt group=32)",
                    stem, group);
      buf = int4_to_q4_1(e, sc, store.entry(stem + "_mins"), rows, cols);
      type = kGgmlQ4_1;
      shape = {rows, cols};
    } else if (e.type == WeightType::kI8 && store.has(name + "_scale")) {
      const at::Tensor q = store.tensor(name, at::kFloat);
      const at::Tensor s = store.tensor(name + "_scale", at::kFloat);
      const at::Tensor deq = (q * s.unsqueeze(1)).contiguous();
      if (e.shape.at(1) % 32 == 0) {
        buf = quantize_q8_0(deq.data_ptr<float>(), e.shape[0], e.shape[1]);
        type = kGgmlQ8_0;
      } else {
        // Rows that Q8_0's blocks of 32 do not tile: the int8 values exactly, as F32.
        const auto* p = static_cast<const uint8_t*>(deq.data_ptr());
        buf = std::make_shared<std::vector<uint8_t>>(p, p + deq.nbytes());
        type = kGgmlF32;
      }
    } else if (e.shape.size() == 1 && (e.type == WeightType::kF16 || e.type == WeightType::kBF16)) {
      // 1-D tensors (norm weights, biases) as F32, as llama.cpp's converter
      // writes them: llama.cpp's CPU ops refuse an f16 norm weight (it aborts
      // in binary_op, "unsupported types: dst: f32, src0: f32, src1: f16").
      const at::Tensor f = store.tensor(name, at::kFloat).contiguous();
      const auto* p = static_cast<const uint8_t*>(f.data_ptr());
      buf = std::make_shared<std::vector<uint8_t>>(p, p + f.nbytes());
      type = kGgmlF32;
    } else {
      const std::optional<uint32_t> id = ggml_id_of(e.type);
      UDACI_CHECK_S(Status::kUnsupported, id.has_value(),
                    "tensor '{}' is stored as {}, which udaci does not write to GGUF", name,
                    weight_type_name(e.type));
      type = *id;
    }
    if (buf) {
      data = buf->data();
      nbytes = buf->size();
      hf_row_order = true;  // rebuilt from tensors kept in the HF order
    }
    const std::string gname = gguf_name_of(stem);
    UDACI_CHECK_S(Status::kUnsupported, !gname.empty(),
                  "tensor '{}' has no GGUF name (udaci writes Llama models)", name);
    const int64_t heads = heads_of(stem);
    if (heads > 0 && hf_row_order) {
      buf = permute_rows(data, nbytes, hf_rows_in_gguf_order(shape.at(0), heads, name));
      data = buf->data();
    }
    std::vector<int64_t> dims(shape.rbegin(), shape.rend());
    w.add_tensor(gname, type, std::move(dims), data, nbytes,
                 buf ? std::shared_ptr<const void>(buf) : e.owner);
    if (gname == "blk.0.attn_q.weight") projection_type = type;
    ++report.tensors;
    report.tensor_bytes += static_cast<int64_t>(nbytes);
  }

  // Llama 3.x rope scaling: llama.cpp reads it as per-frequency divisors.
  std::vector<float> factors = c.rope_freq_factors;
  if (factors.empty() && c.rope_scaling.type == "llama3") {
    ModelConfig plain = c;
    plain.rope_scaling = RopeScaling{};
    const at::Tensor base = Rope(plain).inv_freq(), scaled = Rope(c).inv_freq();
    const at::Tensor f = (base / scaled).contiguous();
    factors.assign(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
  }
  auto factor_buf = std::make_shared<std::vector<uint8_t>>(factors.size() * sizeof(float));
  if (!factors.empty() && !store.has("rope_freqs.weight")) {
    std::memcpy(factor_buf->data(), factors.data(), factor_buf->size());
    w.add_tensor("rope_freqs.weight", kGgmlF32, {static_cast<int64_t>(factors.size())},
                 factor_buf->data(), factor_buf->size(), factor_buf);
    ++report.tensors;
  }

  const auto [ftype, fname] = file_type_of(projection_type);
  report.file_type = fname;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", model_name);
  w.set_u32("general.file_type", ftype);
  w.set_u32("general.quantization_version", 2);
  w.set_u32("llama.context_length", static_cast<uint32_t>(c.max_position_embeddings));
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.set_u32("llama.block_count", static_cast<uint32_t>(c.num_layers));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(c.num_heads));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.num_kv_heads));
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  if (c.num_heads * c.head_dim != c.hidden_size) {
    w.set_u32("llama.attention.key_length", static_cast<uint32_t>(c.head_dim));
    w.set_u32("llama.attention.value_length", static_cast<uint32_t>(c.head_dim));
  }
  w.set_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.set_f32("llama.rope.freq_base", static_cast<float>(c.rope_theta));
  w.set_u32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (c.rope_scaling.type == "linear") {
    w.set_string("llama.rope.scaling.type", "linear");
    w.set_f32("llama.rope.scaling.factor", static_cast<float>(c.rope_scaling.factor));
  }

  if (tok != nullptr) {
    UDACI_CHECK_S(Status::kBadModelFile,
                  static_cast<int64_t>(tok->tokens.size()) <= c.vocab_size,
                  "the tokenizer has {} tokens, more than the model's vocabulary of {}",
                  tok->tokens.size(), c.vocab_size);
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", gguf_pre_name(tok->pre_tokenizer));
    w.set_string_array("tokenizer.ggml.tokens", tok->tokens);
    std::vector<int32_t> types(tok->tokens.size(), static_cast<int32_t>(TokenType::kNormal));
    for (size_t i = 0; i < tok->token_types.size() && i < types.size(); ++i)
      types[i] = static_cast<int32_t>(tok->token_types[i]);
    w.set_i32_array("tokenizer.ggml.token_type", types);
    w.set_string_array("tokenizer.ggml.merges", tok->merges);
    if (tok->bos_id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok->bos_id));
    if (tok->eos_id >= 0) w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok->eos_id));
    // Further end-of-generation ids (Llama 3's <|eot_id|>, <|eom_id|>).
    std::vector<int64_t> more;
    for (int64_t id : tok->eos_ids)
      if (id != tok->eos_id) more.push_back(id);
    if (!more.empty()) w.set_u32("tokenizer.ggml.eot_token_id", static_cast<uint32_t>(more[0]));
    if (more.size() > 1) w.set_u32("tokenizer.ggml.eom_token_id", static_cast<uint32_t>(more[1]));
    if (tok->unk_id >= 0) w.set_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(tok->unk_id));
    if (tok->pad_id >= 0) w.set_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(tok->pad_id));
    w.set_bool("tokenizer.ggml.add_bos_token", tok->add_bos);
    w.set_bool("tokenizer.ggml.add_eos_token", tok->add_eos);
    if (!tok->chat_template.empty()) w.set_string("tokenizer.chat_template", tok->chat_template);
  }
  w.write(path);
  return report;
}

}  // namespace udaci
