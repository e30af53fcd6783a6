// The built-in quantizers (registered in register_quantizers.cpp):
//   "int8"        int8 per output channel for every decoder projection.
//   "int4"        group-wise affine int4 (option group=32|64|128).
//   "nf4"         group-wise NormalFloat4 (QLoRA, arXiv:2305.14314).
//   "gguf-native" runs a GGUF's Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K blocks
//                 as they are (repacked into 8-row tiles, values unchanged).
// The first three take head=none|int8|int4|nf4 (LM head) and
// embed=none|int8|int4|nf4 (token embedding), default int8 for both: the head
// decides every token's argmax and int8 per channel keeps it near lossless at
// a quarter of fp32 (stored formats: quant/quant_formats.hpp).
#pragma once

#include <memory>
#include <string>

#include "quant/quantizer.hpp"

namespace udaci {

enum class WeightFormat { kNone, kInt8, kInt4, kNF4 };

const char* weight_format_name(WeightFormat f);

struct WeightQuantOptions {
  std::string name = "int8";                      // the quantizer's registered name
  WeightFormat projections = WeightFormat::kInt8;  // q/k/v/o, gate/up/down
  WeightFormat head = WeightFormat::kInt8;         // lm_head (or the tied embedding as head)
  WeightFormat embed = WeightFormat::kInt8;        // model.embed_tokens lookups
  int64_t group = 32;                              // int4 / nf4 group along the input: 32, 64, 128
};

std::unique_ptr<Quantizer> make_weight_quantizer(const WeightQuantOptions& options);
std::unique_ptr<Quantizer> make_gguf_native_quantizer();

// Parses "none", "int8", "int4", "nf4"; Error(kInvalidArgument) naming `owner`
// and `key` otherwise.
WeightFormat parse_weight_format(const std::string& owner, const std::string& key,
                                 const std::string& value);

}  // namespace udaci
