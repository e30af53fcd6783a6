// One rank of a parallel job (--plan tensor-parallel | pipeline-parallel) on
// a golden tiny model, for the `dist` tests (tests/dist/test_dist.cpp start
// two of these with torchrun's variables). Rank 0 writes a JSON result to
// --out; the others serve it.
//
//   udaci_dist_worker --mode greedy --fixture DIR --out FILE [--cache NAME]
//     rank 0 generates greedily (one sequence, a ragged batch, speculative
//     decoding) and compares with an unsplit model in the same process.
//   udaci_dist_worker --mode kill --fixture DIR --out FILE --timeout-s T
//     rank 0 generates once, writes FILE.ready, waits for FILE.go (the test
//     kills rank 1 in between), generates again and records the error and
//     how long it took to come.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "core/error.hpp"
#include "decode/generate.hpp"
#include "decode/speculative.hpp"
#include "engine/registry.hpp"
#include "core/strategy_options.hpp"
#include "model/model_loader.hpp"
#include "model/llama_model.hpp"

using namespace udaci;
using nlohmann::json;

namespace {

bool exists(const std::string& p) { return std::ifstream(p).good(); }

void write(const std::string& path, const json& j) {
  std::ofstream f(path + ".tmp");
  f << j.dump(1) << "\n";
  f.close();
  std::rename((path + ".tmp").c_str(), path.c_str());
}

std::unique_ptr<CacheStrategy> cache_named(const std::string& name, const CacheShape& shape) {
  return builtin_strategies().caches.create(name, StrategyOptions{}, shape);
}

std::vector<std::vector<int64_t>> prompts() {
  return {{1, 17, 42, 99, 5, 8, 61, 17, 42, 99, 5},
          {3, 250, 7, 7, 7, 19},
          {2, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116}};
}

int run(const std::map<std::string, std::string>& a) {
  const std::string mode = a.at("mode"), out = a.at("out");
  const std::string plan_name = a.count("plan") ? a.at("plan") : "tensor-parallel";
  std::map<std::string, std::string> plan_opts;
  if (a.count("timeout-s")) plan_opts["timeout_s"] = a.at("timeout-s");
  std::unique_ptr<ParallelPlan> plan =
      builtin_strategies().parallel_plans.create(plan_name, StrategyOptions(plan_opts));
  ModelFiles files = open_model(a.at("fixture"));
  ModelConfig config = files.config;
  plan->shard(config, files.weights);
  ModelOptions mo{at::kFloat, at::kCPU};
  mo.linear_factory = plan->wrap(nullptr);
  mo.listener = plan->listener();
  mo.stage = plan->stage();
  LlamaModel model(config, files.weights, mo);

  const std::string cache_name = a.count("cache") ? a.at("cache") : "contiguous";
  if (!plan->leader()) {
    auto cache = cache_named(cache_name, model.cache_shape());
    plan->serve(model, *cache);
    return 0;
  }

  GenerationOptions opt;
  opt.max_new_tokens = 20;
  if (mode == "kill") {
    auto cache = plan->wrap_cache(cache_named(cache_name, model.cache_shape()));
    decode_sampled(model, *cache, {prompts()[0]}, opt);
    write(out + ".ready", json::object());
    while (!exists(out + ".go")) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto t0 = std::chrono::steady_clock::now();
    json r;
    try {
      decode_sampled(model, *cache, {prompts()[1]}, opt);
      r["status"] = "ok";
    } catch (const Error& e) {
      r["status"] = status_name(e.status());
      r["message"] = e.what();
    }
    r["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write(out, r);
    return 0;
  }

  ModelFiles ref_files = open_model(a.at("fixture"));
  LlamaModel ref(ref_files.config, ref_files.weights, ModelOptions{at::kFloat, at::kCPU});
  json cases = json::array();
  bool all_equal = true;
  {
    const std::string& c = cache_name;
    auto cache = plan->wrap_cache(cache_named(c, model.cache_shape()));
    auto ref_cache = cache_named(c, ref.cache_shape());
    // One sequence at a time, then all together (ragged batches).
    for (const auto& p : prompts()) {
      const bool eq = decode_sampled(model, *cache, {p}, opt)[0].tokens == decode_sampled(ref, *ref_cache, {p}, opt)[0].tokens;
      cases.push_back({{"cache", c}, {"run", "single"}, {"equal", eq}});
      all_equal = all_equal && eq;
    }
    const auto got = decode_sampled(model, *cache, prompts(), opt);
    const auto want = decode_sampled(ref, *ref_cache, prompts(), opt);
    bool eq = true;
    for (size_t i = 0; i < got.size(); ++i) eq = eq && got[i].tokens == want[i].tokens;
    cases.push_back({{"cache", c}, {"run", "batch"}, {"equal", eq}});
    all_equal = all_equal && eq;
    // Speculative decoding truncates the cache after rejected drafts.
    SpeculativeDecoder spec(SpeculativeOptions::from(StrategyOptions(std::map<std::string, std::string>{{"k", "3"}})));
    const auto sgot = spec.decode(model, *cache, {prompts()[0]}, opt, {});
    const bool seq = sgot[0].tokens == decode_sampled(ref, *ref_cache, {prompts()[0]}, opt)[0].tokens;
    cases.push_back({{"cache", c}, {"run", "speculative"}, {"equal", seq}, {"rounds", spec.stats().rounds}});
    all_equal = all_equal && seq;
    const bool released = cache->bytes_reserved() == ref_cache->bytes_reserved();
    cases.push_back({{"cache", c}, {"run", "released"}, {"equal", released}});
    all_equal = all_equal && released;
  }
  plan->shutdown();
  write(out, {{"equal", all_equal},
              {"cases", cases},
              {"weight_bytes", model.weight_bytes()},
              {"full_weight_bytes", ref.weight_bytes()}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) == 0) a[k.substr(2)] = argv[i + 1];
  }
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "udaci_dist_worker: %s\n", e.what());
    return 1;
  }
}
