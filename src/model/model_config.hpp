// Every shape and constant of a Llama-architecture model, read from a Hugging
// Face config.json (or GGUF metadata, issue #3) and validated where it is read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace udaci {

struct RopeScaling {
  // "default" (none), "linear" (positions divided by factor) or "llama3" (the
  // frequency-dependent scaling of Llama 3.1/3.2).
  std::string type = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Per-frequency divisors of the rotary inverse frequencies ([head_dim / 2]),
  // as Llama 3.x GGUF files store their llama3 scaling (tensor
  // rope_freqs.weight); empty when unused.
  std::vector<float> rope_freq_factors;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // informational: the dtype the checkpoint was saved in

  // Parses and validates a config.json text; `source` names the file in
  // messages. Throws Error(kBadModelFile) naming the key and what was expected.
  static ModelConfig from_json_text(const std::string& text, const std::string& source);
  static ModelConfig from_file(const std::string& path);

  // Checks the relations between fields (heads divide, positive sizes).
  void validate(const std::string& source) const;

  // Parameter count implied by the shapes (tied head counted once).
  int64_t parameter_count() const;
};

}  // namespace udaci
