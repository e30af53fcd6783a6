// `udaci convert`: applies a pruner and a quantizer to a model and saves the
// result as a udaci artefact (.safetensors) or a GGUF file, or with
// --dequantize writes a plain Hugging Face folder (engine/convert.hpp).
// Prints the conversion report as one JSON object.
#include <iostream>

#include "engine/convert.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

struct ConvertArgs {
  std::string model;
  std::string output;
  std::string tokenizer;
  std::string quantizer = "none";
  std::vector<std::string> quantizer_opts;
  std::string pruner = "none";
  std::vector<std::string> pruner_opts;
  std::string dequantize = "none";
};

int cmd_convert(const ConvertArgs& a) {
  ConvertOptions co;
  co.quantizer = a.quantizer;
  co.quantizer_options = parse_strategy_options(a.quantizer_opts, "--quantizer-opt").values();
  co.pruner = a.pruner;
  co.pruner_options = parse_strategy_options(a.pruner_opts, "--pruner-opt").values();
  co.dequantize = a.dequantize;
  co.tokenizer = a.tokenizer;
  std::cout << convert_model(a.model, a.output, co).to_json() << std::endl;
  return 0;
}

}  // namespace

CommandRun setup_convert(CLI::App& sub) {
  auto a = std::make_shared<ConvertArgs>();
  sub.add_option("--model", a->model, "input: Hugging Face folder, .safetensors or .gguf")->required();
  sub.add_option("--output", a->output,
                 "artefact .safetensors file, or a .gguf file (formats GGUF has: float, Q4_1 from "
                 "int4 group 32, Q8_0 from int8), or an HF folder with --dequantize")
      ->required();
  sub.add_option("--tokenizer", a->tokenizer,
                 "GGUF output: tokenizer.json or model to take the tokenizer from (default: the input's)");
  sub.add_option("--quantizer", a->quantizer, "int8, int4, nf4, gguf-native or none");
  sub.add_option("--quantizer-opt", a->quantizer_opts, "quantizer option key=value (repeatable)")
      ->allow_extra_args(false);
  sub.add_option("--pruner", a->pruner, "magnitude, 2:4, structured or none");
  sub.add_option("--pruner-opt", a->pruner_opts, "pruner option key=value (repeatable)")->allow_extra_args(false);
  sub.add_option("--dequantize", a->dequantize, "f32, f16 or bf16: write a plain HF folder");
  return [a](const GlobalOptions&) { return cmd_convert(*a); };
}

}  // namespace udaci::cli
