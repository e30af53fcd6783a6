// The udaci command line as a user runs it: exit codes, messages, JSON Lines
// in order, bad lines reported without losing the good ones.
#include "udaci_catch.hpp"
#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_util.hpp"
#include "text/tokenizer.hpp"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Run {
  int status = -1;
  std::string out;
  std::string err;
};

// Runs the CLI with `args` (already shell-quoted) and optional stdin text.
Run run_cli(const std::string& args, const std::string& stdin_text = "") {
  const fs::path dir = fs::temp_directory_path() / ("udaci_cli_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "in.txt", std::ios::binary) << stdin_text;
  const std::string cmd = std::string(UDACI_CLI_PATH) + " " + args + " < " + (dir / "in.txt").string() +
                          " > " + (dir / "out.txt").string() + " 2> " + (dir / "err.txt").string();
  Run r;
  const int raw = std::system(cmd.c_str());
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::stringstream o, e;
  o << std::ifstream(dir / "out.txt").rdbuf();
  e << std::ifstream(dir / "err.txt").rdbuf();
  r.out = o.str();
  r.err = e.str();
  fs::remove_all(dir);
  return r;
}

std::vector<json> lines(const std::string& s) {
  std::vector<json> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST_CASE("cli: info and generate on a committed checkpoint", "[unit][cli]") {
  const std::string m = quote(udaci_test::fixture("golden/tiny-gqa-tied"));
  Run info = run_cli("info --model " + m);
  REQUIRE(info.status == 0);
  json j = json::parse(info.out);
  CHECK(j["config"]["num_key_value_heads"] == 2);
  CHECK(j["bytes_by_dtype"]["F32"].get<int64_t>() > 0);
  CHECK(j["parameters"].get<int64_t>() == j["bytes_total"].get<int64_t>() / 4);

  Run a = run_cli("generate --model " + m + " --ids '5,6,7' --max-new-tokens 6 --ignore-eos");
  Run b = run_cli("generate --model " + m + " --ids '5 6 7' --max-new-tokens 6 --ignore-eos --cache none");
  REQUIRE(a.status == 0);
  REQUIRE(b.status == 0);
  CHECK(json::parse(a.out)["tokens"].size() == 6);
  CHECK(json::parse(a.out)["tokens"] == json::parse(b.out)["tokens"]);
}

TEST_CASE("cli: wrong options and bad models give a message and status 1 or 2", "[unit][cli]") {
  const std::string m = quote(udaci_test::fixture("golden/tiny-gqa-tied"));
  Run r1 = run_cli("generate --model " + m + " --ids '1,x'");
  CHECK(r1.status == 1);
  CHECK(r1.err.find("'x' is not a token id") != std::string::npos);
  Run r2 = run_cli("generate --model " + m + " --ids 1 --dtype int3");
  CHECK(r2.status == 1);
  // The engine's own message, as every front end gives it.
  CHECK(r2.err.find("unknown dtype 'int3' (expected fp32, bf16 or fp16)") != std::string::npos);
  Run r3 = run_cli("generate --model " + m + " --ids 1 --top-p 7");
  CHECK(r3.status == 1);
  CHECK(r3.err.find("top_p") != std::string::npos);
  Run r4 = run_cli("info --model /nonexistent/model");
  CHECK(r4.status == 1);
  CHECK(r4.err.find("does not exist") != std::string::npos);
  Run r5 = run_cli("generate --model " + m + " --ids 999");
  CHECK(r5.status == 1);
  CHECK(r5.err.find("outside the vocabulary") != std::string::npos);
  Run r6 = run_cli("frobnicate");
  CHECK(r6.status != 0);
  Run r7 = run_cli("info --model " + quote(udaci_test::fixture("golden/tiny-gqa-tied/config.json")));
  CHECK(r7.status == 1);
  CHECK(r7.err.find("is not a model") != std::string::npos);
  // fp16 compute on the CPU: refused with the reason and the alternatives,
  // not an ATen error and its stack trace from inside the first forward pass.
  Run r8 = run_cli("generate --model " + m + " --ids 5 --max-new-tokens 2 --dtype fp16");
  CHECK(r8.status == 1);
  CHECK(r8.err.find("float16 compute runs on CUDA devices only") != std::string::npos);
  CHECK(r8.err.find("Exception raised from") == std::string::npos);
  Run r9 = run_cli("generate --model " + m + " --ids 5 --max-new-tokens 2 --dtype bf16");
  CHECK(r9.status == 0);
}

TEST_CASE("cli: info checks the checkpoint it describes: missing or mis-shaped tensors exit 1", "[unit][cli]") {
  // The committed checkpoint with a config.json that does not fit its
  // tensors: one layer more (its tensors are missing), a wider MLP (the
  // gate/up/down shapes disagree).
  const fs::path src = udaci_test::fixture("golden/tiny-gqa-tied");
  const fs::path dir = fs::temp_directory_path() / ("udaci_cli_info_" + std::to_string(::getpid()));
  auto variant = [&](const std::string& name, const std::string& key, int value) {
    const fs::path d = dir / name;
    fs::create_directories(d);
    fs::copy_file(src / "model.safetensors", d / "model.safetensors", fs::copy_options::overwrite_existing);
    json c = json::parse(std::ifstream(src / "config.json"));
    c[key] = value;
    std::ofstream(d / "config.json") << c.dump();
    return quote(d.string());
  };
  Run missing = run_cli("info --model " + variant("missing", "num_hidden_layers", 3));
  CHECK(missing.status == 1);
  CHECK(missing.out.empty());
  CHECK(missing.err.find("model.layers.2.") != std::string::npos);
  Run shape = run_cli("info --model " + variant("shape", "intermediate_size", 192));
  CHECK(shape.status == 1);
  CHECK(shape.err.find("mlp") != std::string::npos);
  CHECK(shape.err.find("192") != std::string::npos);
  Run ok = run_cli("info --model " + variant("ok", "num_hidden_layers", 2));
  CHECK(ok.status == 0);
  CHECK(json::parse(ok.out)["config"]["num_hidden_layers"] == 2);
  fs::remove_all(dir);
}

TEST_CASE("cli: tokenize and detokenize keep order and report bad lines", "[unit][cli]") {
  const std::string tj = udaci_test::shared_path("assets/tokenizers/llama3/tokenizer.json");
  if (!udaci_test::shared_available()) {
    WARN("../shared is absent: skipping the tokenize CLI test");
    return;
  }
  udaci::Tokenizer tok = udaci::Tokenizer::from_tokenizer_json(tj);
  const std::string input =
      "{\"text\": \"Hello world\"}\n{\"text\": 5}\nnot json\n\n{\"text\": \"Ünïcödé 🎉 123\"}\n";
  Run r = run_cli("tokenize --tokenizer " + quote(tj), input);
  CHECK(r.status == 1);  // bad lines make the status non-zero, but every line is answered
  auto out = lines(r.out);
  REQUIRE(out.size() == 4);
  CHECK(out[0]["ids"].get<std::vector<int32_t>>() == tok.encode("Hello world"));
  CHECK(out[1]["line"] == 2);
  CHECK(out[2]["line"] == 3);
  CHECK(out[3]["ids"].get<std::vector<int32_t>>() == tok.encode("Ünïcödé 🎉 123"));
  CHECK(r.err.find("line 2") != std::string::npos);

  Run s = run_cli("tokenize --add-special --tokenizer " + quote(tj), "{\"text\": \"Hi\"}\n");
  REQUIRE(s.status == 0);
  CHECK(lines(s.out)[0]["ids"][0] == 128000);

  json ids = {{"ids", tok.encode("Ünïcödé 🎉 123")}};
  Run d = run_cli("detokenize --tokenizer " + quote(tj), ids.dump() + "\n{\"ids\": [-1]}\n");
  CHECK(d.status == 1);
  auto dl = lines(d.out);
  REQUIRE(dl.size() == 2);
  CHECK(dl[0]["text"] == "Ünïcödé 🎉 123");
  CHECK(dl[1].contains("error"));
}

TEST_CASE("cli: headline --input writes one result per good record and skips bad lines", "[unit][cli][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("udaci_head_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "in.jsonl")
      << "{\"link\": \"L1\", \"headline\": \"H1\", \"short_description\": \"The city council voted on Monday to "
         "expand the bike lane network across downtown.\"}\n"
      << "{broken\n"
      << "{\"link\": \"L3\", \"headline\": \"H3\"}\n"
      << "{\"link\": \"L4\", \"headline\": \"H4\", \"short_description\": \"Scientists found water ice in a "
         "crater near the moon's south pole.\"}\n";
  Run r = run_cli("--threads 2 headline --max-new-tokens 24 --batch 2 --model " + quote(model) + " --input " +
                  quote((dir / "in.jsonl").string()) + " --output " + quote((dir / "out.jsonl").string()));
  CHECK(r.status == 0);
  CHECK(r.err.find(":2: invalid JSON") != std::string::npos);
  CHECK(r.err.find(":3: field \"short_description\" is missing") != std::string::npos);
  std::stringstream ss;
  ss << std::ifstream(dir / "out.jsonl").rdbuf();
  auto out = lines(ss.str());
  REQUIRE(out.size() == 2);
  CHECK(out[0]["link"] == "L1");
  CHECK(out[1]["link"] == "L4");
  CHECK(out[1]["reference"] == "H4");
  for (const json& o : out) {
    const std::string g = o["generated"];
    CHECK(!g.empty());
    CHECK(g.find('\n') == std::string::npos);
    CHECK(o["prompt_tokens"].get<int>() > 20);
    CHECK(o["new_tokens"].get<int>() >= 1);
    CHECK(o["new_tokens"].get<int>() <= 24);
  }
  fs::remove_all(dir);
}

TEST_CASE("cli: perplexity scores news records after a quantizer or pruner", "[unit][cli][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("udaci_ppl_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string in = (dir / "news.jsonl").string();
  std::ofstream(in)
      << "{\"headline\": \"City Expands Bike Lanes\", \"short_description\": \"The city council voted "
         "on Monday to expand the bike lane network across downtown.\"}\n"
      << "not json\n"
      << "{\"headline\": \"Ice Found On The Moon\", \"short_description\": \"Scientists found water "
         "ice in a crater near the moon's south pole.\"}\n"
      << "{\"headline\": \"Storm Closes Schools\", \"short_description\": \"A storm closed schools "
         "across the state on Friday.\"}\n";
  const std::string base = "--threads 2 perplexity --model " + quote(model) + " --input " + quote(in) +
                           " --samples 3";
  auto run_json = [&](const std::string& extra) {
    Run r = run_cli(base + extra);
    INFO(r.err);
    REQUIRE(r.status == 0);
    return json::parse(r.out);
  };
  // The fp32 reference is one recipe name away (the default runs the GGUF's blocks).
  const json fp32 = run_json(" --recipe no-quant");
  const json stored = run_json("");
  CHECK(stored["recipe"] == "kv-cache+gguf-native+no-prune+sampling+single-device");
  CHECK(stored["weight_bytes"].get<double>() < 0.35 * fp32["weight_bytes"].get<double>());
  const double p = fp32["perplexity"];
  CHECK(p > 1.0);
  CHECK(p < 2000.0);  // far below the 49,152-token vocabulary's uniform guess
  CHECK(fp32["sequences"] == 3);
  CHECK(fp32["predicted_tokens"].get<int>() > 30);
  CHECK(std::exp(fp32["mean_nll"].get<double>()) == Approx(p).epsilon(1e-9));

  const json int8 = run_json(" --quantizer int8");
  CHECK(int8["weight_bytes"].get<double>() < 0.35 * fp32["weight_bytes"].get<double>());
  CHECK(int8["perplexity"].get<double>() == Approx(p).epsilon(0.1));  // int8 costs little

  // KL divergence from the fp32 reference on the same tokens (issue #22):
  // the default (the GGUF's Q4_1 blocks) is close to fp32 but not equal;
  // no-quant against itself is 0 with every argmax agreeing.
  const json kl = run_json(" --kl-divergence")["kl_divergence"];
  CHECK(kl["reference_recipe"] == "kv-cache+no-quant+no-prune+sampling+single-device");
  CHECK(kl["reference_perplexity"].get<double>() == Approx(p).epsilon(1e-6));
  CHECK(kl["positions"] == fp32["predicted_tokens"]);
  CHECK(kl["mean_kld"].get<double>() > 1e-4);
  CHECK(kl["mean_kld"].get<double>() < 0.5);
  CHECK(kl["p99_kld"].get<double>() >= kl["mean_kld"].get<double>());
  CHECK(kl["max_kld"].get<double>() >= kl["p99_kld"].get<double>());
  CHECK(kl["top1_agreement"].get<double>() > 0.6);
  CHECK(kl["top1_agreement"].get<double>() <= 1.0);
  CHECK(kl["mean_abs_dp"].get<double>() > 0.0);
  const json self = run_json(" --recipe no-quant --kl-divergence --kl-reference " + quote(model))["kl_divergence"];
  CHECK(self["mean_kld"].get<double>() < 1e-9);
  CHECK(self["top1_agreement"] == 1.0);
  CHECK(self["reference_model"] == model);
  // --tokens-out: the scored ids, one JSON line per sequence, as many
  // predicted positions as the report counts.
  const std::string tokens = (fs::temp_directory_path() / "udaci_ppl_tokens.jsonl").string();
  const json with_tokens = run_json(" --recipe no-quant --tokens-out " + quote(tokens));
  {
    std::ifstream tf(tokens);
    std::string line;
    int64_t lines = 0, predicted = 0;
    while (std::getline(tf, line)) {
      const json ids = json::parse(line)["ids"];
      REQUIRE(ids.size() >= 2);
      for (const json& id : ids) CHECK((id.get<int64_t>() >= 0 && id.get<int64_t>() < 49152));
      predicted += static_cast<int64_t>(ids.size()) - 1;
      ++lines;
    }
    CHECK(lines == 3);
    CHECK(predicted == with_tokens["predicted_tokens"].get<int64_t>());
    fs::remove(tokens);
  }
  Run unwritable = run_cli(base + " --tokens-out /nonexistent-dir/t.jsonl");
  CHECK(unwritable.status == 1);
  CHECK(unwritable.err.find("cannot write '/nonexistent-dir/t.jsonl'") != std::string::npos);
  Run lone = run_cli(base + " --kl-reference " + quote(model));
  CHECK(lone.status == 1);
  CHECK(lone.err.find("--kl-reference needs --kl-divergence") != std::string::npos);

  const json pruned = run_json(" --pruner magnitude --pruner-opt fraction=0.5");
  CHECK(pruned["prune_sparsity"].get<double>() == Approx(0.5).margin(0.02));
  CHECK(pruned["perplexity"].get<double>() > 1.5 * p);  // half the weights gone hurts

  Run bad = run_cli(base + " --quantizer nope");
  CHECK(bad.status == 1);
  CHECK(bad.err.find("nope") != std::string::npos);
  Run missing = run_cli("perplexity --model " + quote(model) + " --input /nonexistent/news.jsonl");
  CHECK(missing.status == 1);
  CHECK(missing.err.find("/nonexistent/news.jsonl") != std::string::npos);
  fs::remove_all(dir);
}

// Issue #21: --recipe and --config on every command that builds an engine,
// refused with the engine's own messages before any model file is opened
// (the model below does not exist: reaching it would say not_found).
TEST_CASE("cli: bad recipes and config files exit 1 naming the part or key", "[unit][cli][recipe]") {
  const std::string no_model = " --model /nonexistent/udaci-cli-model.gguf";
  struct Case {
    std::string args;
    const char* needle;
  };
  const fs::path dir = fs::temp_directory_path() / ("udaci_cli_cfg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto file = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return quote((dir / name).string());
  };
  const std::string big = file("big.json", "{\"schema\": \"udaci-config/1\", \"model\": \"" +
                                               std::string((1 << 20) + 1, 'x') + "\"}");
  const Case cases[] = {
      {"headline x --recipe 'gguf-native+warp-drive'" + no_model, "unknown technique 'warp-drive' (known: baseline"},
      {"headline x --recipe int8+int4" + no_model, "'int8' and 'int4' both choose the quantizer"},
      {"headline x --recipe 'int4{block=16}'" + no_model, "unknown option \"block\" (known: embed, group, head, scheme)"},
      {"perplexity --recipe 'int4{group=abc}'" + no_model, "\"group\" must be an integer, got \"abc\""},
      {"generate --ids 1 --recipe 'paged{block=0}'" + no_model, "\"block\" must be in 1..4096"},
      {"bench --techniques 'int4{group=48}'" + no_model, "group must be 32, 64 or 128"},
      {"headline x --config " + file("unknown.json", R"({"schema": "udaci-config/1", "prompt": {"sytem": ""}})") +
           no_model,
       "/prompt/sytem is not a known key"},
      {"headline x --config " + file("type.json", R"({"schema": "udaci-config/1", "threads": "2"})") + no_model,
       "/threads must be an integer, got string"},
      {"perplexity --config " + file("malformed.json", R"({"schema": "udaci-config/1",)") + no_model,
       "not valid JSON"},
      {"generate --ids 1 --config " + big + no_model, "over the limit"},
      {"bench --config " + file("recipe.json", R"({"schema": "udaci-config/1", "recipe": "kv-cache+paged"})") +
           no_model,
       "both choose the cache"},
  };
  for (const Case& c : cases) {
    INFO(c.args.substr(0, 200));
    const Run r = run_cli(c.args);
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(r.err.find("udaci: error (invalid_argument)") != std::string::npos);
    CHECK(r.err.find(c.needle) != std::string::npos);
  }
  const Run missing = run_cli("headline x --config /nonexistent/deploy.json");
  CHECK(missing.status == 1);
  CHECK(missing.err.find("not_found") != std::string::npos);
  const Run list = run_cli("techniques --json");
  REQUIRE(list.status == 0);
  CHECK(json::parse(list.out).size() > 20);
  fs::remove_all(dir);
}

TEST_CASE("cli: a config file and flags over it", "[unit][cli][recipe][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("udaci_cli_cfg2_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string cfg = (dir / "deploy.json").string();
  std::ofstream(cfg) << R"({"schema": "udaci-config/1", "recipe": "paged-prefix{block=32}+greedy", "threads": 2})";
  // generate prints the recipe it ran: the file's, then the file's with --recipe over it.
  const Run a = run_cli("generate --ids '1 2 3' --max-new-tokens 2 --config " + quote(cfg));
  INFO(a.err);
  REQUIRE(a.status == 0);
  CHECK(json::parse(a.out)["recipe"] ==
        "paged-prefix{block=32,kv=float,max_blocks=0,max_bytes=0,prefix=1}+gguf-native+no-prune+greedy{repetition_penalty=1}+single-device");
  const Run b = run_cli("generate --ids '1 2 3' --max-new-tokens 2 --config " + quote(cfg) +
                        " --recipe no-quant --cache contiguous");
  INFO(b.err);
  REQUIRE(b.status == 0);
  CHECK(json::parse(b.out)["recipe"] == "kv-cache+no-quant+no-prune+greedy{repetition_penalty=1}+single-device");
  // headline with the file gives the same text as the same recipe on the command line.
  const std::string s = quote("The city council approved a plan on Tuesday to plant 10,000 trees along the river.");
  const Run h1 = run_cli("headline " + s + " --config " + quote(cfg));
  const Run h2 = run_cli("--threads 2 headline " + s + " --recipe 'paged-prefix{block=32}+greedy'");
  REQUIRE(h1.status == 0);
  REQUIRE(h2.status == 0);
  CHECK(!h1.out.empty());
  CHECK(h1.out == h2.out);
  fs::remove_all(dir);
}
