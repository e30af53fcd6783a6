#include "engine/engine_config.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "engine/recipe.hpp"
#include "engine/registry.hpp"

namespace udaci {

using json = nlohmann::json;

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32" || name == "f32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "fp16" || name == "float16" || name == "f16") return at::kHalf;
  fail(Status::kInvalidArgument, "unknown dtype '{}' (expected fp32, bf16 or fp16)", name);
}

const char* dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    default: return "fp32";
  }
}

at::Device parse_device(const std::string& name) {
  if (name == "cpu") return at::kCPU;
  UDACI_CHECK(name == "cuda" || name.rfind("cuda:", 0) == 0,
              "device must be \"cpu\", \"cuda\" or \"cuda:N\", got \"{}\"", name);
  UDACI_CHECK_S(Status::kUnsupported, at::hasCUDA(),
                "device \"{}\": this build of LibTorch has no CUDA (or no GPU is visible)", name);
  try {
    return at::Device(name);
  } catch (const std::exception& e) {
    fail(Status::kInvalidArgument, "device \"{}\": {}", name, e.what());
  }
}

void EngineConfig::set_recipe(const std::string& recipe) { apply_recipe(parse_recipe(recipe), *this); }

std::string EngineConfig::recipe() const { return canonical_recipe(*this); }

void EngineConfig::validate() const {
  // The recipe's own checks: every slot's name and options.
  canonical_recipe(*this);
  UDACI_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
              "dtype must be fp32, bf16 or fp16, got {}", c10::toString(dtype));
  parse_device(device);
  scheduler.validate();
  UDACI_CHECK(max_prompt_tokens >= 0, "max_prompt_tokens must be >= 0 (0: no cap), got {}", max_prompt_tokens);
  UDACI_CHECK(max_memory_bytes >= 0, "max_memory_bytes must be >= 0 (0: no cap), got {}", max_memory_bytes);
  UDACI_CHECK(threads >= 0 && threads <= 1024, "threads must be in [0, 1024] (0: leave as it is), got {}",
              threads);
  UDACI_CHECK(generation.repetition_stop >= 0 && generation.repetition_stop <= kMaxRepetitionStop,
              "generation repetition_stop must be 0 (off) or 1 to {} tokens, got {}", kMaxRepetitionStop,
              generation.repetition_stop);
  // Both prompts, whichever the model will use: its template is only known
  // once it is read.
  UDACI_CHECK(prompt.instruction.find("{summary}") != std::string::npos,
              "prompt instruction must contain \"{{summary}}\", got \"{}\"", prompt.instruction);
  UDACI_CHECK(prompt.completion.find("{summary}") != std::string::npos,
              "prompt completion must contain \"{{summary}}\", got \"{}\"", prompt.completion);
  PromptBuilder check(prompt, "");  // its own checks (size cap)
  (void)check;
}

namespace {

constexpr int kMaxConfigDepth = 16;

// The JSON path of a key, for messages: /prompt/system.
std::string path_of(const std::string& parent, const std::string& key) { return parent + "/" + key; }

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void bad(const std::string& path, const std::string& what) const {
    fail(Status::kInvalidArgument, "{}: {} {}", source_, path.empty() ? "/" : path, what);
  }

  void only(const json& obj, const std::string& path, const std::set<std::string>& known) const {
    if (!obj.is_object()) bad(path, fmt::format("must be a JSON object, got {}", obj.type_name()));
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (known.count(it.key()) != 0) continue;
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      bad(path_of(path, it.key()), fmt::format("is not a known key (known here: {})", list));
    }
  }

  std::string str(const json& v, const std::string& path) const {
    if (!v.is_string()) bad(path, fmt::format("must be a string, got {}", v.type_name()));
    return v.get<std::string>();
  }
  int64_t integer(const json& v, const std::string& path) const {
    if (!v.is_number_integer()) bad(path, fmt::format("must be an integer, got {}", v.type_name()));
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      bad(path, "is out of range");
    return v.get<int64_t>();
  }
  bool boolean(const json& v, const std::string& path) const {
    if (!v.is_boolean()) bad(path, fmt::format("must be true or false, got {}", v.type_name()));
    return v.get<bool>();
  }
  // A strategy option: strings, numbers and booleans, kept as the text the
  // strategy parses (true/false as 1/0).
  std::string option_value(const json& v, const std::string& path) const {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
    if (v.is_number_integer()) return v.dump();
    if (v.is_number_float()) return fmt::format("{}", v.get<double>());
    bad(path, fmt::format("must be a string, number or boolean, got {}", v.type_name()));
  }

  template <typename F>
  void with_context(const std::string& path, F&& f) const {
    try {
      f();
    } catch (const Error& e) {
      throw Error(e.status(), fmt::format("{}: {}: {}", source_, path, e.what()));
    }
  }

 private:
  std::string source_;
};

}  // namespace

EngineConfig EngineConfig::from_json(const std::string& text, const std::string& source) {
  UDACI_CHECK(text.size() <= kMaxEngineConfigBytes, "{}: the configuration is {} bytes, over the limit of {}",
              source, text.size(), kMaxEngineConfigBytes);
  json doc;
  try {
    const json::parser_callback_t limit_depth = [&](int depth, json::parse_event_t, json&) {
      UDACI_CHECK(depth <= kMaxConfigDepth, "{}: JSON nested deeper than {} levels", source, kMaxConfigDepth);
      return true;
    };
    doc = json::parse(text, limit_depth);
  } catch (const json::exception& e) {
    fail(Status::kInvalidArgument, "{}: not valid JSON ({})", source, e.what());
  }
  const Reader r(source);
  r.only(doc, "", {"schema", "model", "tokenizer", "recipe", "options", "scheduler", "prompt", "limits",
                   "generation", "threads", "device", "dtype"});
  if (!doc.contains("schema"))
    r.bad("/schema", fmt::format("is missing (a udaci config file starts with \"schema\": \"{}\")", kConfigSchema));
  const std::string schema = r.str(doc["schema"], "/schema");
  if (schema != kConfigSchema)
    r.bad("/schema", fmt::format("is \"{}\"; this udaci reads \"{}\"", schema, kConfigSchema));

  EngineConfig c;
  if (doc.contains("model")) c.model_path = r.str(doc["model"], "/model");
  if (doc.contains("tokenizer")) c.tokenizer_path = r.str(doc["tokenizer"], "/tokenizer");
  if (doc.contains("dtype")) {
    const std::string d = r.str(doc["dtype"], "/dtype");
    r.with_context("/dtype", [&] { c.dtype = parse_dtype(d); });
  }
  if (doc.contains("device")) c.device = r.str(doc["device"], "/device");
  if (doc.contains("threads")) {
    const int64_t t = r.integer(doc["threads"], "/threads");
    if (t < 0 || t > 1024) r.bad("/threads", fmt::format("must be in [0, 1024] (0: leave as it is), got {}", t));
    c.threads = static_cast<int>(t);
  }
  if (doc.contains("recipe")) {
    const std::string recipe = r.str(doc["recipe"], "/recipe");
    r.with_context("/recipe", [&] { c.set_recipe(recipe); });
  }
  if (doc.contains("options")) {
    const json& o = doc["options"];
    r.only(o, "/options", {"cache", "quantizer", "pruner", "decoder", "parallel"});
    const std::pair<const char*, StrategyOptions*> slots[] = {{"cache", &c.cache_options},
                                                              {"quantizer", &c.quantizer_options},
                                                              {"pruner", &c.pruner_options},
                                                              {"decoder", &c.decoder_options},
                                                              {"parallel", &c.parallel_options}};
    for (const auto& s : slots) {
      if (!o.contains(s.first)) continue;
      const std::string path = path_of("/options", s.first);
      const json& values = o[s.first];
      if (!values.is_object()) r.bad(path, fmt::format("must be a JSON object, got {}", values.type_name()));
      for (auto it = values.begin(); it != values.end(); ++it)
        s.second->set(it.key(), r.option_value(it.value(), path_of(path, it.key())));
    }
  }
  if (doc.contains("scheduler")) {
    const json& s = doc["scheduler"];
    r.only(s, "/scheduler", {"max_sequences", "max_cache_bytes", "prefill_chunk", "batch_invariant"});
    if (s.contains("max_sequences")) c.scheduler.max_sequences = r.integer(s["max_sequences"], "/scheduler/max_sequences");
    if (s.contains("max_cache_bytes"))
      c.scheduler.max_cache_bytes = r.integer(s["max_cache_bytes"], "/scheduler/max_cache_bytes");
    if (s.contains("prefill_chunk")) c.scheduler.prefill_chunk = r.integer(s["prefill_chunk"], "/scheduler/prefill_chunk");
    // The recipe's batch-invariant part turns it on too.
    if (s.contains("batch_invariant"))
      c.scheduler.batch_invariant =
          r.boolean(s["batch_invariant"], "/scheduler/batch_invariant") || c.scheduler.batch_invariant;
    r.with_context("/scheduler", [&] { c.scheduler.validate(); });
  }
  if (doc.contains("prompt")) {
    const json& p = doc["prompt"];
    r.only(p, "/prompt", {"use_chat_template", "system", "instruction", "completion", "max_summary_bytes"});
    if (p.contains("use_chat_template"))
      c.prompt.use_chat_template = r.boolean(p["use_chat_template"], "/prompt/use_chat_template");
    if (p.contains("system")) c.prompt.system = r.str(p["system"], "/prompt/system");
    if (p.contains("instruction")) c.prompt.instruction = r.str(p["instruction"], "/prompt/instruction");
    if (p.contains("completion")) c.prompt.completion = r.str(p["completion"], "/prompt/completion");
    if (p.contains("max_summary_bytes")) {
      const int64_t m = r.integer(p["max_summary_bytes"], "/prompt/max_summary_bytes");
      if (m < 1 || m > (int64_t{1} << 24))
        r.bad("/prompt/max_summary_bytes", fmt::format("must be in [1, 16777216], got {}", m));
      c.prompt.max_summary_bytes = static_cast<size_t>(m);
    }
    r.with_context("/prompt", [&] { PromptBuilder check(c.prompt, ""); });
  }
  if (doc.contains("limits")) {
    const json& l = doc["limits"];
    r.only(l, "/limits", {"max_prompt_tokens", "max_memory_bytes"});
    if (l.contains("max_prompt_tokens"))
      c.max_prompt_tokens = r.integer(l["max_prompt_tokens"], "/limits/max_prompt_tokens");
    if (l.contains("max_memory_bytes")) c.max_memory_bytes = r.integer(l["max_memory_bytes"], "/limits/max_memory_bytes");
  }
  if (doc.contains("generation")) {
    const json& g = doc["generation"];
    r.only(g, "/generation", {"repetition_stop"});
    if (g.contains("repetition_stop")) {
      const int64_t n = r.integer(g["repetition_stop"], "/generation/repetition_stop");
      if (n < 0 || n > kMaxRepetitionStop)
        r.bad("/generation/repetition_stop",
              fmt::format("must be 0 (off) or 1 to {} tokens, got {}", kMaxRepetitionStop, n));
      c.generation.repetition_stop = n;
    }
  }
  r.with_context(doc.contains("options") ? "/options" : "/", [&] { c.validate(); });
  return c;
}

EngineConfig EngineConfig::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  UDACI_CHECK_S(Status::kNotFound, in.good(), "config file '{}' cannot be opened", path);
  const std::streamoff size = in.tellg();
  UDACI_CHECK(size >= 0 && static_cast<uint64_t>(size) <= kMaxEngineConfigBytes,
              "config file '{}' is {} bytes, over the limit of {}", path, static_cast<int64_t>(size),
              kMaxEngineConfigBytes);
  in.seekg(0);
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), size);
  UDACI_CHECK_S(Status::kNotFound, in.good() || in.eof(), "config file '{}' cannot be read", path);
  return from_json(text, path);
}

void apply_overrides(EngineConfig& c, const std::map<std::string, StrategyOverride>& overrides) {
  for (const auto& kv : overrides) {
    const StrategyOverride& o = kv.second;
    if (kv.first == "scheduler") {
      UDACI_CHECK(o.name.empty(), "the scheduler takes options, not a name (got '{}')", o.name);
      if (o.options.empty()) continue;
      StrategyOptions merged({{"max_sequences", std::to_string(c.scheduler.max_sequences)},
                              {"max_cache_bytes", std::to_string(c.scheduler.max_cache_bytes)},
                              {"prefill_chunk", std::to_string(c.scheduler.prefill_chunk)},
                              {"batch_invariant", c.scheduler.batch_invariant ? "1" : "0"}});
      for (const auto& opt : o.options) merged.set(opt.first, opt.second);
      c.scheduler = SchedulerOptions::from(merged);
      continue;
    }
    std::string* name = nullptr;
    StrategyOptions* options = nullptr;
    if (kv.first == "cache") name = &c.cache, options = &c.cache_options;
    if (kv.first == "quantizer") name = &c.quantizer, options = &c.quantizer_options;
    if (kv.first == "pruner") name = &c.pruner, options = &c.pruner_options;
    if (kv.first == "decoder") name = &c.decoder, options = &c.decoder_options;
    if (kv.first == "parallel") name = &c.parallel, options = &c.parallel_options;
    UDACI_CHECK(name != nullptr,
                "unknown strategy slot '{}' (known: cache, quantizer, pruner, decoder, parallel, scheduler)",
                kv.first);
    if (!o.name.empty()) {
      *name = o.name;
      *options = StrategyOptions{};
    }
    for (const auto& opt : o.options) options->set(opt.first, opt.second);
  }
}

std::string EngineConfig::to_json() const {
  json doc = json::object();
  doc["schema"] = kConfigSchema;
  doc["model"] = model_path;
  doc["tokenizer"] = tokenizer_path;
  doc["recipe"] = recipe();
  doc["dtype"] = dtype_name(dtype);
  doc["device"] = device;
  doc["threads"] = threads;
  doc["scheduler"] = {{"max_sequences", scheduler.max_sequences},
                      {"max_cache_bytes", scheduler.max_cache_bytes},
                      {"prefill_chunk", scheduler.prefill_chunk},
                      {"batch_invariant", scheduler.batch_invariant}};
  doc["prompt"] = {{"use_chat_template", prompt.use_chat_template},
                   {"system", prompt.system},
                   {"instruction", prompt.instruction},
                   {"completion", prompt.completion},
                   {"max_summary_bytes", prompt.max_summary_bytes}};
  doc["limits"] = {{"max_prompt_tokens", max_prompt_tokens}, {"max_memory_bytes", max_memory_bytes}};
  doc["generation"] = {{"repetition_stop", generation.repetition_stop}};
  // Prompt texts from the C ABI need not be UTF-8: write U+FFFD, never throw.
  return doc.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace udaci
