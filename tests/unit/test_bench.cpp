// `udaci bench` and `udaci rouge`: the technique catalogue resolves names as
// documented, the CLI scores pairs exactly as rouge-score does (committed
// fixtures), and a short benchmark on the default model produces a complete,
// self-consistent result document.
#include "udaci_catch.hpp"
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "bench/bench_runner.hpp"
#include "bench/techniques.hpp"
#include "core/cpu_features.hpp"
#include "core/weight_memory.hpp"
#include "parallel/communicator.hpp"
#include "test_util.hpp"

using nlohmann::json;
using namespace udaci;
namespace fs = std::filesystem;

namespace {

struct Run {
  int status = -1;
  std::string out;
  std::string err;
};

Run run_cli(const std::string& args, const fs::path& dir, const std::string& stdin_text = "") {
  std::ofstream(dir / "stdin.txt", std::ios::binary) << stdin_text;
  const std::string cmd = std::string(UDACI_CLI_PATH) + " " + args + " < " +
                          (dir / "stdin.txt").string() + " > " + (dir / "stdout.txt").string() +
                          " 2> " + (dir / "stderr.txt").string();
  Run r;
  const int raw = std::system(cmd.c_str());
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = udaci_test::read_file((dir / "stdout.txt").string());
  r.err = udaci_test::read_file((dir / "stderr.txt").string());
  return r;
}

std::vector<json> json_lines(const std::string& s) {
  std::vector<json> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag)
      : path(fs::temp_directory_path() / (tag + "_" + std::to_string(::getpid()))) {
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

}  // namespace

TEST_CASE("bench: techniques resolve, compose and refuse conflicts", "[unit][bench]") {
  BenchConfig base;
  base.engine.model_path = "m.gguf";
  const StrategyRegistry& reg = builtin_strategies();

  const ResolvedTechnique b = resolve_technique("baseline", base, reg);
  CHECK(b.config.engine.cache == "none");
  CHECK(b.config.engine.decoder == "greedy");
  CHECK(b.config.engine.quantizer == "none");  // the fp32 reference, not the file's blocks
  CHECK(b.recipe == "no-cache+no-quant+no-prune+greedy{repetition_penalty=1}+single-device");
  CHECK(b.unavailable.empty());
  CHECK(b.config.engine.model_path == "m.gguf");

  const ResolvedTechnique k = resolve_technique("kv-cache", base, reg);
  CHECK(k.config.engine.cache == "contiguous");

  const ResolvedTechnique c = resolve_technique("int4+paged-prefix", base, reg);
  CHECK(c.config.engine.quantizer == "int4");
  CHECK(c.config.engine.cache == "paged-prefix");
  CHECK(c.category == "Quantization+Caching");
  CHECK(c.unavailable.empty());
  // Options in braces reach the strategy; the canonical recipe spells them out.
  const ResolvedTechnique o = resolve_technique("int4{group=64}+paged{block=32}", base, reg);
  CHECK(o.config.engine.quantizer_options.get_int("t", "group", 0) == 64);
  CHECK(o.recipe ==
        "paged{block=32,kv=float,max_blocks=0,max_bytes=0,prefix=0}+int4{embed=int8,group=64,head=int8,scheme=affine}"
        "+no-prune+greedy{repetition_penalty=1}+single-device");

  const ResolvedTechnique p = resolve_technique("prune-30", base, reg);
  CHECK(p.config.engine.pruner == "magnitude");
  CHECK(p.config.engine.pruner_options.get_double("t", "fraction", 0) == Approx(0.3));
  CHECK(p.config.engine.cache == "contiguous");

  // Two ranks of the tensor-parallel plan (unavailable without c10d/Gloo).
  const ResolvedTechnique tp = resolve_technique("tp-2", base, reg);
  CHECK(tp.config.engine.parallel == "tensor-parallel");
  CHECK(tp.config.world_size == 2);
  CHECK(tp.unavailable.empty() == distributed_available());
  // What cannot run is listed with the reason, never run as something else.
  const ResolvedTechnique sd = resolve_technique("spec-draft", base, reg);
  CHECK(sd.unavailable.find("--draft-model") != std::string::npos);

  CHECK_THROWS_WITH(resolve_technique("int8+int4", base, reg),
                    Catch::Matchers::Contains("recipe 'int8+int4': 'int8' and 'int4' both choose the quantizer"));
  CHECK_THROWS_WITH(resolve_technique("kv-cache+paged", base, reg),
                    Catch::Matchers::Contains("both choose the cache"));
  CHECK_THROWS_WITH(resolve_technique("int3", base, reg),
                    Catch::Matchers::Contains("unknown technique 'int3'"));
  CHECK_THROWS_WITH(resolve_technique("int4+", base, reg), Catch::Matchers::Contains("ends with '+'"));
  CHECK(split_technique_list(" a, b+c{x=1,y=2} ,,d ") == std::vector<std::string>{"a", "b+c{x=1,y=2}", "d"});

  // Every catalogue name resolves on its own.
  for (const std::string& n : technique_names()) CHECK_NOTHROW(resolve_technique(n, base, reg));
}

TEST_CASE("bench: percentiles are medians and nearest ranks", "[unit][bench]") {
  CHECK(percentile({}, 50) == 0.0);
  CHECK(percentile({3, 1, 2}, 50) == 2.0);
  CHECK(percentile({4, 1, 3, 2}, 50) == 2.5);
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  CHECK(percentile(v, 95) == 95.0);
  CHECK(percentile({7}, 95) == 7.0);
  CHECK(percentile({1, 2}, 95) == 2.0);
}

TEST_CASE("cli: rouge scores JSONL pairs exactly as rouge-score", "[unit][cli][rouge]") {
  TempDir dir("udaci_rouge_cli");
  // The first 200 single-reference committed rouge-score cases, with and without the stemmer.
  std::ifstream cases(udaci_test::fixture("rouge/cases.jsonl"));
  REQUIRE(cases.good());
  std::vector<json> expected;
  std::string input, line;
  while (std::getline(cases, line) && expected.size() < 200) {
    const json c = json::parse(line);
    if (!c.contains("ref")) continue;  // multi-reference cases: test_rouge.cpp
    expected.push_back(c);
    input += json{{"reference", c["ref"]}, {"generated", c["gen"]}, {"id", expected.size()}}.dump() + "\n";
  }
  std::ofstream(dir.path / "pairs.jsonl") << input;
  for (const bool stem : {false, true}) {
    Run r = run_cli("rouge --input " + q(dir.path / "pairs.jsonl") + (stem ? " --stem" : ""), dir.path);
    REQUIRE(r.status == 0);
    const std::vector<json> out = json_lines(r.out);
    REQUIRE(out.size() == expected.size() + 1);
    double mean1 = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      const json& want = expected[i][stem ? "stem" : "plain"];  // P,R,F for 1, 2, L, Lsum
      CHECK(out[i]["id"] == i + 1);
      CHECK(std::abs(out[i]["rouge1"].get<double>() - want[2].get<double>()) < 1e-9);
      CHECK(std::abs(out[i]["rouge2"].get<double>() - want[5].get<double>()) < 1e-9);
      CHECK(std::abs(out[i]["rougeL"].get<double>() - want[8].get<double>()) < 1e-9);
      CHECK(std::abs(out[i]["rougeLsum"].get<double>() - want[11].get<double>()) < 1e-9);
      mean1 += want[2].get<double>();
    }
    const json& last = out.back();
    CHECK(last["count"] == expected.size());
    CHECK(std::abs(last["mean"]["rouge1"].get<double>() - mean1 / expected.size()) < 1e-9);
  }
}

TEST_CASE("cli: rouge reports bad lines, keeps the good ones, and fails cleanly on a missing file",
          "[unit][cli][rouge]") {
  TempDir dir("udaci_rouge_bad");
  Run r = run_cli("rouge", dir.path,
                  "{\"reference\": \"police kill man\", \"generated\": \"police killed a man\"}\n"
                  "not json\n"
                  "{\"reference\": \"x\"}\n"
                  "\n"
                  "{\"reference\": \"a b\", \"generated\": \"a b\"}\n");
  CHECK(r.status == 1);
  const std::vector<json> out = json_lines(r.out);
  REQUIRE(out.size() == 5);  // 4 non-blank lines + the mean
  CHECK(out[0]["rouge1"].get<double>() > 0.5);
  CHECK(out[1].contains("error"));
  CHECK(out[2].contains("error"));
  CHECK(out[3]["rouge1"] == 1.0);
  CHECK(out[4]["count"] == 2);
  CHECK(out[4]["errors"] == 2);
  CHECK(r.err.find("<stdin>:2:") != std::string::npos);

  Run m = run_cli("rouge --input " + q(dir.path / "absent.jsonl"), dir.path);
  CHECK(m.status == 1);
  CHECK(m.err.find("cannot open --input") != std::string::npos);
}

TEST_CASE("cli: bench refuses wrong options with a message", "[unit][cli][bench]") {
  TempDir dir("udaci_bench_bad");
  Run u = run_cli("bench --techniques kv-cache,warp-drive --samples 2", dir.path);
  CHECK(u.status == 1);
  CHECK(u.err.find("unknown technique 'warp-drive'") != std::string::npos);
  Run c = run_cli("bench --techniques int8+int4", dir.path);
  CHECK(c.status == 1);
  CHECK(c.err.find("both choose the quantizer") != std::string::npos);
  Run z = run_cli("bench --samples 0", dir.path);
  CHECK(z.status != 0);
  Run l = run_cli("bench --list", dir.path);
  CHECK(l.status == 0);
  for (const char* name : {"baseline", "kv-cache", "int4", "prune-30", "spec-lookup", "tp-2", "pp-2"})
    CHECK(l.out.find(name) != std::string::npos);
}

namespace {

// The first `n` records of the shared news sample with a broken line after
// the fourth: the reader skips it and the bench runs on. Empty when
// ../shared is not beside the repository (a user's clone).
fs::path news_subset(const fs::path& dir, int n) {
  std::ifstream in(udaci_test::fixture("../../../shared/assets/news/news_category_sample.jsonl"));
  if (!in.good()) return {};
  const fs::path path = dir / "news.jsonl";
  std::ofstream out(path);
  std::string line;
  for (int i = 0; i < n && std::getline(in, line); ++i) {
    out << line << "\n";
    if (i == 3) out << "{broken\n";
  }
  return path;
}

void check_result_sanity(const json& res, size_t samples, int max_new_tokens) {
  INFO(res["technique"]);
  CHECK(res["samples"] == samples);
  // The canonical recipe it ran, ready to copy into a config file.
  EngineConfig rc;
  REQUIRE_NOTHROW(rc.set_recipe(res["recipe"].get<std::string>()));
  CHECK(rc.recipe() == res["recipe"].get<std::string>());
  REQUIRE(res["items"].size() == samples);
  for (const char* key : {"ttft_ms_p50", "latency_ms_p50", "latency_ms_p95", "decode_tokens_per_s",
                          "prefill_tokens_per_s", "headlines_per_s", "weight_bytes", "peak_rss_bytes"})
    CHECK(res[key].get<double>() > 0);
  CHECK(res["peak_cuda_bytes"].is_null());
  CHECK(res["latency_ms_p95"].get<double>() >= res["latency_ms_p50"].get<double>());
  CHECK(res["ttft_ms_p50"].get<double>() <= res["latency_ms_p95"].get<double>());
  // Peak RSS holds at least the weights.
  CHECK(res["peak_rss_bytes"].get<double>() > res["weight_bytes"].get<double>());
  for (const char* key : {"rouge1", "rouge2", "rougeL", "rougeLsum"}) {
    const double m = res[key].get<double>();
    CHECK(m >= 0.0);
    CHECK(m <= 1.0);
    CHECK(res["rouge_ci95"][key][0].get<double>() <= m + 1e-12);
    CHECK(res["rouge_ci95"][key][1].get<double>() >= m - 1e-12);
  }
  // Request latency counts the wait for a place; the degenerate share counts
  // the items marked so (eval/headline_quality.hpp).
  CHECK(res["request_latency_ms_p95"].get<double>() >= res["latency_ms_p95"].get<double>() - 1e-6);
  CHECK(res["request_latency_ms_p50"].get<double>() <= res["request_latency_ms_p95"].get<double>());
  int64_t marked = 0;
  for (const json& it : res["items"]) marked += !it["degenerate"].is_null();
  const json& dg = res["degenerate"];
  CHECK(dg["empty"].get<int64_t>() + dg["repetitive"].get<int64_t>() + dg["overlong"].get<int64_t>() == marked);
  CHECK(res["degenerate_share"].get<double>() == Approx(static_cast<double>(marked) / static_cast<double>(samples)));
  for (const json& it : res["items"]) {
    CHECK(!it["headline"].get<std::string>().empty());
    CHECK(it["new_tokens"].get<int>() >= 1);
    CHECK(it["new_tokens"].get<int>() <= max_new_tokens);
  }
}

}  // namespace

TEST_CASE("cli: bench --techniques baseline,kv-cache --samples 20 on the default model",
          "[unit][cli][bench][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  TempDir dir("udaci_bench_run");
  const fs::path news = news_subset(dir.path, 60);
  if (news.empty()) {
    REQUIRE(std::string(std::getenv("UDACI_REQUIRE_MODEL") ? std::getenv("UDACI_REQUIRE_MODEL") : "") != "1");
    WARN("../shared/assets/news is not beside the repository: bench test skipped");
    return;
  }
  Run r = run_cli("--threads 2 bench --quiet --techniques baseline,kv-cache,spec-lookup,spec-draft --samples 20"
                  " --warmup 1 --max-new-tokens 16 --model '" + model + "' --input " + q(news) +
                      " --json " + q(dir.path / "out.json") + " --markdown " + q(dir.path / "out.md"),
                  dir.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json doc = json::parse(udaci_test::read_file((dir.path / "out.json").string()));
  CHECK(doc["schema"] == "udaci-bench/1");
  CHECK(doc["machine"]["threads"] == 2);
  // The kernel family that ran (UDACI_KERNELS, else the CPU's best).
  CHECK(doc["machine"]["kernels"] == kernel_isa_name(active_kernel_isa()));
  CHECK(doc["machine"]["prompt_rows"] == (bf16_prompt_rows() ? "bf16" : "int8"));
  CHECK(doc["machine"]["huge_pages"] == weight_huge_pages());
  CHECK(doc["machine"]["transparent_hugepage"] == transparent_huge_page_mode());
  CHECK(doc["settings"]["samples"] == 20);
  CHECK(doc["failed"].empty());
  REQUIRE(doc["unavailable"].size() == 1);
  CHECK(doc["unavailable"][0]["technique"] == "spec-draft");
  REQUIRE(doc["results"].size() == 3);
  for (const json& res : doc["results"]) check_result_sanity(res, 20, 16);
  const json& base = doc["results"][0];
  const json& kv = doc["results"][1];
  CHECK(base["technique"] == "baseline");
  CHECK(base["config"]["cache"] == "none");
  CHECK(base["kv_cache_bytes"] == 0);
  CHECK(kv["kv_cache_bytes"].get<int64_t>() > 0);
  // Both measured the same 20 distinct articles.
  std::set<int64_t> ids;
  for (size_t i = 0; i < 20; ++i) {
    CHECK(kv["items"][i]["id"] == base["items"][i]["id"]);
    CHECK(kv["items"][i]["reference"] == base["items"][i]["reference"]);
    ids.insert(base["items"][i]["id"].get<int64_t>());
  }
  CHECK(ids.size() == 20);
  // The cache changes speed, not the greedy result.
  CHECK(base["same_as_baseline"] == 1.0);
  CHECK(kv["same_as_baseline"] == 1.0);
  for (size_t i = 0; i < 20; ++i) CHECK(kv["items"][i]["headline"] == base["items"][i]["headline"]);
  // Speculative decoding (prompt lookup) keeps greedy's headlines and says
  // how much of its drafting was accepted.
  const json& spec = doc["results"][2];
  CHECK(spec["technique"] == "spec-lookup");
  CHECK(spec["config"]["decoder"] == "speculative");
  CHECK(spec["same_as_baseline"].get<double>() >= 0.95);
  CHECK(spec["decoder_stats"]["rounds"].get<int64_t>() > 0);
  CHECK(spec["decoder_stats"]["accepted"].get<int64_t>() <= spec["decoder_stats"]["drafted"].get<int64_t>());
  CHECK(spec["decoder_stats"]["acceptance_rate"].get<double>() > 0.0);
  CHECK(kv["decoder_stats"]["rounds"] == 0);
  const std::string md = udaci_test::read_file((dir.path / "out.md").string());
  CHECK(md.find("| kv-cache | Caching |") != std::string::npos);
  CHECK(md.find("| spec-draft | unavailable:") != std::string::npos);
  CHECK(r.out == md);
}

TEST_CASE("cli: bench composes techniques and reports what they change", "[unit][cli][bench][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  TempDir dir("udaci_bench_compose");
  const fs::path news = news_subset(dir.path, 20);
  if (news.empty()) {
    REQUIRE(std::string(std::getenv("UDACI_REQUIRE_MODEL") ? std::getenv("UDACI_REQUIRE_MODEL") : "") != "1");
    WARN("../shared/assets/news is not beside the repository: bench test skipped");
    return;
  }
  Run r = run_cli("--threads 2 bench --quiet --techniques kv-cache,int8+paged-prefix,prune-30 --samples 4"
                  " --warmup 1 --max-new-tokens 8 --seed 3 --batch 2 --model '" + model + "' --input " + q(news) +
                      " --json " + q(dir.path / "out.json"),
                  dir.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json doc = json::parse(udaci_test::read_file((dir.path / "out.json").string()));
  REQUIRE(doc["results"].size() == 3);
  for (const json& res : doc["results"]) {
    check_result_sanity(res, 4, 8);
    CHECK(res["same_as_baseline"].is_null());  // no baseline in this run
  }
  CHECK(doc["settings"]["batch"] == 2);
  const json& kv = doc["results"][0];
  CHECK(kv["batch"] == 2);
  const json& q8 = doc["results"][1];
  const json& pr = doc["results"][2];
  CHECK(q8["category"] == "Quantization+Caching");
  CHECK(q8["config"]["quantizer"] == "int8");
  CHECK(q8["config"]["cache"] == "paged-prefix");
  // int8 stores about a quarter of the fp32 bytes; the prefix cache reuses the instruction.
  CHECK(q8["weight_bytes"].get<double>() < 0.35 * kv["weight_bytes"].get<double>());
  CHECK(q8["cache_stats"]["prefix_hit_tokens"].get<int64_t>() > 0);
  // 30% unstructured sparsity in dense storage: same bytes, not 30% fewer.
  CHECK(pr["prune_sparsity"].get<double>() > 0.25);
  CHECK(pr["weight_bytes"] == kv["weight_bytes"]);
}

// `udaci bench --config F` alone measures the configuration itself — its
// recipe, its max_sequences as the batch, its threads — which is how a
// configuration `udaci tune` wrote is re-measured (issue #26); --concurrency
// keeps N requests in flight.
TEST_CASE("cli: bench --config measures the config's own recipe, batch and threads", "[unit][cli][bench][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  TempDir dir("udaci_bench_config");
  const fs::path news = news_subset(dir.path, 20);
  if (news.empty()) {
    REQUIRE(std::string(std::getenv("UDACI_REQUIRE_MODEL") ? std::getenv("UDACI_REQUIRE_MODEL") : "") != "1");
    WARN("../shared/assets/news is not beside the repository: bench test skipped");
    return;
  }
  const fs::path cfg = dir.path / "tuned.json";
  std::ofstream(cfg) << R"({"schema": "udaci-config/1", "model": ")" << model
                     << R"(", "recipe": "paged-prefix+int8+greedy{repetition_penalty=1.15}",
                          "scheduler": {"max_sequences": 3}, "threads": 1})";
  Run r = run_cli("bench --quiet --config " + q(cfg) + " --samples 6 --warmup 1 --max-new-tokens 8 --concurrency 2"
                  " --input " + q(news) + " --json " + q(dir.path / "out.json"),
                  dir.path);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json doc = json::parse(udaci_test::read_file((dir.path / "out.json").string()));
  REQUIRE(doc["results"].size() == 1);
  const json& res = doc["results"][0];
  check_result_sanity(res, 6, 8);
  CHECK(res["recipe"].get<std::string>().find("paged-prefix{") == 0);
  CHECK(res["recipe"].get<std::string>().find("+int8{") != std::string::npos);
  CHECK(res["recipe"].get<std::string>().find("+greedy{repetition_penalty=1.15}+") != std::string::npos);
  CHECK(res["batch"] == 3);
  CHECK(res["threads"] == 1);
  CHECK(res["concurrency"] == 2);
  CHECK(doc["settings"]["concurrency"] == 2);
  // Two in flight never fill the three places.
  CHECK(res["scheduler"]["peak_running"].get<int64_t>() <= 2);
  // --techniques with --config measures the techniques over the config, as before.
  Run t = run_cli("bench --quiet --config " + q(cfg) + " --techniques kv-cache --samples 2 --warmup 0"
                  " --max-new-tokens 4 --input " + q(news) + " --json " + q(dir.path / "t.json"),
                  dir.path);
  INFO(t.err);
  REQUIRE(t.status == 0);
  const json tdoc = json::parse(udaci_test::read_file((dir.path / "t.json").string()));
  CHECK(tdoc["results"][0]["technique"] == "kv-cache");
  CHECK(tdoc["results"][0]["batch"] == 1);
}

TEST_CASE("cli: headline takes the quantizer, pruner and cache options", "[unit][cli][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  TempDir dir("udaci_head_opts");
  const std::string m = " --model '" + model + "' --max-new-tokens 12 ";
  const std::string text = " 'The city council voted on Monday to expand the bike lane network.'";
  Run a = run_cli("--threads 2 headline" + m + "--quantizer int4 --quantizer-opt group=64 --cache paged-prefix"
                  " --cache-opt block=8" + text, dir.path);
  INFO(a.err);
  CHECK(a.status == 0);
  CHECK(!a.out.empty());
  Run b = run_cli("--threads 2 headline" + m + "--quantizer int4 --quantizer-opt group=48" + text, dir.path);
  CHECK(b.status == 1);
  CHECK(b.err.find("group") != std::string::npos);
  Run c = run_cli("--threads 2 headline" + m + "--pruner magnitude --pruner-opt fraction" + text, dir.path);
  CHECK(c.status == 1);
  CHECK(c.err.find("--pruner-opt: expected key=value, got 'fraction'") != std::string::npos);
  Run d = run_cli("--threads 2 headline" + m + "--cache radix" + text, dir.path);
  CHECK(d.status == 1);
  CHECK(d.err.find("unknown cache strategy 'radix'") != std::string::npos);
}

TEST_CASE("cli: bench-forward runs a quantizer's kernels on random weights", "[unit][cli][bench]") {
  TempDir dir("udaci_bench_forward");
  Run f = run_cli("--threads 2 bench-forward --shape smollm2-135m --prompt 4 --gen 2 --repeats 1", dir.path);
  Run q = run_cli("--threads 2 bench-forward --shape smollm2-135m --prompt 4 --gen 2 --repeats 1"
                  " --quantizer int4 --quantizer-opt group=64", dir.path);
  INFO(f.err << q.err);
  REQUIRE(f.status == 0);
  REQUIRE(q.status == 0);
  const json jf = json::parse(f.out), jq = json::parse(q.out);
  CHECK(jf["quantizer"] == "none");
  CHECK(jq["quantizer"] == "int4");
  CHECK(jq["weight_bytes"].get<double>() < 0.2 * jf["weight_bytes"].get<double>());
  CHECK(jq["decode_tok_s_median"].get<double>() > 0);
  Run bad = run_cli("bench-forward --shape smollm2-135m --quantizer int4 --quantizer-opt group=7", dir.path);
  CHECK(bad.status == 1);
  CHECK(bad.err.find("group") != std::string::npos);
}
