// Parity with llama.cpp on the default model (SmolLM2-135M-Instruct Q4_1),
// for 10 chat-templated news summaries. Fixture and the script that made it:
// tests/fixtures/llamacpp/, tools/reference/make_llamacpp_fixtures.py.
//
// udaci dequantises the Q4_1 weights to fp32 and computes in fp32, which is
// what llama.cpp does on an F32 copy of the same file (set "f32"): there the
// 32 greedy tokens must be identical and the first-step logits agree to 1e-3.
// llama.cpp on the Q4_1 file itself (set "q4_1") rounds activations to 8 bits
// and keeps the KV cache in f16, which moves logits by up to ~1 (2.7% of their
// range; measured by the fixture script); there the first greedy token must
// agree and the logits stay within 1.5.
#include "udaci_catch.hpp"
#include <nlohmann/json.hpp>

#include <fstream>

#include "cache/cache_strategy.hpp"
#include "decode/generate.hpp"
#include "engine/headline_engine.hpp"
#include "io/safetensors_reader.hpp"
#include "test_util.hpp"

using namespace udaci;
using nlohmann::json;

namespace {

struct Fixture {
  json data;
  WeightStore logits;
};

const Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    std::ifstream in(udaci_test::fixture("llamacpp/smollm2_greedy.json"));
    x.data = json::parse(in);
    read_safetensors_file(udaci_test::fixture("llamacpp/first_logits.safetensors"), x.logits);
    return x;
  }();
  return f;
}

// The fp32 reference, named explicitly: the default recipe runs the file's
// Q4_1 blocks as stored, and the fixture is llama.cpp on the F32 weights.
const HeadlineEngine* engine() { return udaci_test::default_engine_with("no-quant"); }

}  // namespace

TEST_CASE("llama.cpp parity: prompt text and prompt tokens", "[golden][llamacpp][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const json& d = fixture().data;
  REQUIRE(d["system_message"] == e->prompt_builder().options().system);
  for (const json& p : d["prompts"]) {
    INFO("news line " << p["line"]);
    const std::string summary = p["short_description"];
    CHECK(e->prompt_builder().build(summary) == p["text"].get<std::string>());
    CHECK(e->prompt_ids(summary) == p["ids"].get<std::vector<int32_t>>());
  }
}

TEST_CASE("llama.cpp parity: 32 greedy tokens equal llama.cpp on the F32 weights", "[golden][llamacpp][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const json& d = fixture().data;
  std::vector<std::vector<int64_t>> prompts;
  for (const json& p : d["prompts"]) prompts.push_back(p["ids"].get<std::vector<int64_t>>());
  GenerationOptions opt;
  opt.max_new_tokens = 32;  // EOS ignored, as the reference did
  // All ten prompts as one ragged batch: batching must not change a token.
  std::vector<GenerationResult> got = e->generate_ids(prompts, opt);
  int equal = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto want = d["sets"]["f32"][i]["greedy_ids"].get<std::vector<int64_t>>();
    INFO("prompt " << i);
    CHECK(got[i].tokens == want);
    for (size_t k = 0; k < std::min(want.size(), got[i].tokens.size()); ++k) equal += got[i].tokens[k] == want[k];
  }
  CHECK(equal == 320);
}

TEST_CASE("llama.cpp parity: first-step logits", "[golden][llamacpp][smollm2]") {
  const HeadlineEngine* e = engine();
  if (!e) {
    WARN(udaci_test::kNoDefaultModel);
    return;
  }
  const json& d = fixture().data;
  at::Tensor q41 = fixture().logits.tensor("logits", at::kFloat);      // [10, vocab]
  at::Tensor f32 = fixture().logits.tensor("logits_f32", at::kFloat);  // [3, vocab]
  auto cache = make_contiguous_cache(e->model().cache_shape());
  for (int64_t i = 0; i < q41.size(0); ++i) {
    INFO("prompt " << i);
    cache->add_sequence(0, 128);
    ForwardBatch b;
    b.add(0, d["prompts"][static_cast<size_t>(i)]["ids"].get<std::vector<int64_t>>());
    at::Tensor ours = e->model().forward(b, *cache)[0];
    cache->free_sequence(0);
    const double dq = (ours - q41[i]).abs().max().item<double>();
    INFO("max |ours - llama.cpp Q4_1| = " << dq);
    CHECK(dq < 1.5);
    CHECK(ours.argmax().item<int64_t>() == q41[i].argmax().item<int64_t>());
    if (i < f32.size(0)) {
      const double df = (ours - f32[i]).abs().max().item<double>();
      INFO("max |ours - llama.cpp F32| = " << df);
      CHECK(df < 1e-3);
    }
  }
}

// Measurement, not a check: how many of the 320 greedy tokens of llama.cpp on
// the Q4_1 file the gguf-native kernels reproduce (issue #3's last item).
TEST_CASE("llama.cpp parity: gguf-native agreement with llama.cpp's Q4_1 run", "[.llamacpp-q41]") {
  const std::string path = udaci_test::default_model_gguf();
  if (path.empty()) return;
  EngineConfig c;
  c.model_path = path;
  c.quantizer = "gguf-native";
  HeadlineEngine e(c);
  const json& d = fixture().data;
  std::vector<std::vector<int64_t>> prompts;
  for (const json& p : d["prompts"]) prompts.push_back(p["ids"].get<std::vector<int64_t>>());
  GenerationOptions opt;
  opt.max_new_tokens = 32;
  std::vector<GenerationResult> got = e.generate_ids(prompts, opt);
  for (const char* set : {"q4_1", "q4_1_kv_f32", "f32"}) {
    int equal = 0;
    std::string prefixes;
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto want = d["sets"][set][i]["greedy_ids"].get<std::vector<int64_t>>();
      size_t k = 0;
      while (k < want.size() && k < got[i].tokens.size() && want[k] == got[i].tokens[k]) ++k;
      prefixes += std::to_string(k) + " ";
      for (size_t j = 0; j < std::min(want.size(), got[i].tokens.size()); ++j) equal += got[i].tokens[j] == want[j];
    }
    WARN("gguf-native vs llama.cpp " << set << ": " << equal << "/320 positionwise; common prefixes " << prefixes);
  }
}
