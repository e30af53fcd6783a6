// Everything a byte-level BPE tokenizer needs, independent of where it was read
// from: tokenizer.json (+ tokenizer_config.json) or GGUF metadata
// (tokenizer.ggml.*). Readers fill a TokenizerSpec; Tokenizer is built from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace udaci {

// Token types as GGUF stores them (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct TokenizerSpec {
  // Token strings by id, in the byte-to-unicode alphabet of GPT-2 for normal
  // tokens (e.g. "Ġthe"); special/added tokens verbatim (e.g. "<|im_start|>").
  std::vector<std::string> tokens;
  std::vector<TokenType> token_types;  // same length as tokens, or empty
  // Merges in rank order, each "left right" (space separated), as in both
  // tokenizer.json and tokenizer.ggml.merges.
  std::vector<std::string> merges;
  // Pre-tokenizer by name: "gpt2" (GPT-2 regex), "smollm" (digits split one by
  // one, then the GPT-2 regex), "llama3"/"llama-bpe" (Llama 3 regex); GGUF
  // readers put the raw tokenizer.ggml.pre value here.
  std::string pre_tokenizer = "gpt2";
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  int64_t pad_id = -1;
  int64_t unk_id = -1;
  std::vector<int64_t> eos_ids;  // all ids that end generation (eos_id included)
  bool add_bos = false;          // prepend BOS when encoding with special tokens
  bool add_eos = false;
  std::string chat_template;     // Jinja text, empty when the model has none
};

}  // namespace udaci
