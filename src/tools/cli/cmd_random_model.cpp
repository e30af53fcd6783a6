// `udaci random-model`: a model of a preset shape with N(0, 0.02) weights,
// written as GGUF (with a real tokenizer when given): benchmarks and load
// tests without a download. Prints what it wrote as one JSON object.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <optional>

#include "core/error.hpp"
#include "engine/model_lookup.hpp"
#include "model/gguf_llama_writer.hpp"
#include "model/model_loader.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

using nlohmann::json;

struct RandomModelArgs {
  std::string shape = "tiny";
  std::string dtype = "f32";
  uint64_t seed = 0;
  std::string tokenizer;
  std::string output;
};

int cmd_random_model(const RandomModelArgs& a) {
  UDACI_CHECK(std::filesystem::path(a.output).extension() == ".gguf",
              "--output must name a .gguf file, got '{}'", a.output);
  ModelConfig c = preset_config(a.shape);
  std::optional<Tokenizer> tok;
  if (!a.tokenizer.empty()) {
    tok.emplace(load_tokenizer(a.tokenizer));
    c.vocab_size = tok->vocab_size();
    c.bos_token_id = tok->spec().bos_id;
    c.eos_token_ids = tok->spec().eos_ids;
  }
  const at::ScalarType dt = parse_dtype(a.dtype);  // the one dtype vocabulary (f32 = fp32 ...)
  const WeightStore w = random_weights(c, dt, a.seed);
  const GgufExportReport r =
      write_model_gguf(a.output, c, w, tok ? &tok->spec() : nullptr, "udaci random " + a.shape);
  std::cout << json{{"output", a.output},
                    {"shape", a.shape},
                    {"parameters", c.parameter_count()},
                    {"tensors", r.tensors},
                    {"file_bytes", std::filesystem::file_size(a.output)},
                    {"tokenizer", tok.has_value()}}
                   .dump()
            << std::endl;
  return 0;
}

}  // namespace

CommandRun setup_random_model(CLI::App& sub) {
  auto a = std::make_shared<RandomModelArgs>();
  sub.add_option("--shape", a->shape, "llama-3.2-1b, smollm2-135m or tiny (default)");
  sub.add_option("--dtype", a->dtype, "f32 (default), f16 or bf16");
  sub.add_option("--seed", a->seed, "random seed (default 0)");
  sub.add_option("--tokenizer", a->tokenizer,
                 "model or tokenizer.json whose tokenizer to include (its vocabulary sets the size)");
  sub.add_option("--output", a->output, "the .gguf file to write")->required();
  return [a](const GlobalOptions&) { return cmd_random_model(*a); };
}

}  // namespace udaci::cli
