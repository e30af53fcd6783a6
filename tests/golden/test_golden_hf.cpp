// Golden tests: our forward pass and greedy loop against Hugging Face
// transformers on tiny random-weight Llama checkpoints. Fixtures and the
// script that made them: tests/fixtures/golden/, tools/golden/make_golden.py.
#include "udaci_catch.hpp"

#include <functional>
#include <string>

#include "cache/cache_strategy.hpp"
#include "decode/generate.hpp"
#include "model/model_loader.hpp"
#include "io/safetensors_reader.hpp"
#include "model/llama_model.hpp"
#include "test_util.hpp"

using namespace udaci;

using udaci_test::Golden;
using udaci_test::load_golden;

namespace {


// max |ours - ref| / (max(ref) - min(ref)) over each row, the worst row.
double worst_relative_error(const at::Tensor& ours, const at::Tensor& ref) {
  REQUIRE(ours.sizes() == ref.sizes());
  at::Tensor range = std::get<0>(ref.max(-1)) - std::get<0>(ref.min(-1));
  at::Tensor err = std::get<0>((ours - ref).abs().max(-1)) / range;
  return err.max().item<double>();
}

// Runs fn for every fixture with both a contiguous cache and no cache.
void for_each_fixture_and_cache(
    const std::function<void(Golden&, const LlamaModel&, CacheStrategy&)>& fn) {
  for (const std::string name : {"tiny-gqa-tied", "tiny-llama3-rope", "tiny-bf16"}) {
    for (const std::string cache_name : {"contiguous", "none"}) {
      INFO(name << " with cache " << cache_name);
      Golden g = load_golden(name);
      LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
      auto cache = cache_name == "none" ? make_no_cache(model.cache_shape())
                                        : make_contiguous_cache(model.cache_shape());
      fn(g, model, *cache);
    }
  }
}

}  // namespace

TEST_CASE("golden: prompt logits match transformers at every position", "[golden]") {
  for_each_fixture_and_cache([](Golden& g, const LlamaModel& model, CacheStrategy& cache) {
    cache.add_sequence(0, 64);
    ForwardBatch batch;
    batch.add(0, g.prompt, /*all_logits=*/true);
    at::Tensor logits = model.forward(batch, cache);
    const double err = worst_relative_error(logits, g.expected.tensor("logits", at::kFloat));
    INFO("worst relative error " << err);
    CHECK(err <= 1e-4);
  });
}

TEST_CASE("golden: greedy continuation equals transformers, with and without cache", "[golden]") {
  for_each_fixture_and_cache([](Golden& g, const LlamaModel& model, CacheStrategy& cache) {
    GenerationOptions opt;
    opt.max_new_tokens = static_cast<int64_t>(g.greedy.size());
    auto results = decode_sampled(model, cache, {g.prompt}, opt);
    CHECK(results[0].tokens == g.greedy);
    CHECK(results[0].finish == FinishReason::kLength);
    CHECK(cache.bytes_reserved() == 0);
  });
}

TEST_CASE("golden: step logits of the greedy loop match transformers", "[golden]") {
  Golden g = load_golden("tiny-llama3-rope");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  auto cache = make_contiguous_cache(model.cache_shape());
  cache->add_sequence(0, 64);
  at::Tensor ref = g.expected.tensor("greedy_logits", at::kFloat);
  std::vector<at::Tensor> rows;
  ForwardBatch b;
  b.add(0, g.prompt);
  rows.push_back(model.forward(b, *cache));
  for (size_t i = 0; i + 1 < g.greedy.size(); ++i) {
    ForwardBatch step;
    step.add(0, {g.greedy[i]});
    rows.push_back(model.forward(step, *cache));
  }
  CHECK(worst_relative_error(at::cat(rows, 0), ref) <= 1e-4);
}

TEST_CASE("golden: a ragged batch of three sequences equals each run alone", "[golden]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kFloat, at::kCPU});
  std::vector<std::vector<int64_t>> prompts = {
      g.prompt, {g.prompt.begin(), g.prompt.begin() + 7}, {g.prompt.begin() + 10, g.prompt.end()}};
  GenerationOptions opt;
  opt.max_new_tokens = 12;
  auto cache = make_contiguous_cache(model.cache_shape());
  auto together = decode_sampled(model, *cache, prompts, opt);
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto alone = decode_sampled(model, *cache, {prompts[i]}, opt);
    CHECK(together[i].tokens == alone[0].tokens);
  }
  CHECK(together[0].tokens == std::vector<int64_t>(g.greedy.begin(), g.greedy.begin() + 12));
}

TEST_CASE("golden: bf16 compute stays close to the fp32 reference", "[golden]") {
  Golden g = load_golden("tiny-gqa-tied");
  LlamaModel model(g.files.config, g.files.weights, ModelOptions{at::kBFloat16, at::kCPU});
  auto cache = make_contiguous_cache(model.cache_shape());
  cache->add_sequence(0, 64);
  ForwardBatch batch;
  batch.add(0, g.prompt, true);
  at::Tensor logits = model.forward(batch, *cache);
  const double err = worst_relative_error(logits, g.expected.tensor("logits", at::kFloat));
  INFO("bf16 worst relative error " << err);
  CHECK(err < 0.05);  // bf16 has 8 mantissa bits; a wrong layout gives O(1)
  CHECK(err > 0.0);   // and it really ran in bf16
}
