// The C ABI's configuration language (issue #21): recipes, config_json,
// udaci_engine_create_from_file and udaci_engine_get_config; every error a
// UDACI_ERR_INVALID_ARGUMENT naming the part or key, before a model file is
// opened.
#include <cstdio>
#include <cstring>
#include <fstream>

#include "c_api/c_api_test_util.hpp"

using namespace udaci_c_test;

namespace {

constexpr const char* kNoModel = "/nonexistent/udaci-c-recipe-test/model.gguf";

// The status and message of udaci_engine_create for these params.
std::pair<udaci_status, std::string> create_error(udaci_engine_params p) {
  udaci_engine* e = nullptr;
  const udaci_status s = udaci_engine_create(&p, &e);
  const std::string msg = udaci_last_error();
  udaci_engine_destroy(e);
  return {s, msg};
}

std::string config_of(const udaci_engine* e) {
  size_t n = 0;
  REQUIRE(udaci_engine_get_config(e, nullptr, &n) == UDACI_ERR_BUFFER_TOO_SMALL);
  std::string s(n, '\0');
  REQUIRE(udaci_engine_get_config(e, s.data(), &n) == UDACI_OK);
  s.resize(n - 1);
  return s;
}

std::string temp_file(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream f(path, std::ios::binary);
  f << text;
  return path;
}

}  // namespace

TEST_CASE("c_api: bad recipes are invalid arguments naming the part", "[c_api][recipe]") {
  struct Case {
    const char* recipe;
    const char* needle;
  };
  const Case cases[] = {
      {"gguf-native+warp-drive", "unknown technique 'warp-drive' (known: baseline, kv-cache"},
      {"int8+int4", "'int8' and 'int4' both choose the quantizer"},
      {"int4{block=16}", "part 'int4{block=16}': quantizer 'int4': unknown option \"block\" (known: embed, group"},
      {"int4{group=abc}", "\"group\" must be an integer, got \"abc\""},
      {"int4{group=48}", "group must be 32, 64 or 128"},
  };
  for (const Case& c : cases) {
    INFO(c.recipe);
    udaci_engine_params p = udaci_engine_default_params();
    p.model_path = kNoModel;  // opening it would be UDACI_ERR_NOT_FOUND
    p.recipe = c.recipe;
    const auto e = create_error(p);
    CHECK(e.first == UDACI_ERR_INVALID_ARGUMENT);
    CHECK(e.second.find(c.needle) != std::string::npos);
    CHECK(e.second.find("params->recipe") != std::string::npos);
  }
  // A legacy field and the recipe: the field overrides, checked the same way.
  udaci_engine_params p = udaci_engine_default_params();
  p.model_path = kNoModel;
  p.recipe = "paged{block=32}";
  p.cache = "contiguous";
  CHECK(create_error(p).first == UDACI_ERR_NOT_FOUND);  // valid: got as far as the model
  p.cache = "warp";
  CHECK(create_error(p).first == UDACI_ERR_INVALID_ARGUMENT);
}

TEST_CASE("c_api: bad config files are invalid arguments naming the key", "[c_api][recipe]") {
  struct Case {
    std::string json;
    const char* needle;
  };
  const std::string model = std::string("\"model\": \"") + kNoModel + "\", ";
  const Case cases[] = {
      {"{" + model + "\"schema\": \"udaci-config/1\", \"prompt\": {\"sytem\": \"x\"}}", "/prompt/sytem is not a known key"},
      {"{" + model + "\"schema\": \"udaci-config/1\", \"threads\": \"2\"}", "/threads must be an integer"},
      {"{" + model + "\"schema\": \"udaci-config/1\", \"recipe\": \"int8+int4\"}", "/recipe: recipe 'int8+int4'"},
      {"{" + model + "\"schema\": \"udaci-config/1\", \"recipe\": \"kv-cache{group=64}\"}", "unknown option \"group\""},
      {"{" + model + "\"schema\": \"udaci-config/1\",", "not valid JSON"},
      {"{" + model + "\"schema\": \"udaci-config/1\", \"x\": \"" + std::string(1 << 20, 'x') + "\"}", "over the limit"},
  };
  for (const Case& c : cases) {
    INFO(c.json.substr(0, 160));
    udaci_engine_params p = udaci_engine_default_params();
    p.config_json = c.json.c_str();
    const auto e = create_error(p);
    CHECK(e.first == UDACI_ERR_INVALID_ARGUMENT);
    CHECK(e.second.find(c.needle) != std::string::npos);
    CHECK(e.second.find("params->config_json") != std::string::npos);
    // The same from a file, whose path names it.
    const std::string path = temp_file("udaci_c_recipe_bad.json", c.json);
    udaci_engine* engine = nullptr;
    CHECK(udaci_engine_create_from_file(path.c_str(), &engine) == UDACI_ERR_INVALID_ARGUMENT);
    CHECK(engine == nullptr);
    CHECK(std::string(udaci_last_error()).find(c.needle) != std::string::npos);
    std::remove(path.c_str());
  }
  udaci_engine* engine = nullptr;
  CHECK(udaci_engine_create_from_file("/nonexistent/udaci.json", &engine) == UDACI_ERR_NOT_FOUND);
  CHECK(udaci_engine_create_from_file(nullptr, &engine) == UDACI_ERR_INVALID_ARGUMENT);
}

TEST_CASE("c_api: the catalogue and status names", "[c_api][recipe]") {
  size_t n = 0;
  REQUIRE(udaci_techniques(nullptr, &n) == UDACI_ERR_BUFFER_TOO_SMALL);
  std::string s(n, '\0');
  REQUIRE(udaci_techniques(s.data(), &n) == UDACI_OK);
  for (const char* name : {"\"baseline\"", "\"paged-prefix\"", "\"gguf-native\"", "\"spec-self-int4\"", "\"as-stored\""})
    CHECK(s.find(name) != std::string::npos);
  // Spelled as Python's udaci.Error.status.
  CHECK(std::string(udaci_status_name(UDACI_ERR_INVALID_ARGUMENT)) == "invalid_argument");
  CHECK(std::string(udaci_status_name(UDACI_ERR_BAD_MODEL_FILE)) == "bad_model_file");
  CHECK(std::string(udaci_status_name(UDACI_ERR_DISTRIBUTED)) == "distributed");
  CHECK(std::string(udaci_status_name(static_cast<udaci_status>(99))) == "unknown_status");
}

TEST_CASE("c_api: a config file builds an engine whose effective config builds the same engine",
          "[c_api][recipe][smollm2]") {
  EnginePtr probe = default_engine();
  if (!probe) return;
  const std::string text = R"({"schema": "udaci-config/1", "recipe": "paged-prefix{block=32}+greedy",
    "threads": 2, "scheduler": {"max_sequences": 4}, "limits": {"max_prompt_tokens": 1024}})";
  const std::string path = temp_file("udaci_c_recipe_good.json", text);
  udaci_engine* raw = nullptr;
  REQUIRE(udaci_engine_create_from_file(path.c_str(), &raw) == UDACI_OK);
  std::remove(path.c_str());
  EnginePtr a(raw);
  const std::string effective = config_of(a.get());
  CHECK(effective.find("\"recipe\": \"paged-prefix{block=32,kv=float,max_blocks=0,max_bytes=0,prefix=1}"
                       "+gguf-native+no-prune+greedy{repetition_penalty=1}+single-device\"") != std::string::npos);
  CHECK(effective.find("\"max_sequences\": 4") != std::string::npos);
  CHECK(effective.find("\"max_prompt_tokens\": 1024") != std::string::npos);

  udaci_engine_params p = udaci_engine_default_params();
  p.config_json = effective.c_str();
  raw = nullptr;
  REQUIRE(udaci_engine_create(&p, &raw) == UDACI_OK);
  EnginePtr b(raw);
  CHECK(config_of(b.get()) == effective);

  udaci_generate_params g = udaci_generate_default_params();
  const char* summary = "The city council approved a plan on Tuesday to plant 10,000 trees along the river.";
  udaci_result* ra = nullptr;
  udaci_result* rb = nullptr;
  REQUIRE(udaci_generate(a.get(), summary, &g, &ra) == UDACI_OK);
  REQUIRE(udaci_generate(b.get(), summary, &g, &rb) == UDACI_OK);
  ResultPtr ha(ra), hb(rb);
  CHECK(headline(ha.get()) == headline(hb.get()));
  CHECK(!headline(ha.get()).empty());

  // Fields away from their defaults override the file; the recipe sets the slots it names.
  p = udaci_engine_default_params();
  p.config_json = effective.c_str();
  p.recipe = "int8";
  p.max_sequences = 2;
  raw = nullptr;
  REQUIRE(udaci_engine_create(&p, &raw) == UDACI_OK);
  EnginePtr c(raw);
  const std::string cc = config_of(c.get());
  CHECK(cc.find("\"recipe\": \"paged-prefix{block=32,") != std::string::npos);
  CHECK(cc.find("+int8{embed=int8,head=int8}+no-prune+greedy{repetition_penalty=1}+") != std::string::npos);
  CHECK(cc.find("\"max_sequences\": 2") != std::string::npos);
}

TEST_CASE("c_api: a speculative engine reports drafted and accepted tokens per result",
          "[c_api][recipe][smollm2]") {
  EnginePtr probe = default_engine();
  if (!probe) return;
  udaci_engine_params p = udaci_engine_default_params();
  // follow_load=0: drafts every step (the adaptive choice depends on timing).
  p.recipe = "spec-lookup{follow_load=0}";
  udaci_engine* raw = nullptr;
  REQUIRE(udaci_engine_create(&p, &raw) == UDACI_OK);
  EnginePtr e(raw);
  udaci_generate_params g = udaci_generate_default_params();
  const char* summary =
      "The city council approved a plan on Tuesday to plant 10,000 trees along the river, the council said.";
  udaci_result* r = nullptr;
  REQUIRE(udaci_generate(e.get(), summary, &g, &r) == UDACI_OK);
  ResultPtr res(r);
  udaci_result* rg = nullptr;
  REQUIRE(udaci_generate(probe.get(), summary, &g, &rg) == UDACI_OK);
  ResultPtr greedy(rg);
  CHECK(headline(res.get()) == headline(greedy.get()));  // speculation keeps greedy's tokens
  udaci_timings t{};
  t.struct_size = sizeof t;
  REQUIRE(udaci_result_get_timings(res.get(), &t) == UDACI_OK);
  CHECK(t.drafted_tokens > 0);
  CHECK(t.accepted_tokens >= 0);
  CHECK(t.accepted_tokens <= t.drafted_tokens);
}

TEST_CASE("c_api: params_init fills the caller's layout", "[c_api][recipe]") {
  // A caller whose header is newer than this library: a bigger struct.
  struct Newer {
    udaci_engine_params p;
    int64_t future_field;
  } n;
  std::memset(&n, 0x5A, sizeof n);
  REQUIRE(udaci_engine_params_init(&n.p, sizeof n) == UDACI_OK);
  CHECK(n.p.struct_size == sizeof n);
  CHECK(n.future_field == 0);
  CHECK(n.p.recipe == nullptr);
  CHECK(n.p.use_chat_template == 1);
  udaci_engine_params small;
  CHECK(udaci_engine_params_init(&small, 8) == UDACI_ERR_INVALID_ARGUMENT);
  CHECK(udaci_engine_params_init(nullptr, sizeof small) == UDACI_ERR_INVALID_ARGUMENT);
}

TEST_CASE("c_api: requests that leave repetition_stop at -1 get the config's generation.repetition_stop",
          "[c_api][recipe][smollm2]") {
  EnginePtr probe = default_engine();
  if (!probe) return;
  // Loops under greedy decoding ("... the Office of Inspector General (OIG) has
  // confirmed that the Office of ..."): the stop of 8 tokens cuts it.
  const char* summary =
      "Despite entering false information, their work wasn't redone fully and in some cases the census takers "
      "received bonuses, the Office of Inspector General reported.";
  auto run = [&](const char* generation, int32_t stop) {
    const std::string text = std::string(R"({"schema": "udaci-config/1", "recipe": "no-quant+greedy")") +
                             (generation ? std::string(", \"generation\": ") + generation : "") + "}";
    udaci_engine_params p = udaci_engine_default_params();
    p.config_json = text.c_str();
    udaci_engine* raw = nullptr;
    REQUIRE(udaci_engine_create(&p, &raw) == UDACI_OK);
    EnginePtr e(raw);
    udaci_generate_params g = udaci_generate_default_params();
    if (stop != -1) g.repetition_stop = stop;
    udaci_result* r = nullptr;
    REQUIRE(udaci_generate(e.get(), summary, &g, &r) == UDACI_OK);
    ResultPtr res(r);
    return std::make_pair(finish(res.get()), raw_text(res.get()));
  };
  const auto by_default = run(nullptr, -1);          // the engine's default: 8
  const auto off_in_config = run(R"({"repetition_stop": 0})", -1);
  const auto request_wins = run(R"({"repetition_stop": 0})", 8);
  CHECK(by_default.first == UDACI_FINISH_REPETITION);
  CHECK(off_in_config.first != UDACI_FINISH_REPETITION);
  CHECK(off_in_config.second.size() > by_default.second.size());
  CHECK(request_wins == by_default);

  // The config file's value is in the effective config; a bad one is refused.
  udaci_engine_params p = udaci_engine_default_params();
  p.config_json = R"({"schema": "udaci-config/1", "generation": {"repetition_stop": 100}})";
  const auto bad = create_error(p);
  CHECK(bad.first == UDACI_ERR_INVALID_ARGUMENT);
  CHECK(bad.second.find("/generation/repetition_stop") != std::string::npos);
  udaci_generate_params g = udaci_generate_default_params();
  g.repetition_stop = -2;
  udaci_result* r = nullptr;
  CHECK(udaci_generate(probe.get(), summary, &g, &r) == UDACI_ERR_INVALID_ARGUMENT);
  CHECK(std::string(udaci_last_error()).find("params->repetition_stop") != std::string::npos);
  CHECK(config_of(probe.get()).find("\"repetition_stop\": 8") != std::string::npos);
}
