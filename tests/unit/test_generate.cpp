// The generation loop and the caches on a small random model (no fixture
// needed): caches agree, streaming, stopping, seeds, errors.
#include "udaci_catch.hpp"

#include "cache/cache_strategy.hpp"
#include "core/error.hpp"
#include "decode/generate.hpp"
#include "model/model_loader.hpp"
#include "model/llama_model.hpp"

using namespace udaci;

namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rope_theta = 10000;
  c.tie_word_embeddings = true;
  c.eos_token_ids = {5};
  c.validate("test");
  return c;
}

struct Fixture {
  ModelConfig config = small_config();
  WeightStore store = random_weights(config, at::kFloat, 42, 0.3);
  LlamaModel model{config, store, ModelOptions{}};
};

}  // namespace

TEST_CASE("generate: contiguous cache and no cache give the same logits step by step", "[unit][generate]") {
  Fixture f;
  auto a = make_contiguous_cache(f.model.cache_shape());
  auto b = make_no_cache(f.model.cache_shape());
  a->add_sequence(0, 4);  // smaller than needed: the buffer must grow
  b->add_sequence(0, 4);
  std::vector<int64_t> seq = {1, 17, 33, 2, 90};
  ForwardBatch pa;
  pa.add(0, seq);
  at::Tensor la = f.model.forward(pa, *a);
  for (int step = 0; step < 10; ++step) {
    ForwardBatch pb;
    pb.add(0, seq);
    at::Tensor lb = f.model.forward(pb, *b);
    REQUIRE(la.sizes() == lb.sizes());
    CHECK(at::allclose(la, lb, 1e-4, 1e-5));
    const int64_t next = la.argmax(-1).item<int64_t>();
    seq.push_back(next);
    ForwardBatch step_batch;
    step_batch.add(0, {next});
    la = f.model.forward(step_batch, *a);
  }
  CHECK(a->cached_length(0) == static_cast<int64_t>(seq.size()));
  CHECK(b->cached_length(0) == 0);
  CHECK(a->bytes_reserved() > 0);
  a->truncate(0, 3);
  CHECK(a->cached_length(0) == 3);
}

TEST_CASE("generate: streaming callback sees every token in order; stop and EOS end a sequence", "[unit][generate]") {
  Fixture f;
  auto cache = make_contiguous_cache(f.model.cache_shape());
  GenerationOptions opt;
  opt.max_new_tokens = 9;
  std::vector<int64_t> streamed;
  auto r = decode_sampled(f.model, *cache, {{3, 4, 6}}, opt, [&](size_t i, int64_t t) {
    CHECK(i == 0);
    streamed.push_back(t);
    return true;
  });
  CHECK(streamed == r[0].tokens);
  CHECK(r[0].tokens.size() == 9);
  CHECK(r[0].finish == FinishReason::kLength);

  int calls = 0;
  auto stopped = decode_sampled(f.model, *cache, {{3, 4, 6}}, opt, [&](size_t, int64_t) { return ++calls < 4; });
  CHECK(stopped[0].tokens.size() == 4);
  CHECK(stopped[0].finish == FinishReason::kStopped);
  CHECK(std::vector<int64_t>(r[0].tokens.begin(), r[0].tokens.begin() + 4) == stopped[0].tokens);

  // Make the third greedy token an EOS id: generation must end right there.
  opt.eos_ids = {r[0].tokens[2]};
  auto eos = decode_sampled(f.model, *cache, {{3, 4, 6}}, opt);
  CHECK(eos[0].finish == FinishReason::kEos);
  CHECK(eos[0].tokens.size() <= 3);
  CHECK(eos[0].tokens.back() == r[0].tokens[2]);
  CHECK(cache->bytes_reserved() == 0);
}

TEST_CASE("generate: seeded sampling is reproducible and seed-dependent", "[unit][generate]") {
  Fixture f;
  auto cache = make_contiguous_cache(f.model.cache_shape());
  GenerationOptions opt;
  opt.max_new_tokens = 24;
  opt.sampling.temperature = 1.5f;
  opt.sampling.top_k = 40;
  opt.sampling.top_p = 0.95f;
  opt.sampling.repetition_penalty = 1.1f;
  opt.sampling.seed = 1234;
  auto a = decode_sampled(f.model, *cache, {{7, 8, 9}}, opt);
  auto b = decode_sampled(f.model, *cache, {{7, 8, 9}}, opt);
  opt.sampling.seed = 99;
  auto c = decode_sampled(f.model, *cache, {{7, 8, 9}}, opt);
  CHECK(a[0].tokens == b[0].tokens);
  CHECK(a[0].tokens != c[0].tokens);
}

TEST_CASE("generate: bad input is rejected with a clear message", "[unit][generate]") {
  Fixture f;
  auto cache = make_contiguous_cache(f.model.cache_shape());
  GenerationOptions opt;
  auto expect = [&](const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& o,
                    const char* needle) {
    try {
      decode_sampled(f.model, *cache, prompts, o);
      FAIL("no error for " << needle);
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
    CHECK(cache->bytes_reserved() == 0);
  };
  expect({{1, 97}}, opt, "outside the vocabulary of 97");
  expect({{1, -1}}, opt, "outside the vocabulary");
  expect({{}}, opt, "prompt 0 is empty");
  GenerationOptions neg = opt;
  neg.max_new_tokens = -1;
  expect({{1}}, neg, "max_new_tokens");
  GenerationOptions badp = opt;
  badp.sampling.top_p = 2;
  expect({{1}}, badp, "top_p");
  CHECK(decode_sampled(f.model, *cache, {{1, 2}}, GenerationOptions{0, {}, {}})[0].tokens.empty());
}

TEST_CASE("model config: parameter count of known shapes", "[unit][config]") {
  // Counts as llama.cpp reports them (LLAMACPP-CPU-ANCHOR.md).
  CHECK(preset_config("smollm2-135m").parameter_count() == 134515008);
  CHECK(preset_config("llama-3.2-1b").parameter_count() == 1235814400);
  CHECK_THROWS_AS(preset_config("gpt-5"), Error);
}
