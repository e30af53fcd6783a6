// Recipes and config files (issue #21, M12): the one configuration language
// of every front end. Parsing, the strategies' own option checks, canonical
// strings that round-trip, the config file's JSON with its errors naming the
// key's path, and that all of it fails before a model file is opened.
#include "udaci_catch.hpp"

#include <filesystem>
#include <fstream>
#include <random>

#include "engine/engine_config.hpp"
#include "engine/headline_engine.hpp"
#include "engine/recipe.hpp"
#include "test_util.hpp"

using namespace udaci;
using Catch::Matchers::Contains;

namespace {

EngineConfig with_recipe(const std::string& r) {
  EngineConfig c;
  c.set_recipe(r);
  return c;
}

// The error a call throws: its status and message.
std::pair<Status, std::string> error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return {e.status(), e.what()};
  }
  return {Status::kOk, ""};
}

std::string config_text(const std::string& body) {
  return std::string("{\"schema\": \"udaci-config/1\"") + (body.empty() ? "" : ", " + body) + "}";
}

}  // namespace

TEST_CASE("recipe: parts choose slots, options override presets", "[unit][recipe]") {
  const EngineConfig d;
  CHECK(d.recipe() == "kv-cache+as-stored+no-prune+sampling+single-device");

  EngineConfig c = with_recipe("gguf-native+paged-prefix+spec-lookup");
  CHECK(c.cache == "paged-prefix");
  CHECK(c.quantizer == "gguf-native");
  CHECK(c.decoder == "speculative");
  CHECK(c.decoder_options.get_string("t", "draft", "") == "prompt-lookup");
  CHECK(c.pruner == "none");  // untouched slots keep their value

  c = with_recipe(" int4{ group = 64 , scheme=nf4 } + paged{block=32} + spec-self-int4{k_max=6} ");
  CHECK(c.quantizer == "int4");
  CHECK(c.quantizer_options.get_int("t", "group", 0) == 64);
  CHECK(c.quantizer_options.get_string("t", "scheme", "") == "nf4");
  CHECK(c.cache_options.get_int("t", "block", 0) == 32);
  CHECK(c.decoder_options.get_int("t", "k_max", 0) == 6);
  CHECK(c.decoder_options.get_string("t", "draft", "") == "self-int4");

  // A preset is overridden by the braces: prune-30{fraction=0.5} prunes half.
  c = with_recipe("prune-30{fraction=0.5}");
  CHECK(c.pruner == "magnitude");
  CHECK(c.pruner_options.get_double("t", "fraction", 0) == Approx(0.5));

  c = with_recipe("batch-invariant+baseline");
  CHECK(c.scheduler.batch_invariant);
  CHECK(c.cache == "none");
}

TEST_CASE("recipe: canonical strings spell every slot and option and round-trip", "[unit][recipe]") {
  for (const Technique& t : technique_catalogue()) {
    INFO(t.name);
    const std::string r = t.name == "spec-draft" ? "spec-draft{draft_model=/models/draft.gguf}" : t.name;
    const EngineConfig a = with_recipe(r);
    const std::string canonical = a.recipe();
    const EngineConfig b = with_recipe(canonical);
    CHECK(b.recipe() == canonical);
    CHECK(b.cache == a.cache);
    CHECK(b.quantizer == a.quantizer);
    CHECK(b.pruner == a.pruner);
    CHECK(b.decoder == a.decoder);
    CHECK(b.parallel == a.parallel);
    CHECK(b.scheduler.batch_invariant == a.scheduler.batch_invariant);
    // Every slot is named, in order.
    CHECK(std::count(canonical.begin(), canonical.end(), '+') >= 4);
  }
  // Defaults are spelled out: the paged cache's block, the pruner's fraction.
  CHECK(with_recipe("paged").recipe() ==
        "paged{block=16,kv=float,max_blocks=0,max_bytes=0,prefix=0}+as-stored+no-prune+sampling+single-device");
  CHECK(with_recipe("prune-30+greedy").recipe() ==
        "kv-cache+as-stored+prune-magnitude{fraction=0.3,scope=layer}+greedy{repetition_penalty=1}+single-device");
  // Values with characters a bare value may not hold are quoted, and read back.
  const EngineConfig q = with_recipe(R"(spec-draft{draft_model="/m/my draft, v2+{x}.gguf"})");
  CHECK(q.decoder_options.get_string("t", "draft_model", "") == "/m/my draft, v2+{x}.gguf");
  CHECK_THAT(q.recipe(), Contains(R"(draft_model="/m/my draft, v2+{x}.gguf")"));
  CHECK(with_recipe(q.recipe()).decoder_options.get_string("t", "draft_model", "") == "/m/my draft, v2+{x}.gguf");
  const EngineConfig e = with_recipe(R"(spec-draft{draft_model="a\"b\\c"})");
  CHECK(e.decoder_options.get_string("t", "draft_model", "") == "a\"b\\c");
  CHECK(with_recipe(e.recipe()).recipe() == e.recipe());
}

TEST_CASE("recipe: every error names the part and lists what is allowed", "[unit][recipe]") {
  auto err = [](const std::string& r) { return error_of([&] { with_recipe(r); }); };
  auto is_invalid = [&](const std::string& r, const std::string& needle) {
    INFO(r);
    const auto e = err(r);
    CHECK(e.first == Status::kInvalidArgument);
    CHECK_THAT(e.second, Contains(needle));
  };
  // Unknown technique: names it and lists the catalogue.
  is_invalid("gguf-native+warp-drive", "unknown technique 'warp-drive'");
  is_invalid("warp-drive", "known: baseline, kv-cache, paged");
  // Two parts of one slot.
  is_invalid("int8+int4", "'int8' and 'int4' both choose the quantizer");
  is_invalid("kv-cache+paged{block=8}", "'kv-cache' and 'paged{block=8}' both choose the cache");
  is_invalid("spec-lookup+beam-4", "both choose the decoder");
  // An option of another strategy: names the part and the known options.
  is_invalid("int4{block=16}", "part 'int4{block=16}'");
  is_invalid("int4{block=16}", "unknown option \"block\" (known: embed, group, head, scheme)");
  is_invalid("kv-cache{group=64}", "unknown option \"group\" (known: none)");
  is_invalid("gguf-native{group=32}", "part 'gguf-native{group=32}'");
  // A bad value.
  is_invalid("int4{group=abc}", "\"group\" must be an integer, got \"abc\"");
  is_invalid("int4{group=48}", "group must be 32, 64 or 128, got 48");
  is_invalid("paged{block=0}", "\"block\" must be in 1..4096");
  is_invalid("beam{width=0}", "width must be in [1, 256]");
  is_invalid("spec-draft", "draft_model=PATH");
  is_invalid("prune-30{fraction=nan}", "must be a finite number");
  // Syntax.
  is_invalid("", "recipe is empty");
  is_invalid("int4+", "ends with '+'");
  is_invalid("int4++paged", "no technique name");
  is_invalid("int4{group}", "option 'group' needs '=value'");
  is_invalid("int4{group=}", "option 'group' has no value");
  is_invalid("int4{group=32", "missing '}'");
  is_invalid("int4{group=32,group=64}", "option 'group' given twice");
  is_invalid(R"(spec-draft{draft_model="x)", "unterminated quoted value");
  is_invalid("int4 paged", "unexpected 'p'");
  is_invalid("Int4", "unexpected 'I'");
}

TEST_CASE("recipe: comma lists split outside braces and quotes", "[unit][recipe]") {
  CHECK(split_recipe_list(" a, b+c{x=1,y=2} ,,d ") == std::vector<std::string>{"a", "b+c{x=1,y=2}", "d"});
  CHECK(split_recipe_list(R"(s{p="a,b"},t)") == std::vector<std::string>{R"(s{p="a,b"})", "t"});
}

TEST_CASE("config: JSON round-trips and overrides in order", "[unit][recipe][config]") {
  EngineConfig c = EngineConfig::from_json(config_text(R"(
    "model": "/models/m.gguf", "recipe": "int4{group=64}+paged-prefix",
    "options": {"quantizer": {"group": 128}, "cache": {"block": 32}},
    "scheduler": {"max_sequences": 8, "batch_invariant": true},
    "prompt": {"system": "", "completion": "Text: {summary}\nTitle:", "use_chat_template": false},
    "limits": {"max_prompt_tokens": 512, "max_memory_bytes": 1000000000},
    "generation": {"repetition_stop": 12},
    "threads": 2, "dtype": "bf16", "device": "cpu")"));
  CHECK(c.model_path == "/models/m.gguf");
  CHECK(c.quantizer == "int4");
  CHECK(c.quantizer_options.get_int("t", "group", 0) == 128);  // options override the recipe's
  CHECK(c.cache == "paged-prefix");
  CHECK(c.cache_options.get_int("t", "block", 0) == 32);
  CHECK(c.scheduler.max_sequences == 8);
  CHECK(c.scheduler.batch_invariant);
  CHECK(c.prompt.system.empty());
  CHECK(c.prompt.completion == "Text: {summary}\nTitle:");
  CHECK_FALSE(c.prompt.use_chat_template);
  CHECK(c.max_prompt_tokens == 512);
  CHECK(c.max_memory_bytes == 1000000000);
  CHECK(c.threads == 2);
  CHECK(c.dtype == at::kBFloat16);
  CHECK(c.generation.repetition_stop == 12);

  const std::string text = c.to_json();
  const EngineConfig back = EngineConfig::from_json(text);
  CHECK(back.to_json() == text);
  CHECK(back.recipe() == c.recipe());
  CHECK_THAT(back.recipe(), Contains("int4{embed=int8,group=128,head=int8,scheme=affine}"));

  // Only "schema" is required; everything else keeps its default.
  const EngineConfig d = EngineConfig::from_json(config_text(""));
  CHECK(d.to_json() == EngineConfig{}.to_json());

  // A file.
  const std::filesystem::path p = std::filesystem::temp_directory_path() / "udaci_test_config.json";
  {
    std::ofstream f(p);
    f << text;
  }
  CHECK(EngineConfig::from_file(p.string()).to_json() == text);
  std::filesystem::remove(p);
  CHECK(error_of([] { EngineConfig::from_file("/nonexistent/udaci.json"); }).first == Status::kNotFound);
}

TEST_CASE("config: bad files name the key's JSON path", "[unit][recipe][config]") {
  auto is_invalid = [](const std::string& text, const std::string& needle) {
    INFO(text.substr(0, 200));
    const auto e = error_of([&] { EngineConfig::from_json(text, "cfg.json"); });
    CHECK(e.first == Status::kInvalidArgument);
    CHECK_THAT(e.second, Contains(needle));
  };
  is_invalid(config_text(R"("prompt": {"sytem": "x"})"), "cfg.json: /prompt/sytem is not a known key");
  is_invalid(config_text(R"("recipes": "int4")"), "/recipes is not a known key");
  is_invalid(config_text(R"("threads": "2")"), "/threads must be an integer, got string");
  is_invalid(config_text(R"("scheduler": {"max_sequences": 0})"), "max_sequences must be >= 1");
  is_invalid(config_text(R"("scheduler": {"batch_invariant": 1})"), "/scheduler/batch_invariant must be true or false");
  is_invalid(config_text(R"("dtype": "fp8")"), "/dtype: unknown dtype 'fp8'");
  is_invalid(config_text(R"("generation": {"repetition_stop": -1})"), "/generation/repetition_stop must be 0 (off) or 1 to 64");
  is_invalid(config_text(R"("generation": {"repetition_stop": true})"), "/generation/repetition_stop must be an integer");
  is_invalid(config_text(R"("generation": {"max_new_tokens": 9})"), "/generation/max_new_tokens is not a known key");
  is_invalid(config_text(R"("recipe": "int8+int4")"), "/recipe: recipe 'int8+int4': 'int8' and 'int4' both choose");
  is_invalid(config_text(R"("recipe": "int4{block=1}")"), "unknown option \"block\"");
  is_invalid(config_text(R"("options": {"cache": {"group": 64}})"), "cache 'contiguous': unknown option \"group\"");
  is_invalid(config_text(R"("options": {"sampler": {}})"), "/options/sampler is not a known key");
  is_invalid(config_text(R"("prompt": {"instruction": "no placeholder"})"), "{summary}");
  is_invalid(R"({"model": "x"})", "/schema is missing");
  is_invalid(R"({"schema": "udaci-config/9"})", "this udaci reads \"udaci-config/1\"");
  is_invalid(R"({"schema": "udaci-config/1",)", "not valid JSON");
  is_invalid("[1, 2]", "must be a JSON object, got array");
  is_invalid(std::string(64, '[') + std::string(64, ']'), "nested deeper than 16 levels");
  is_invalid(config_text("\"model\": \"" + std::string(kMaxEngineConfigBytes, 'x') + "\""), "over the limit of");
}

TEST_CASE("config: a bad recipe or file fails before any model file is opened", "[unit][recipe][config]") {
  // The model does not exist: if it were looked at, the status would be kNotFound.
  for (const std::string r : {"warp-drive", "int8+int4", "int4{block=16}", "int4{group=abc}"}) {
    INFO(r);
    const auto e = error_of([&] {
      EngineConfig c;
      c.model_path = "/nonexistent/model.gguf";
      c.set_recipe(r);
      HeadlineEngine engine(c);
    });
    CHECK(e.first == Status::kInvalidArgument);
  }
  EngineConfig c;
  c.model_path = "/nonexistent/model.gguf";
  c.quantizer = "int4";
  c.quantizer_options.set("group", "48");
  CHECK(error_of([&] { HeadlineEngine engine(c); }).first == Status::kInvalidArgument);
  c = EngineConfig{};
  c.model_path = "/nonexistent/model.gguf";
  CHECK(error_of([&] { HeadlineEngine engine(c); }).first == Status::kNotFound);
}

TEST_CASE("config: as-stored runs a GGUF's blocks, and the engine reports what it chose", "[unit][recipe][smollm2]") {
  const std::string gguf = udaci_test::default_model_gguf();
  if (gguf.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  EngineConfig c;
  c.model_path = gguf;
  const HeadlineEngine stored(c);
  CHECK(stored.config().quantizer == "gguf-native");
  CHECK(stored.recipe() == "kv-cache+gguf-native+no-prune+sampling+single-device");
  c.set_recipe("no-quant");
  const HeadlineEngine dense(c);
  CHECK(dense.recipe() == "kv-cache+no-quant+no-prune+sampling+single-device");
  // Four times fewer weight bytes as stored (Q4_1 vs fp32).
  CHECK(stored.model().weight_bytes() * 3 < dense.model().weight_bytes());
  // The effective configuration builds the same engine.
  const EngineConfig again = EngineConfig::from_json(stored.config().to_json());
  CHECK(HeadlineEngine(again).recipe() == stored.recipe());
}

// Hostile text: whatever bytes arrive as a recipe or a config file, the only
// way out is a udaci::Error (never another exception, a crash or a hang).
// Deterministic: a fixed seed over an alphabet of the grammar's characters,
// and byte mutations of a valid config file.
TEST_CASE("recipe: random text fails only with udaci::Error", "[unit][recipe]") {
  std::mt19937 rng(21);
  const std::string alphabet = "+{}=,\"\\ aint48gufpdkvchrsle-_.:/\x01\xff";
  const std::vector<std::string> words = {"int4", "paged", "spec-draft", "draft_model", "group", "block",
                                          "kv-cache", "{", "}", "+", "=", ",", "\"", "\\"};
  int parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    const int n = static_cast<int>(rng() % 40);
    for (int j = 0; j < n; ++j)
      s += (rng() % 3 == 0) ? words[rng() % words.size()] : std::string(1, alphabet[rng() % alphabet.size()]);
    try {
      EngineConfig c;
      c.set_recipe(s);
      const std::string canonical = c.recipe();
      CHECK(with_recipe(canonical).recipe() == canonical);  // whatever parsed, round-trips
      ++parsed;
    } catch (const Error& e) {
      CHECK(e.status() == Status::kInvalidArgument);
    }
  }
  CHECK(parsed > 0);
  const std::string good = EngineConfig{}.to_json();
  for (int i = 0; i < 3000; ++i) {
    std::string s = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int j = 0; j < edits; ++j) s[rng() % s.size()] = static_cast<char>(rng() % 256);
    try {
      (void)EngineConfig::from_json(s);
    } catch (const Error& e) {
      CHECK(e.status() == Status::kInvalidArgument);
    }
  }
}
