// `udaci tokenize` and `udaci detokenize`: JSON Lines in (stdin or --input),
// one line out per line in, in order, through a model's tokenizer or a
// tokenizer.json. A bad line gets an {"error", "line"} object and exit status 1.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "core/error.hpp"
#include "engine/model_lookup.hpp"
#include "tools/cli/common.hpp"

namespace udaci::cli {

namespace {

using nlohmann::json;

struct TokenizeArgs {
  std::string model;
  std::string tokenizer;
  std::string input;
  bool add_special = false;   // tokenize
  bool skip_special = false;  // detokenize
};

// Reads JSON Lines from --input or stdin, one output line per input line, in order.
template <typename F>
int map_jsonl(const std::string& input, F&& fn) {
  std::ifstream file;
  if (!input.empty()) {
    file.open(input, std::ios::binary);
    UDACI_CHECK_S(Status::kNotFound, file.good(), "cannot open '{}'", input);
  }
  std::istream& in = input.empty() ? std::cin : file;
  std::string line;
  int64_t n = 0;
  int bad = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    json out;
    try {
      out = fn(json::parse(line));
    } catch (const std::exception& e) {
      out = {{"error", e.what()}, {"line", n}};
      std::fprintf(stderr, "udaci: line %lld: %s\n", static_cast<long long>(n), e.what());
      ++bad;
    }
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  }
  return bad == 0 ? 0 : 1;
}

Tokenizer tokenizer_of(const TokenizeArgs& a) {
  return load_tokenizer(a.tokenizer.empty() ? resolve_model_path(a.model) : a.tokenizer);
}

int cmd_tokenize(const TokenizeArgs& a) {
  Tokenizer tok = tokenizer_of(a);
  return map_jsonl(a.input, [&](const json& j) {
    UDACI_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(),
                "expected an object with a \"text\" string");
    return json{{"ids", tok.encode(j["text"].get<std::string>(), a.add_special)}};
  });
}

int cmd_detokenize(const TokenizeArgs& a) {
  Tokenizer tok = tokenizer_of(a);
  return map_jsonl(a.input, [&](const json& j) {
    UDACI_CHECK(j.is_object() && j.contains("ids") && j["ids"].is_array(),
                "expected an object with an \"ids\" array");
    std::vector<int32_t> ids;
    for (const json& v : j["ids"]) {
      UDACI_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < tok.vocab_size(),
                  "token id {} is not in the vocabulary of {}", v.dump(), tok.vocab_size());
      ids.push_back(v.get<int32_t>());
    }
    return json{{"text", tok.decode(ids, a.skip_special)}};
  });
}

// The options both commands take.
std::shared_ptr<TokenizeArgs> add_tokenizer_options(CLI::App& sub) {
  auto a = std::make_shared<TokenizeArgs>();
  sub.add_option("--model", a->model, "model whose tokenizer to use (default: see README)");
  sub.add_option("--tokenizer", a->tokenizer, "a tokenizer.json instead of a model");
  sub.add_option("--input", a->input, "input file (default: stdin)");
  return a;
}

}  // namespace

CommandRun setup_tokenize(CLI::App& sub) {
  auto a = add_tokenizer_options(sub);
  sub.add_flag("--add-special", a->add_special, "add BOS/EOS as the tokenizer's config says");
  return [a](const GlobalOptions&) { return cmd_tokenize(*a); };
}

CommandRun setup_detokenize(CLI::App& sub) {
  auto a = add_tokenizer_options(sub);
  sub.add_flag("--skip-special", a->skip_special, "drop special tokens from the text");
  return [a](const GlobalOptions&) { return cmd_detokenize(*a); };
}

}  // namespace udaci::cli
