// udaci convert: saved quantised / pruned artefacts reload to the same model
// (logits and greedy ids bit-identical), report their bytes truthfully and
// reject damaged files; --dequantize f32 of a GGUF gives a plain HF folder.
#include "udaci_catch.hpp"

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/cache_strategy.hpp"
#include "core/error.hpp"
#include "engine/registry.hpp"
#include "engine/convert.hpp"
#include "model/model_loader.hpp"
#include "model/llama_model.hpp"
#include "prune/pruner.hpp"
#include "quant/quantizer.hpp"
#include "test_util.hpp"

using namespace udaci;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("udaci_convert_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}

ModelOptions with_strategies(const Quantizer& q, const Pruner& p) {
  ModelOptions o;
  o.linear_factory = [&q, &p](const LinearSpec& s, const WeightStore& w, const ModelOptions& opt) {
    std::unique_ptr<LinearKernel> k = q.make_kernel(s, w, opt);
    return k ? std::move(k) : p.make_kernel(s, w, opt);
  };
  return o;
}

at::Tensor prompt_logits(const LlamaModel& m, const std::vector<int64_t>& prompt) {
  auto cache = make_contiguous_cache(m.cache_shape());
  cache->add_sequence(0, 64);
  ForwardBatch b;
  b.add(0, prompt, /*all_logits=*/true);
  return m.forward(b, *cache);
}

// Greedy continuation of `prompt` for `steps` tokens, recomputing the prompt.
std::vector<int64_t> greedy(const LlamaModel& m, std::vector<int64_t> ids, int steps) {
  for (int i = 0; i < steps; ++i) ids.push_back(prompt_logits(m, ids)[-1].argmax().item<int64_t>());
  return ids;
}

std::string error_of(const std::string& path, Status* status) {
  try {
    open_model(path);
  } catch (const Error& e) {
    *status = e.status();
    return e.what();
  }
  *status = Status::kOk;
  return "";
}

}  // namespace

TEST_CASE("convert: quantised / pruned artefacts reload to identical logits", "[convert]") {
  const auto& reg = builtin_strategies();
  struct Case {
    std::string quantizer;
    std::map<std::string, std::string> qopts;
    std::string pruner;
    std::map<std::string, std::string> popts;
  };
  const std::vector<Case> cases = {
      {"int8", {}, "none", {}},
      {"int4", {{"scheme", "affine"}, {"group", "32"}}, "none", {}},
      {"int4", {{"scheme", "nf4"}}, "none", {}},
      {"none", {}, "magnitude", {{"fraction", "0.3"}}},
      {"none", {}, "2:4", {}},
      {"int8", {}, "magnitude", {{"fraction", "0.5"}}},
  };
  const std::vector<int64_t> prompt = {1, 5, 9, 2, 7, 3};
  for (const std::string model : {"tiny-gqa-tied", "tiny-llama3-rope"}) {
    for (const Case& c : cases) {
      INFO(model << ": quantizer " << c.quantizer << ", pruner " << c.pruner);
      const std::string in = udaci_test::fixture("golden/" + model);
      const fs::path out = scratch(model + "_" + c.quantizer + "_" + std::to_string(c.qopts.size()) +
                                   "_" + (c.pruner == "2:4" ? "2of4" : c.pruner) + ".safetensors");
      ConvertOptions o;
      o.quantizer = c.quantizer;
      o.quantizer_options = c.qopts;
      o.pruner = c.pruner;
      o.pruner_options = c.popts;
      const ConvertReport r = convert_model(in, out.string(), o);

      // The same pipeline in memory.
      ModelFiles f = open_model(in);
      auto q = reg.quantizers.create(c.quantizer, StrategyOptions(c.qopts));
      auto p = reg.pruners.create(c.pruner, StrategyOptions(c.popts));
      const PruneReport pr = p->prune(f.weights, f.config);
      q->quantize(f.weights);
      LlamaModel mem(f.config, f.weights, with_strategies(*q, *p));

      std::map<std::string, std::string> meta;
      ModelFiles g = read_artefact(out.string(), &meta);
      CHECK(meta.at("udaci.quantizer") == c.quantizer);
      CHECK(meta.at("udaci.pruner") == c.pruner);
      CHECK(g.format == "udaci-artefact");
      CHECK(g.weights.size() == f.weights.size());
      // The reloaded store runs as it is: quantize() finds nothing to do.
      const QuantizeReport again = q->quantize(g.weights);
      CHECK(again.tensors_changed == 0);
      LlamaModel back(g.config, g.weights, with_strategies(*q, *p));
      const at::Tensor a = prompt_logits(mem, prompt), b = prompt_logits(back, prompt);
      CHECK(at::equal(a, b));
      CHECK(greedy(mem, prompt, 6) == greedy(back, prompt, 6));
      // Quantizer / pruner "none" (the engine's defaults) bind the artefact's
      // stored kernels.
      auto nq = reg.quantizers.create("none", StrategyOptions{});
      auto np = reg.pruners.create("none", StrategyOptions{});
      LlamaModel bound(g.config, g.weights, with_strategies(*nq, *np));
      CHECK(at::equal(a, prompt_logits(bound, prompt)));

      // open_model() recognises the artefact too.
      CHECK(open_model(out.string()).format == "udaci-artefact");
      // Bytes: the report matches the store, and the file is the store plus
      // a header (config, metadata, tokenizer text).
      CHECK(r.bytes_after == stored_bytes(f.weights));
      CHECK(r.file_bytes == static_cast<int64_t>(fs::file_size(out)));
      CHECK(r.file_bytes >= r.bytes_after);
      CHECK(r.file_bytes - r.bytes_after < 4 * 1024 * 1024);
      CHECK(r.sparsity == Approx(pr.sparsity()));
      if (c.quantizer != "none") CHECK(r.bytes_after < r.bytes_before / 2);
    }
  }
}

TEST_CASE("convert: a truncated or corrupted artefact is kBadModelFile", "[convert]") {
  const fs::path out = scratch("damaged_src.safetensors");
  ConvertOptions o;
  o.quantizer = "int8";
  convert_model(udaci_test::fixture("golden/tiny-gqa-tied"), out.string(), o);
  std::string bytes;
  {
    std::stringstream s;
    s << std::ifstream(out, std::ios::binary).rdbuf();
    bytes = s.str();
  }
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  Status st = Status::kOk;

  SECTION("truncated data") {
    const fs::path t = scratch("truncated.safetensors");
    std::ofstream(t, std::ios::binary) << bytes.substr(0, bytes.size() - 100);
    const std::string msg = error_of(t.string(), &st);
    CHECK(st == Status::kBadModelFile);
    CHECK_THAT(msg, Catch::Matchers::Contains("truncated"));
  }
  SECTION("truncated header") {
    const fs::path t = scratch("truncated_header.safetensors");
    std::ofstream(t, std::ios::binary) << bytes.substr(0, 8 + n / 2);
    const std::string msg = error_of(t.string(), &st);
    CHECK(st == Status::kBadModelFile);
    CHECK_THAT(msg, Catch::Matchers::Contains("truncated"));
  }
  SECTION("unknown format version") {
    std::string b = bytes;
    const std::string key = "\"udaci.format\":\"1\"";
    const size_t at = b.find(key);
    REQUIRE(at != std::string::npos);
    b[at + key.size() - 2] = '9';
    const fs::path t = scratch("version.safetensors");
    std::ofstream(t, std::ios::binary) << b;
    const std::string msg = error_of(t.string(), &st);
    CHECK(st == Status::kBadModelFile);
    CHECK_THAT(msg, Catch::Matchers::Contains("format version '9'"));
  }
  SECTION("metadata does not match a tensor") {
    std::string b = bytes;
    // Shrink one tensor's recorded end offset: its shape no longer fits.
    const std::string key = "\"model.norm.weight\":{\"data_offsets\":[";
    const size_t at = b.find(key);
    REQUIRE(at != std::string::npos);
    const size_t comma = b.find(',', at + key.size());
    const size_t digit = comma + 1;
    b[digit] = b[digit] == '1' ? '2' : '1';
    const fs::path t = scratch("mismatch.safetensors");
    std::ofstream(t, std::ios::binary) << b;
    const std::string msg = error_of(t.string(), &st);
    CHECK(st == Status::kBadModelFile);
    CHECK_THAT(msg, Catch::Matchers::Contains("model.norm.weight"));
  }
  SECTION("corrupted metadata JSON") {
    std::string b = bytes;
    const size_t at = b.find("\"udaci.config\":\"");
    REQUIRE(at != std::string::npos);
    b[at + 17] = '[';  // the config text no longer parses
    const fs::path t = scratch("badmeta.safetensors");
    std::ofstream(t, std::ios::binary) << b;
    const std::string msg = error_of(t.string(), &st);
    CHECK(st == Status::kBadModelFile);
    CHECK_THAT(msg, Catch::Matchers::Contains("udaci.config"));
  }
}

TEST_CASE("convert: --dequantize f32 of the default GGUF reloads to the same logits",
          "[convert][smollm2]") {
  const std::string gguf = udaci_test::default_model_gguf();
  if (gguf.empty()) {
    WARN("default GGUF model not installed; skipping");
    return;
  }
  const fs::path out = scratch("smollm2_f32");
  ConvertOptions o;
  o.dequantize = "f32";
  const ConvertReport r = convert_model(gguf, out.string(), o);
  CHECK(fs::exists(out / "config.json"));
  CHECK(r.file_bytes == static_cast<int64_t>(fs::file_size(out / "model.safetensors")));
  ModelFiles a = open_model(gguf);
  ModelFiles b = open_model(out.string());
  CHECK(b.format == "safetensors");
  LlamaModel ma(a.config, a.weights, ModelOptions{});
  LlamaModel mb(b.config, b.weights, ModelOptions{});
  const std::vector<int64_t> prompt = {1, 504, 3458, 282, 260, 2329};
  // Both dequantise the same blocks to f32 (Q/K rows un-permuted the same
  // way): the weights, and so the logits, are identical.
  const at::Tensor la = prompt_logits(ma, prompt), lb = prompt_logits(mb, prompt);
  CHECK((la - lb).abs().max().item<double>() <= 1e-5);
}

TEST_CASE("convert: udaci convert on the command line", "[convert][cli]") {
  const fs::path out = scratch("cli_int4.safetensors");
  const fs::path log = scratch("cli_out.txt");
  const std::string cmd = std::string(UDACI_CLI_PATH) + " convert --model " +
                          udaci_test::fixture("golden/tiny-gqa-tied") + " --output " +
                          out.string() + " --quantizer int4 --quantizer-opt group=32" +
                          " --pruner magnitude --pruner-opt fraction=0.2 > " + log.string();
  const int raw = std::system(cmd.c_str());
  REQUIRE(WIFEXITED(raw));
  CHECK(WEXITSTATUS(raw) == 0);
  std::stringstream s;
  s << std::ifstream(log).rdbuf();
  const std::string text = s.str();
  CHECK_THAT(text, Catch::Matchers::Contains("\"bytes_after\""));
  CHECK_THAT(text, Catch::Matchers::Contains("\"sparsity\""));
  std::map<std::string, std::string> meta;
  ModelFiles g = read_artefact(out.string(), &meta);
  CHECK(meta.at("udaci.quantizer") == "int4");
  CHECK(meta.at("udaci.pruner_options") == "{\"fraction\":\"0.2\"}");
}
