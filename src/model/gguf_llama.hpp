// A GGUF file read as a Llama model: its llama.* keys as a ModelConfig, its
// tensors under Hugging Face names in a WeightStore, its tokenizer.ggml.* keys
// as a TokenizerSpec (io/gguf_reader.hpp reads the container).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/gguf_reader.hpp"
#include "io/weight_store.hpp"
#include "model/llama_names.hpp"
#include "model/model_config.hpp"
#include "text/tokenizer_spec.hpp"

namespace udaci {

// Hyper-parameters of a llama-architecture GGUF (general.architecture must be
// "llama", Error(kUnsupported) otherwise) from the llama.* keys, validated.
// Rope scaling: llama.rope.scaling.type "linear" (+ factor) maps onto
// RopeScaling; Llama 3.x files instead carry the llama3 scaling as the tensor
// `rope_freqs.weight` (see gguf_rope_freq_factors) and leave the type
// "default" here.
ModelConfig model_config_from_gguf(const GgufFile& gguf);

// Llama 3.x GGUFs store the llama3 rope scaling as per-frequency divisors in
// the F32 tensor `rope_freqs.weight` ([head_dim / 2]): the rotary inverse
// frequency i becomes theta^(-2i/head_dim) / factors[i] (llama.cpp's
// "freq_factors"; convert_hf_to_gguf.py computes them from the HF rope_scaling
// block). Empty when the file has no such tensor.
std::vector<float> gguf_rope_freq_factors(const GgufFile& gguf);

// Adds every tensor of the file to `store` under its HF name, shape in HF order
// (outermost first), zero-copy over the mapping. Q and K projections get
// `unpermute_heads` (llama.head_count / llama.head_count_kv) so that
// WeightStore::tensor() undoes the converter's rotary row permutation.
// Error(kUnsupported) for a tensor whose ggml type has no dequantiser.
void gguf_weights_to_store(const std::shared_ptr<GgufFile>& gguf, WeightStore& store);

// The tokenizer.ggml.* metadata as a TokenizerSpec. tokenizer.ggml.model must
// be "gpt2" (byte-level BPE), Error(kUnsupported) otherwise; the raw
// tokenizer.ggml.pre value (e.g. "smollm", "llama-bpe") goes into
// spec.pre_tokenizer. eos_ids = eos, eot and eom ids when present.
TokenizerSpec tokenizer_spec_from_gguf(const GgufFile& gguf);

}  // namespace udaci
