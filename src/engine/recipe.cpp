#include "engine/recipe.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <set>

#include "core/error.hpp"
#include "engine/engine_config.hpp"
#include "engine/registry.hpp"

namespace udaci {

const char* slot_name(Slot slot) {
  switch (slot) {
    case Slot::kCache: return "cache";
    case Slot::kQuantizer: return "quantizer";
    case Slot::kPruner: return "pruner";
    case Slot::kDecoder: return "decoder";
    case Slot::kParallel: return "parallel plan";
    case Slot::kScheduler: return "scheduler";
  }
  return "?";
}

namespace {

using Options = std::map<std::string, std::string>;

Technique make(std::string name, std::string category, Slot slot, std::string strategy, Options preset,
               bool canonical, std::string issue, std::string description) {
  Technique t;
  t.name = std::move(name);
  t.category = std::move(category);
  t.slot = slot;
  t.strategy = std::move(strategy);
  t.preset = std::move(preset);
  t.canonical = canonical;
  t.issue = std::move(issue);
  t.description = std::move(description);
  t.multi_process = slot == Slot::kParallel && t.strategy != "single-device";
  return t;
}

std::vector<Technique> make_catalogue() {
  const Slot C = Slot::kCache, Q = Slot::kQuantizer, P = Slot::kPruner, D = Slot::kDecoder,
             L = Slot::kParallel;
  std::vector<Technique> t;
  // The report's techniques and udaci's, in the report's order (these are
  // the names `udaci bench` has always taken).
  t.push_back(make("baseline", "Baseline", C, "none", {}, false, "#5 (M4)",
                   "no KV cache: the whole prefix is recomputed at every step (the report's "
                   "unoptimised baseline; the benchmark runs it dense and greedy)"));
  t.push_back(make("kv-cache", "Caching", C, "contiguous", {}, true, "#6 (M5)",
                   "contiguous K/V cache, one buffer per sequence (the default)"));
  t.push_back(make("paged", "Caching", C, "paged", {}, true, "#6 (M5)",
                   "paged K/V cache: fixed-size blocks from a pool"));
  t.push_back(make("paged-prefix", "Caching", C, "paged-prefix", {}, true, "#6 (M5)",
                   "paged K/V cache sharing the common instruction prefix across requests"));
  t.push_back(make("batch-invariant", "Batching", Slot::kScheduler, "", {}, true, "#6 (M5)",
                   "scheduler's batch-invariant mode: every sequence its own forward pass, so a "
                   "headline never depends on its batch"));
  t.push_back(make("int8", "Quantization", Q, "int8", {}, true, "#7 (M6)",
                   "int8 weights, symmetric per output channel"));
  t.push_back(make("int4", "Quantization", Q, "int4", {}, true, "#7 (M6)",
                   "int4 weights, group-wise affine"));
  t.push_back(make("nf4", "Quantization", Q, "nf4", {}, true, "#7 (M6)",
                   "4-bit NormalFloat weights (QLoRA's code book)"));
  t.push_back(make("gguf-native", "Quantization", Q, "gguf-native", {}, true, "#7 (M6)",
                   "the GGUF file's Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K blocks run as stored (repacked into 8-row tiles)"));
  t.push_back(make("prune-30", "Pruning", P, "magnitude", {{"fraction", "0.3"}}, false, "#7 (M6)",
                   "30% unstructured magnitude pruning (dense storage)"));
  t.push_back(make("prune-2of4", "Pruning", P, "2:4", {}, true, "#7 (M6)",
                   "2:4 semi-structured pruning, packed"));
  t.push_back(make("prune-struct-30", "Pruning", P, "structured", {{"fraction", "0.3"}}, false, "#7 (M6)",
                   "30% of FFN channels removed (smaller dense shapes)"));
  t.push_back(make("beam-4", "Decoding", D, "beam", {{"width", "4"}}, false, "#8 (M7)",
                   "beam search, 4 beams"));
  t.push_back(make("spec-lookup", "Decoding", D, "speculative", {{"draft", "prompt-lookup"}}, false,
                   "#8 (M7)", "speculative decoding, drafts from n-gram lookup in the prompt"));
  t.push_back(make("spec-self-int4", "Decoding", D, "speculative", {{"draft", "self-int4"}}, false,
                   "#8 (M7)", "speculative decoding, the same model quantised to int4 drafts"));
  t.push_back(make("spec-draft", "Decoding", D, "speculative", {{"draft", "draft-model"}}, false,
                   "#8 (M7)",
                   "speculative decoding with a smaller model of the same vocabulary "
                   "(spec-draft{draft_model=PATH}; bench: --draft-model)"));
  t.push_back(make("tp-2", "Parallelism", L, "tensor-parallel", {}, false, "#9 (M8)",
                   "tensor parallel over 2 processes (Gloo)"));
  t.push_back(make("pp-2", "Parallelism", L, "pipeline-parallel", {}, false, "#9 (M8)",
                   "pipeline parallel, 2 stages (Gloo)"));
  // The generic name of every strategy: what canonical recipes are written in.
  t.push_back(make("no-cache", "Caching", C, "none", {}, true, "#5 (M4)",
                   "no K/V cache (as baseline)"));
  t.push_back(make("as-stored", "Quantization", Q, "auto", {}, true, "#21 (M12)",
                   "weights as the file stores them: a GGUF's Q4_0/Q4_1/Q8_0/K-quant blocks natively "
                   "(gguf-native) on the CPU of one process, otherwise no-quant (the default)"));
  t.push_back(make("no-quant", "Quantization", Q, "none", {}, true, "#7 (M6)",
                   "weights in the compute dtype (GGUF blocks dequantised at load; udaci "
                   "int8/int4/nf4/2:4 artefacts still run as stored): the fp32 reference"));
  t.push_back(make("no-prune", "Pruning", P, "none", {}, true, "#7 (M6)", "no pruning (the default)"));
  t.push_back(make("prune-magnitude", "Pruning", P, "magnitude", {}, true, "#7 (M6)",
                   "unstructured magnitude pruning, options fraction and scope"));
  t.push_back(make("prune-structured", "Pruning", P, "structured", {}, true, "#7 (M6)",
                   "structured pruning of FFN channels (and heads), options fraction, align, norm, heads"));
  t.push_back(make("sampling", "Decoding", D, "sampling", {}, true, "#4 (M3)",
                   "each request's sampling options (temperature 0: greedy; the default)"));
  t.push_back(make("greedy", "Decoding", D, "greedy", {}, true, "#4 (M3)",
                   "argmax at every step whatever the request asks; option repetition_penalty (1: off)"));
  t.push_back(make("beam", "Decoding", D, "beam", {}, true, "#8 (M7)",
                   "beam search, options width, length_penalty, n_best, early_stopping, no_repeat_ngram"));
  t.push_back(make("speculative", "Decoding", D, "speculative", {}, true, "#8 (M7)",
                   "speculative decoding, option draft = prompt-lookup, self-int4 or draft-model"));
  t.push_back(make("single-device", "Parallelism", L, "single-device", {}, true, "#9 (M8)",
                   "one process (the default)"));
  t.push_back(make("tensor-parallel", "Parallelism", L, "tensor-parallel", {}, true, "#9 (M8)",
                   "tensor parallel over the ranks of the job (Gloo / NCCL)"));
  t.push_back(make("pipeline-parallel", "Parallelism", L, "pipeline-parallel", {}, true, "#9 (M8)",
                   "pipeline parallel over the ranks of the job"));
  return t;
}

bool is_name_char(char c) {
  return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
         c == '-' || c == ':';
}
bool is_key_char(char c) {
  return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_';
}
bool is_bare_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':' || c == '/' ||
         c == '~' || c == '-';
}
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Reads one part starting at `pos` (just after the previous '+'), up to the
// next '+' outside braces and quotes or the end.
class PartReader {
 public:
  PartReader(const std::string& recipe, size_t pos) : s_(recipe), pos_(pos) {}

  RecipePart read() {
    const size_t begin = pos_;
    skip_space();
    const size_t name_begin = pos_;
    while (pos_ < s_.size() && is_name_char(s_[pos_])) ++pos_;
    RecipePart part;
    const std::string name = s_.substr(name_begin, pos_ - name_begin);
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == '{') {
      ++pos_;
      read_options(part.options, begin);
      skip_space();
    }
    const bool at_end = pos_ == s_.size() || s_[pos_] == '+';
    part.text = trimmed(s_.substr(begin, pos_ - begin));
    if (!at_end) {
      // Show what is there, up to the next '+'.
      const size_t next = s_.find('+', pos_);
      part.text = trimmed(s_.substr(begin, next == std::string::npos ? std::string::npos : next - begin));
      fail_here(part.text, fmt::format("unexpected '{}' (a part is a technique name, optionally followed "
                                       "by options in braces: int4{{group=64}})",
                                       s_[pos_]));
    }
    if (name.empty()) fail_here(part.text, "no technique name");
    part.technique = find_technique(name);
    if (part.technique == nullptr)
      fail(Status::kInvalidArgument, "recipe '{}': unknown technique '{}' (known: {}; compose with '+')", s_,
           name, technique_list());
    // The name's preset, then what the braces say.
    Options merged = part.technique->preset;
    for (const auto& kv : part.options) merged[kv.first] = kv.second;
    part.options = std::move(merged);
    return part;
  }

  size_t pos() const { return pos_; }

 private:
  [[noreturn]] void fail_here(const std::string& part, const std::string& what) const {
    fail(Status::kInvalidArgument, "recipe '{}', part '{}': {}", s_, part, what);
  }

  static std::string trimmed(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return s.substr(b, e - b);
  }

  void skip_space() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }

  std::string part_so_far(size_t begin) const {
    const size_t close = s_.find('}', pos_);
    return trimmed(s_.substr(begin, close == std::string::npos ? std::string::npos : close + 1 - begin));
  }

  void read_options(Options& out, size_t begin) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return;
    }
    while (true) {
      skip_space();
      const size_t key_begin = pos_;
      while (pos_ < s_.size() && is_key_char(s_[pos_])) ++pos_;
      const std::string key = s_.substr(key_begin, pos_ - key_begin);
      if (key.empty())
        fail_here(part_so_far(begin), "expected an option name (lowercase letters, digits, '_') in the braces");
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != '=')
        fail_here(part_so_far(begin), fmt::format("option '{}' needs '=value'", key));
      ++pos_;
      skip_space();
      std::string value;
      if (pos_ < s_.size() && s_[pos_] == '"') {
        ++pos_;
        bool closed = false;
        while (pos_ < s_.size()) {
          const char c = s_[pos_++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            if (pos_ >= s_.size() || (s_[pos_] != '"' && s_[pos_] != '\\'))
              fail_here(part_so_far(begin), fmt::format("option '{}': only \\\" and \\\\ may follow a "
                                                        "backslash in a quoted value",
                                                        key));
            value += s_[pos_++];
          } else {
            value += c;
          }
        }
        if (!closed) fail_here(part_so_far(begin), fmt::format("option '{}': unterminated quoted value", key));
      } else {
        const size_t v_begin = pos_;
        while (pos_ < s_.size() && is_bare_char(s_[pos_])) ++pos_;
        value = s_.substr(v_begin, pos_ - v_begin);
        if (value.empty())
          fail_here(part_so_far(begin),
                    fmt::format("option '{}' has no value (quote values with spaces or ,{{}}+=: \"...\")", key));
      }
      if (!out.emplace(key, value).second)
        fail_here(part_so_far(begin), fmt::format("option '{}' given twice", key));
      skip_space();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return;
      }
      fail_here(part_so_far(begin), pos_ < s_.size()
                                        ? fmt::format("unexpected '{}' after option '{}' (separate options "
                                                      "with ',', close with '}}')",
                                                      s_[pos_], key)
                                        : "missing '}'");
    }
  }

  const std::string& s_;
  size_t pos_;
};

// Every option the strategy in `slot` reads, checked by its own reader.
Options effective(Slot slot, const std::string& strategy, const StrategyOptions& options) {
  const StrategyRegistry& r = builtin_strategies();
  switch (slot) {
    case Slot::kCache: return r.caches.effective_options(strategy, options);
    case Slot::kQuantizer:
      if (strategy == "auto") {
        options.expect_only("quantizer 'auto' (as-stored)", {});
        return {};
      }
      return r.quantizers.effective_options(strategy, options);
    case Slot::kPruner: return r.pruners.effective_options(strategy, options);
    case Slot::kDecoder: return r.decoders.effective_options(strategy, options);
    case Slot::kParallel: return r.parallel_plans.effective_options(strategy, options);
    case Slot::kScheduler: options.expect_only("batch-invariant", {}); return {};
  }
  return {};
}

}  // namespace

const std::vector<Technique>& technique_catalogue() {
  static const std::vector<Technique> catalogue = make_catalogue();
  return catalogue;
}

const Technique* find_technique(const std::string& name) {
  for (const Technique& t : technique_catalogue())
    if (t.name == name) return &t;
  return nullptr;
}

std::string technique_catalogue_json() {
  const StrategyRegistry& reg = builtin_strategies();
  nlohmann::json out = nlohmann::json::array();
  // same_as: the first technique whose recipe alone gives the same
  // configuration (kv-cache, sampling and no-prune are all the default;
  // prune-30 is prune-magnitude's default), so that a caller can visit each
  // distinct configuration once.
  std::vector<std::pair<std::string, std::string>> seen;  // canonical -> first name
  for (const Technique& t : technique_catalogue()) {
    std::string key = t.name;
    try {
      EngineConfig c;
      c.set_recipe(t.name);
      key = c.recipe();
    } catch (const Error&) {  // spec-draft needs its draft_model: its own entry
    }
    std::string same_as = t.name;
    for (const auto& kv : seen)
      if (kv.first == key) same_as = kv.second;
    if (same_as == t.name) seen.emplace_back(key, t.name);
    out.push_back({{"name", t.name},
                   {"same_as", same_as},
                   {"category", t.category},
                   {"slot", slot_name(t.slot)},
                   {"strategy", t.strategy},
                   {"preset", t.preset},
                   {"description", t.description},
                   {"issue", t.issue},
                   {"multi_process", t.multi_process},
                   {"available", technique_unavailable(t, reg).empty()}});
  }
  return out.dump();
}

std::string technique_list() {
  std::string out;
  for (const Technique& t : technique_catalogue()) out += (out.empty() ? "" : ", ") + t.name;
  return out;
}

std::string technique_unavailable(const Technique& t, const StrategyRegistry& r) {
  bool registered = true;
  switch (t.slot) {
    case Slot::kCache: registered = r.caches.has(t.strategy); break;
    case Slot::kQuantizer: registered = t.strategy == "auto" || r.quantizers.has(t.strategy); break;
    case Slot::kPruner: registered = r.pruners.has(t.strategy); break;
    case Slot::kDecoder: registered = r.decoders.has(t.strategy); break;
    case Slot::kParallel: registered = r.parallel_plans.has(t.strategy); break;
    case Slot::kScheduler: break;
  }
  if (registered) return "";
  return "strategy '" + t.strategy + "' is not in this build (issue " + t.issue + ")";
}

Recipe parse_recipe(const std::string& text) {
  Recipe r;
  r.text = text;
  UDACI_CHECK(text.find_first_not_of(" \t\r\n") != std::string::npos,
              "recipe is empty (known techniques: {}; compose with '+')", technique_list());
  size_t pos = 0;
  std::map<Slot, std::string> chosen_by;
  while (true) {
    PartReader reader(text, pos);
    RecipePart part = reader.read();
    auto it = chosen_by.find(part.technique->slot);
    UDACI_CHECK(it == chosen_by.end(), "recipe '{}': '{}' and '{}' both choose the {}", text, it->second,
                part.text, slot_name(part.technique->slot));
    chosen_by[part.technique->slot] = part.text;
    r.parts.push_back(std::move(part));
    pos = reader.pos();
    if (pos == text.size()) break;
    ++pos;  // '+'
    UDACI_CHECK(pos < text.size() && text.find_first_not_of(" \t\r\n", pos) != std::string::npos,
                "recipe '{}' ends with '+'", text);
  }
  return r;
}

void apply_recipe(const Recipe& recipe, EngineConfig& config) {
  for (const RecipePart& part : recipe.parts) {
    const Technique& t = *part.technique;
    const StrategyOptions options(part.options);
    try {
      effective(t.slot, t.strategy, options);
    } catch (const Error& e) {
      throw Error(e.status(), fmt::format("recipe '{}', part '{}': {}", recipe.text, part.text, e.what()));
    }
    switch (t.slot) {
      case Slot::kCache: config.cache = t.strategy; config.cache_options = options; break;
      case Slot::kQuantizer: config.quantizer = t.strategy; config.quantizer_options = options; break;
      case Slot::kPruner: config.pruner = t.strategy; config.pruner_options = options; break;
      case Slot::kDecoder: config.decoder = t.strategy; config.decoder_options = options; break;
      case Slot::kParallel: config.parallel = t.strategy; config.parallel_options = options; break;
      case Slot::kScheduler: config.scheduler.batch_invariant = true; break;
    }
  }
}

std::string format_recipe_part(const std::string& name, const std::map<std::string, std::string>& options) {
  std::string out = name;
  std::string inner;
  for (const auto& kv : options) {
    if (kv.second.empty()) continue;
    bool bare = true;
    for (char c : kv.second) bare = bare && is_bare_char(c);
    std::string value = kv.second;
    if (!bare) {
      value = "\"";
      for (char c : kv.second) {
        if (c == '"' || c == '\\') value += '\\';
        value += c;
      }
      value += '"';
    }
    inner += (inner.empty() ? "" : ",") + kv.first + "=" + value;
  }
  if (!inner.empty()) out += "{" + inner + "}";
  return out;
}

std::string canonical_recipe(const EngineConfig& config) {
  struct SlotValue {
    Slot slot;
    const std::string* strategy;
    const StrategyOptions* options;
  };
  const SlotValue slots[] = {
      {Slot::kCache, &config.cache, &config.cache_options},
      {Slot::kQuantizer, &config.quantizer, &config.quantizer_options},
      {Slot::kPruner, &config.pruner, &config.pruner_options},
      {Slot::kDecoder, &config.decoder, &config.decoder_options},
      {Slot::kParallel, &config.parallel, &config.parallel_options},
  };
  std::string out;
  for (const SlotValue& s : slots) {
    const Technique* named = nullptr;
    for (const Technique& t : technique_catalogue())
      if (t.canonical && t.slot == s.slot && t.strategy == *s.strategy) named = &t;
    if (named == nullptr) {
      // Reached only for a strategy registered outside the catalogue.
      effective(s.slot, *s.strategy, *s.options);  // an unknown name fails here, listing the known
      fail(Status::kInvalidArgument, "the {} '{}' has no technique name in the recipe catalogue",
           slot_name(s.slot), *s.strategy);
    }
    out += (out.empty() ? "" : "+") + format_recipe_part(named->name, effective(s.slot, *s.strategy, *s.options));
  }
  if (config.scheduler.batch_invariant) out += "+batch-invariant";
  return out;
}

std::vector<std::string> split_recipe_list(const std::string& list) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  bool quoted = false;
  auto flush = [&] {
    const size_t b = cur.find_first_not_of(" \t");
    const size_t e = cur.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(cur.substr(b, e - b + 1));
    cur.clear();
  };
  for (size_t i = 0; i < list.size(); ++i) {
    const char c = list[i];
    if (quoted) {
      cur += c;
      if (c == '\\' && i + 1 < list.size()) {
        cur += list[++i];
      } else if (c == '"') {
        quoted = false;
      }
      continue;
    }
    if (c == '"') quoted = true;
    if (c == '{') ++depth;
    if (c == '}' && depth > 0) --depth;
    if (c == ',' && depth == 0) {
      flush();
      continue;
    }
    cur += c;
  }
  flush();
  return out;
}

}  // namespace udaci
