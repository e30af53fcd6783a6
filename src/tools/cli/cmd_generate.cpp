// `udaci generate`: continues a prompt through the engine, every recipe part
// applied, and prints the tokens (and their text) as one JSON object. With
// --ids the model needs no tokenizer (a bare checkpoint works).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "core/error.hpp"
#include "decode/generate.hpp"
#include "engine/headline_engine.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

using nlohmann::json;

struct GenerateArgs : RunArgs {
  EngineFlags engine;
  std::string ids;
  std::string text;
  bool stream = false;
  bool ignore_eos = false;
};

// --ids: token ids separated by commas or spaces.
std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::string s = text;
  std::replace(s.begin(), s.end(), ',', ' ');
  std::istringstream in(s);
  std::string tok;
  while (in >> tok) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    UDACI_CHECK(used == tok.size() && v >= 0, "--ids: '{}' is not a token id", tok);
    ids.push_back(v);
  }
  UDACI_CHECK(!ids.empty(), "--ids: no token ids given");
  return ids;
}

int cmd_generate(const GenerateArgs& a, const GlobalOptions& global) {
  UDACI_CHECK(a.ids.empty() || a.text.empty(), "give either --ids or a prompt text, not both");
  UDACI_CHECK(!a.ids.empty() || !a.text.empty(), "give a prompt text or --ids");
  std::vector<int64_t> prompt;
  if (!a.ids.empty()) prompt = parse_ids(a.ids);
  const EngineConfig ec = engine_config_from(a.engine, global);
  const HeadlineEngine engine(ec, a.ids.empty() ? HeadlineEngine::TokenizerNeed::kRequired
                                                : HeadlineEngine::TokenizerNeed::kOptional);
  if (!engine.leader()) {
    engine.serve();
    return 0;
  }
  GenerationOptions go;
  go.max_new_tokens = a.max_new_tokens;
  go.sampling = a.sampling;
  if (!a.ignore_eos) go.eos_ids = engine.eos_ids();
  TokenCallback cb;
  if (a.stream) {
    cb = [](size_t, int64_t tok) {
      std::fprintf(stderr, "%lld ", static_cast<long long>(tok));
      std::fflush(stderr);
      return true;
    };
  }
  if (prompt.empty())
    for (int32_t id : engine.tokenizer().encode(a.text, /*add_special=*/true)) prompt.push_back(id);
  auto results = engine.generate_ids({prompt}, go, cb);
  if (a.stream) std::fprintf(stderr, "\n");
  const GenerationResult& r = results.at(0);
  json out = {{"tokens", r.tokens},
              {"finish_reason", finish_reason_name(r.finish)},
              {"prompt_tokens", prompt.size()},
              {"prefill_ms", r.prefill_ms},
              {"decode_ms", r.decode_ms},
              {"recipe", engine.recipe()},
              {"model", engine.model_path()}};
  if (engine.has_tokenizer()) {
    std::vector<int32_t> ids(r.tokens.begin(), r.tokens.end());
    out["text"] = engine.tokenizer().decode(ids, /*skip_special=*/true);
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

CommandRun setup_generate(CLI::App& sub) {
  auto a = std::make_shared<GenerateArgs>();
  add_engine_flags(sub, a->engine, true);
  add_run_options(sub, *a);
  sub.add_option("--ids", a->ids, "prompt token ids, comma or space separated");
  sub.add_option("prompt", a->text, "prompt text (tokenized as is, no chat template)");
  sub.add_flag("--stream", a->stream, "print each token id to stderr as it is generated");
  sub.add_flag("--ignore-eos", a->ignore_eos, "do not stop at the model's EOS ids");
  return [a](const GlobalOptions& global) { return cmd_generate(*a, global); };
}

}  // namespace udaci::cli
