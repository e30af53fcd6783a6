// Tokenizer::from_tokenizer_json: Hugging Face tokenizer.json (the
// `tokenizers` serialization, version 1.0) plus the transformers files beside
// it. Only what byte-level BPE needs is accepted; anything that would change
// the ids (a normalizer, another model type, unsupported pre-tokenizer steps)
// is rejected with Error(kUnsupported) rather than silently ignored.
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/limits.hpp"
#include "text/tokenizer.hpp"

namespace udaci {

namespace {

using nlohmann::json;

// Real tokenizer files nest a handful of levels. Deeper nesting is refused
// while parsing: the readers below recurse into pre-tokenizer and
// post-processor sequences, and json::dump (in messages) recurses per level,
// so a hostile file nested ~10^4 deep overflowed the stack (issue #12;
// fuzz/corpus/tokenizer_json/regress_deep_nesting).
constexpr int kMaxJsonDepth = 64;

json read_json(const std::string& path, uint64_t max_bytes = kMaxConfigFileBytes) {
  const std::string text = read_file_capped(path, max_bytes, "the JSON file");
  const json::parser_callback_t limit_depth = [&](int depth, json::parse_event_t, json&) {
    UDACI_CHECK_S(Status::kBadModelFile, depth <= kMaxJsonDepth,
                  "{}: JSON nested deeper than {} levels", path, kMaxJsonDepth);
    return true;
  };
  try {
    return json::parse(text, limit_depth);
  } catch (const json::exception& e) {
    fail(Status::kBadModelFile, "{}: not valid JSON: {}", path, e.what());
  }
}

std::string type_of(const json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) return "";
  return j["type"].get<std::string>();
}

// The pre-tokenizer of tokenizer.json as regex steps. `where` names the key
// for messages. Sets *byte_level when a ByteLevel step is present.
void pre_tokenizer_steps(const std::string& path, const json& j, const std::string& where,
                         std::vector<PreTokenizerStep>& steps, bool* byte_level) {
  const std::string t = type_of(j);
  if (t == "Sequence") {
    UDACI_CHECK_S(Status::kBadModelFile, j.contains("pretokenizers") && j["pretokenizers"].is_array(),
                  "{}: {}.pretokenizers must be an array", path, where);
    size_t i = 0;
    for (const auto& p : j["pretokenizers"])
      pre_tokenizer_steps(path, p, fmt::format("{}.pretokenizers[{}]", where, i++), steps, byte_level);
    return;
  }
  if (t == "ByteLevel") {
    UDACI_CHECK_S(Status::kUnsupported, !j.value("add_prefix_space", false),
                  "{}: {}: ByteLevel add_prefix_space = true is not supported", path, where);
    *byte_level = true;
    if (j.value("use_regex", true)) steps.push_back({kGpt2Pattern});
    return;
  }
  if (t == "Split") {
    const json& pat = j.contains("pattern") ? j["pattern"] : json();
    const std::string behavior = j.value("behavior", "");
    UDACI_CHECK_S(Status::kUnsupported, behavior == "Isolated" && !j.value("invert", false),
                  "{}: {}: only Split with behavior 'Isolated' and invert = false is supported, "
                  "got behavior '{}'",
                  path, where, behavior);
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      steps.push_back({pat["Regex"].get<std::string>()});
      return;
    }
    fail(Status::kUnsupported, "{}: {}.pattern: only {{\"Regex\": ...}} patterns are supported",
         path, where);
  }
  if (t == "Digits") {
    steps.push_back({j.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)"});
    return;
  }
  fail(Status::kUnsupported, "{}: {}: pre-tokenizer type '{}' is not supported for byte-level BPE",
       path, where, t.empty() ? j.dump().substr(0, 80) : t);
}

// A special token given in tokenizer_config.json: a string or an AddedToken
// object {"content": ...}; empty when null/absent.
std::string config_token(const std::string& path, const json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return "";
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  fail(Status::kBadModelFile, "{}: key '{}' must be a string or an object with 'content'", path, key);
}

}  // namespace

// A function-try-block: a value of the wrong JSON type anywhere below (e.g.
// "model": {"type": 5}, "special": "yes") makes nlohmann::json throw its own
// type_error, which becomes Error(kBadModelFile) naming the file (issue #12;
// it escaped as json::type_error before).
Tokenizer Tokenizer::from_tokenizer_json(const std::string& path) try {
  const json j = read_json(path, kMaxTokenizerJsonBytes);
  UDACI_CHECK_S(Status::kBadModelFile, j.is_object(), "{}: the top level must be a JSON object", path);
  UDACI_CHECK_S(Status::kBadModelFile, j.contains("model") && j["model"].is_object(),
                "{}: missing key 'model'", path);
  const json& model = j["model"];
  const std::string mtype = model.contains("type") ? model["type"].get<std::string>() : "BPE";
  UDACI_CHECK_S(Status::kUnsupported, mtype == "BPE",
                "{}: model.type is '{}'; only byte-level BPE tokenizers are supported", path, mtype);
  UDACI_CHECK_S(Status::kBadModelFile, model.contains("vocab") && model["vocab"].is_object(),
                "{}: missing key 'model.vocab' (an object of token -> id)", path);
  UDACI_CHECK_S(Status::kBadModelFile, model.contains("merges") && model["merges"].is_array(),
                "{}: missing key 'model.merges' (an array)", path);
  UDACI_CHECK_S(Status::kUnsupported, !model.value("byte_fallback", false),
                "{}: model.byte_fallback = true is SentencePiece-style BPE, not byte-level BPE", path);
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    UDACI_CHECK_S(Status::kUnsupported, !model.contains(k) || model[k].is_null() || model[k] == "",
                  "{}: model.{} is not supported", path, k);
  UDACI_CHECK_S(Status::kUnsupported,
                !model.contains("dropout") || model["dropout"].is_null() || model["dropout"] == 0,
                "{}: model.dropout is not supported", path);
  UDACI_CHECK_S(Status::kUnsupported, !j.contains("normalizer") || j["normalizer"].is_null(),
                "{}: normalizer '{}' is not supported (byte-level BPE has none)", path,
                type_of(j["normalizer"]));

  // Pre-tokenizer and decoder must be byte-level.
  std::vector<PreTokenizerStep> steps;
  bool byte_level = false;
  UDACI_CHECK_S(Status::kUnsupported, j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null(),
                "{}: no pre_tokenizer; only byte-level BPE tokenizers are supported", path);
  pre_tokenizer_steps(path, j["pre_tokenizer"], "pre_tokenizer", steps, &byte_level);
  UDACI_CHECK_S(Status::kUnsupported, byte_level,
                "{}: pre_tokenizer has no ByteLevel step; only byte-level BPE is supported", path);
  if (j.contains("decoder") && !j["decoder"].is_null())
    UDACI_CHECK_S(Status::kUnsupported, type_of(j["decoder"]) == "ByteLevel",
                  "{}: decoder '{}' is not supported (expected ByteLevel)", path, type_of(j["decoder"]));

  TokenizerSpec spec;
  // Vocabulary: model.vocab plus added_tokens; ids must be unique.
  std::map<int64_t, std::string> by_id;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    UDACI_CHECK_S(Status::kBadModelFile, it.value().is_number_integer(),
                  "{}: model.vocab['{}'] must be an integer id", path, it.key());
    const int64_t id = it.value().get<int64_t>();
    UDACI_CHECK_S(Status::kBadModelFile, id >= 0 && id < (int64_t{1} << 24),
                  "{}: model.vocab['{}'] = {} is not a valid id", path, it.key(), id);
    auto [pos, fresh] = by_id.emplace(id, it.key());
    UDACI_CHECK_S(Status::kBadModelFile, fresh, "{}: model.vocab gives id {} to both '{}' and '{}'",
                  path, id, pos->second, it.key());
  }
  std::map<int64_t, bool> added_special;  // id -> special
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    UDACI_CHECK_S(Status::kBadModelFile, j["added_tokens"].is_array(), "{}: added_tokens must be an array",
                  path);
    size_t i = 0;
    for (const auto& a : j["added_tokens"]) {
      UDACI_CHECK_S(Status::kBadModelFile,
                    a.is_object() && a.contains("id") && a["id"].is_number_integer() &&
                        a.contains("content") && a["content"].is_string(),
                    "{}: added_tokens[{}] needs an integer 'id' and a string 'content'", path, i);
      const int64_t id = a["id"].get<int64_t>();
      const std::string content = a["content"].get<std::string>();
      UDACI_CHECK_S(Status::kBadModelFile, id >= 0 && id < (int64_t{1} << 24) && !content.empty(),
                    "{}: added_tokens[{}] has an invalid id {} or empty content", path, i, id);
      for (const char* k : {"lstrip", "rstrip", "single_word"})
        UDACI_CHECK_S(Status::kUnsupported, !a.value(k, false),
                      "{}: added_tokens[{}] '{}' sets {} = true, which is not supported", path, i,
                      content, k);
      auto [pos, fresh] = by_id.emplace(id, content);
      UDACI_CHECK_S(Status::kBadModelFile, fresh || pos->second == content,
                    "{}: added_tokens[{}] '{}' has id {}, which model.vocab gives to '{}'", path, i,
                    content, id, pos->second);
      added_special[id] = a.value("special", false);
      ++i;
    }
  }
  UDACI_CHECK_S(Status::kBadModelFile, !by_id.empty(),
                "{}: the vocabulary is empty (model.vocab and added_tokens hold no token)", path);
  const int64_t n = by_id.rbegin()->first + 1;
  spec.tokens.assign(n, std::string());
  spec.token_types.assign(n, TokenType::kUnused);  // holes stay unused
  for (const auto& [id, tok] : by_id) {
    spec.tokens[id] = tok;
    spec.token_types[id] = TokenType::kNormal;
  }
  for (const auto& [id, special] : added_special)
    spec.token_types[id] = special ? TokenType::kControl : TokenType::kUserDefined;

  // Merges: "a b" strings (format of tokenizers < 0.20) or [a, b] pairs.
  spec.merges.reserve(model["merges"].size());
  size_t r = 0;
  for (const auto& mg : model["merges"]) {
    if (mg.is_string()) {
      spec.merges.push_back(mg.get<std::string>());
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      const std::string a = mg[0].get<std::string>(), b = mg[1].get<std::string>();
      UDACI_CHECK_S(Status::kUnsupported, a.find(' ') == std::string::npos && b.find(' ') == std::string::npos,
                    "{}: model.merges[{}] contains a space inside a token, which is not supported", path, r);
      spec.merges.push_back(a + " " + b);
    } else {
      fail(Status::kBadModelFile, "{}: model.merges[{}] must be a string \"a b\" or a pair [a, b]", path, r);
    }
    ++r;
  }
  const bool ignore_merges = model.value("ignore_merges", false);

  // BOS/EOS insertion from the post-processor: TemplateProcessing's
  // `single` template, SpecialToken before $A = BOS, after = EOS.
  auto token_id = [&](const std::string& t) -> int64_t {
    for (const auto& [id, tok] : by_id)
      if (tok == t) return id;
    return -1;
  };
  std::function<void(const json&)> read_post = [&](const json& p) {
    const std::string t = type_of(p);
    if (t == "Sequence" && p.contains("processors")) {
      for (const auto& q : p["processors"]) read_post(q);
    } else if (t == "TemplateProcessing" && p.contains("single") && p["single"].is_array()) {
      bool seen_a = false;
      for (const auto& piece : p["single"]) {
        if (piece.contains("Sequence")) {
          seen_a = true;
        } else if (piece.contains("SpecialToken")) {
          const std::string name = piece["SpecialToken"].value("id", "");
          int64_t id = -1;
          if (p.contains("special_tokens") && p["special_tokens"].contains(name) &&
              p["special_tokens"][name].contains("ids") && !p["special_tokens"][name]["ids"].empty())
            id = p["special_tokens"][name]["ids"][0].get<int64_t>();
          if (id < 0) id = token_id(name);
          UDACI_CHECK_S(Status::kBadModelFile, id >= 0 && id < n,
                        "{}: post_processor template names special token '{}', which is not in the "
                        "vocabulary",
                        path, name);
          if (!seen_a) {
            spec.add_bos = true;
            spec.bos_id = id;
          } else {
            spec.add_eos = true;
            spec.eos_id = id;
          }
        }
      }
    } else if (t == "BertProcessing" || t == "RobertaProcessing") {
      fail(Status::kUnsupported, "{}: post_processor '{}' is not supported", path, t);
    }
  };
  if (j.contains("post_processor") && !j["post_processor"].is_null()) read_post(j["post_processor"]);

  // transformers files beside tokenizer.json.
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  const std::string cfg_path = (dir / "tokenizer_config.json").string();
  if (std::filesystem::exists(cfg_path)) {
    const json cfg = read_json(cfg_path);
    UDACI_CHECK_S(Status::kBadModelFile, cfg.is_object(), "{}: the top level must be a JSON object",
                  cfg_path);
    auto resolve = [&](const char* key, int64_t& out) {
      const std::string t = config_token(cfg_path, cfg, key);
      if (t.empty()) return;
      const int64_t id = token_id(t);
      UDACI_CHECK_S(Status::kBadModelFile, id >= 0, "{}: {} '{}' is not a token of {}", cfg_path, key,
                    t, path);
      out = id;
    };
    // The template decides where BOS goes; the config names the tokens.
    resolve("bos_token", spec.bos_id);
    resolve("eos_token", spec.eos_id);
    resolve("pad_token", spec.pad_id);
    resolve("unk_token", spec.unk_id);
    for (auto [key, flag] : {std::pair<const char*, bool*>{"add_bos_token", &spec.add_bos},
                             std::pair<const char*, bool*>{"add_eos_token", &spec.add_eos}}) {
      if (!cfg.contains(key) || cfg[key].is_null()) continue;
      UDACI_CHECK_S(Status::kBadModelFile, cfg[key].is_boolean(), "{}: key '{}' must be true or false",
                    cfg_path, key);
      *flag = cfg[key].get<bool>();
    }
    if (cfg.contains("chat_template") && !cfg["chat_template"].is_null()) {
      const json& ct = cfg["chat_template"];
      if (ct.is_string()) {
        spec.chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {
        // [{"name": ..., "template": ...}]: the "default" one, else the first.
        for (const auto& e : ct) {
          UDACI_CHECK_S(Status::kBadModelFile, e.is_object() && e.contains("template") && e["template"].is_string(),
                        "{}: chat_template entries need a string 'template'", cfg_path);
          if (spec.chat_template.empty() || e.value("name", "") == "default")
            spec.chat_template = e["template"].get<std::string>();
        }
      } else {
        fail(Status::kBadModelFile, "{}: key 'chat_template' must be a string or a list", cfg_path);
      }
    }
  }
  const std::string jinja_path = (dir / "chat_template.jinja").string();
  if (spec.chat_template.empty() && std::filesystem::exists(jinja_path)) {
    spec.chat_template = read_file_capped(jinja_path, kMaxChatTemplateBytes, "the chat template");
  }
  const std::string gen_path = (dir / "generation_config.json").string();
  if (std::filesystem::exists(gen_path)) {
    const json gen = read_json(gen_path);
    if (gen.is_object() && gen.contains("eos_token_id") && !gen["eos_token_id"].is_null()) {
      const json& e = gen["eos_token_id"];
      auto add = [&](const json& v) {
        UDACI_CHECK_S(Status::kBadModelFile, v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < n,
                      "{}: eos_token_id {} is not a token id", gen_path, v.dump());
        spec.eos_ids.push_back(v.get<int64_t>());
      };
      if (e.is_array()) {
        for (const auto& v : e) add(v);
      } else {
        add(e);
      }
    }
  }
  if (spec.bos_id < 0) spec.add_bos = false;
  if (spec.eos_id < 0) spec.add_eos = false;

  // Name the pre-tokenizer when it is one of the known ones (for messages
  // and spec() users); the steps themselves are what runs.
  bool unused = false;
  spec.pre_tokenizer = "custom";
  for (const char* name : {"llama3", "smollm", "gpt2"}) {
    const auto known = PreTokenizer::steps_for_name(name, &unused);
    if (known.size() == steps.size() &&
        std::equal(known.begin(), known.end(), steps.begin(),
                   [](const PreTokenizerStep& a, const PreTokenizerStep& b) { return a.pattern == b.pattern; })) {
      spec.pre_tokenizer = name;
      break;
    }
  }
  try {
    return build(std::move(spec), std::move(steps), ignore_merges);
  } catch (const Error& e) {
    // Name the file: build() only knows the spec.
    throw Error(e.status(), fmt::format("{}: {}", path, e.what()));
  }
} catch (const json::exception& e) {
  fail(Status::kBadModelFile, "{}: a value has the wrong JSON type: {}", path, e.what());
}

}  // namespace udaci
