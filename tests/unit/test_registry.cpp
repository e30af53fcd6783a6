// The strategy registry: built-in names, option checking, and an engine built
// from named strategies (custom ones registered without touching the engine).
#include "udaci_catch.hpp"

#include "core/error.hpp"
#include "engine/registry.hpp"
#include "parallel/communicator.hpp"
#include "model/model_loader.hpp"
#include "model/llama_model.hpp"
#include "test_util.hpp"

using namespace udaci;
using udaci_test::expect_error;

TEST_CASE("registry: built-in strategies are registered by name", "[unit][registry]") {
  const StrategyRegistry& r = builtin_strategies();
  CHECK(r.caches.names() == std::vector<std::string>{"contiguous", "none", "paged", "paged-prefix"});
  CHECK(r.quantizers.names() ==
        std::vector<std::string>{"gguf-native", "int4", "int8", "nf4", "none"});
  CHECK(r.pruners.names() == std::vector<std::string>{"2:4", "magnitude", "none", "structured"});
  CHECK(r.decoders.names() == std::vector<std::string>{"beam", "greedy", "sampling", "speculative"});
  // The multi-process plans need LibTorch with c10d/Gloo (Debian's has it).
  CHECK(r.parallel_plans.names() ==
        (distributed_available()
             ? std::vector<std::string>{"pipeline-parallel", "single-device", "tensor-parallel"}
             : std::vector<std::string>{"single-device"}));
  CHECK(std::string(r.decoders.create("greedy", {})->name()) == "greedy");
  CHECK(r.parallel_plans.create("single-device", {})->world_size() == 1);
}

TEST_CASE("registry: unknown names and options are named in the error", "[unit][registry]") {
  const StrategyRegistry& r = builtin_strategies();
  expect_error([&] { r.quantizers.create("int3", {}); }, Status::kInvalidArgument,
               "unknown quantizer 'int3' (known: gguf-native, int4, int8, nf4, none)");
  expect_error([&] { r.caches.create("radix", {}, CacheShape{}); }, Status::kInvalidArgument,
               "unknown cache strategy 'radix' (known: contiguous, none, paged, paged-prefix)");
  expect_error([&] { r.decoders.create("sampling", StrategyOptions(std::map<std::string, std::string>{{"beams", "4"}})); },
               Status::kInvalidArgument, "decoder 'sampling': unknown option \"beams\"");
  StrategyOptions o(std::map<std::string, std::string>{{"group", "64"}, {"bad", "x1"}, {"ratio", "0.3"}});
  CHECK(o.get_int("q", "group", 32) == 64);
  CHECK(o.get_int("q", "missing", 32) == 32);
  CHECK(o.get_double("q", "ratio", 0) == 0.3);
  expect_error([&] { o.get_int("q", "bad", 0); }, Status::kInvalidArgument, "q: option \"bad\" must be an integer");
}

TEST_CASE("registry: greedy decoder ignores sampling options, sampling decoder follows them", "[unit][registry]") {
  ModelConfig c = preset_config("smollm2-135m");
  c.num_layers = 2;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.eos_token_ids.clear();
  WeightStore store = random_weights(c, at::kFloat, 3, 0.3);
  LlamaModel model(c, store, ModelOptions{});
  auto cache = make_contiguous_cache(model.cache_shape());
  GenerationOptions greedy_opt;
  greedy_opt.max_new_tokens = 12;
  GenerationOptions hot = greedy_opt;
  hot.sampling.temperature = 5.0f;
  hot.sampling.seed = 9;
  const StrategyRegistry& r = builtin_strategies();
  auto greedy = r.decoders.create("greedy", {});
  auto sampling = r.decoders.create("sampling", {});
  auto base = greedy->decode(model, *cache, {{1, 2, 3}}, greedy_opt, {});
  CHECK(greedy->decode(model, *cache, {{1, 2, 3}}, hot, {})[0].tokens == base[0].tokens);
  CHECK(sampling->decode(model, *cache, {{1, 2, 3}}, greedy_opt, {})[0].tokens == base[0].tokens);
  CHECK(sampling->decode(model, *cache, {{1, 2, 3}}, hot, {})[0].tokens != base[0].tokens);
}

TEST_CASE("registry: an engine reports its strategies and rejects unknown ones before loading", "[unit][registry][smollm2]") {
  EngineConfig bad;
  bad.model_path = "/nonexistent/model";
  bad.quantizer = "int3";
  expect_error([&] { HeadlineEngine e(bad); }, Status::kInvalidArgument, "unknown quantizer 'int3'");
  EngineConfig gpu;
  gpu.device = "tpu:0";
  expect_error([&] { HeadlineEngine e(gpu); }, Status::kInvalidArgument, "device must be");
  gpu.device = "cuda:0";
  if (!at::hasCUDA()) expect_error([&] { HeadlineEngine e(gpu); }, Status::kUnsupported, "no CUDA");
  const HeadlineEngine* e = udaci_test::default_engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  // The default recipe runs the GGUF's blocks as stored.
  CHECK(e->strategy_names() ==
        std::vector<std::string>{"contiguous", "gguf-native", "none", "sampling", "single-device"});
  CHECK(e->quantize_report().bytes_before == e->quantize_report().bytes_after);
  CHECK(e->quantize_report().bytes_before > 90'000'000);  // the Q4_1 file's tensors
  CHECK(e->prune_report().sparsity() == 0.0);
}
