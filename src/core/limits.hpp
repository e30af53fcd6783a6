// Limits on what udaci reads from files it did not make (model folders, GGUF
// and safetensors files, tokenizer and config JSON). Real models are far below
// each; a larger value is a corrupt or hostile file, refused with
// Error(kBadModelFile) naming the file, the value and the limit before
// anything of that size is allocated. GGUF's own limits (metadata entries,
// string and array lengths) are in io/gguf_reader.hpp. docs/SECURITY.md lists
// them all.
#pragma once

#include <cstdint>
#include <string>

namespace udaci {

// One model file (GGUF, safetensors shard): the largest public checkpoints in
// F16 are under 1 TiB.
inline constexpr uint64_t kMaxModelFileBytes = 2ull << 40;
// Tensors in one safetensors file (a 405B Llama has ~1.1k in all).
inline constexpr uint64_t kMaxSafetensorsTensors = 1ull << 16;
// Dimensions of one tensor.
inline constexpr uint64_t kMaxTensorRank = 8;
// tokenizer.json (Llama 3's is 9 MB).
inline constexpr uint64_t kMaxTokenizerJsonBytes = 256ull << 20;
// config.json, tokenizer_config.json, generation_config.json,
// chat_template.jinja, model.safetensors.index.json.
inline constexpr uint64_t kMaxConfigFileBytes = 16ull << 20;
// Tokens and merges of a vocabulary (Llama 3: 128k tokens, 280k merges).
inline constexpr uint64_t kMaxVocabTokens = 1ull << 22;
inline constexpr uint64_t kMaxMerges = 1ull << 23;
// A chat template's Jinja text (real ones are 1-10 KiB).
inline constexpr uint64_t kMaxChatTemplateBytes = 1ull << 20;
// Model shape (config.json or GGUF llama.*): sizes beyond these are no model
// udaci could run, and would only make the cache arithmetic overflow.
inline constexpr int64_t kMaxHiddenSize = 1 << 17;
inline constexpr int64_t kMaxIntermediateSize = 1 << 20;
inline constexpr int64_t kMaxLayers = 1024;
inline constexpr int64_t kMaxHeads = 1024;
inline constexpr int64_t kMaxHeadDim = 1024;
inline constexpr int64_t kMaxVocabSize = 1 << 22;
inline constexpr int64_t kMaxContext = 1 << 24;

// The whole file as text, refused before reading when it is larger than
// `max_bytes`: Error(kNotFound) when it cannot be opened, kBadModelFile
// "<path>: <what> is N bytes, over the limit of M" when too large.
std::string read_file_capped(const std::string& path, uint64_t max_bytes, const char* what);

}  // namespace udaci
