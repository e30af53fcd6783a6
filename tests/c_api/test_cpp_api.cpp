// include/udaci/udaci.hpp: the header-only RAII layer over the C ABI.
#include <udaci/udaci.hpp>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "c_api/c_api_test_util.hpp"

using namespace udaci_c_test;

TEST_CASE("cpp_api: failures throw udaci::Exception with the status and message", "[c_api][cpp]") {
  CHECK(udaci::version() == UDACI_VERSION_STRING);
  CHECK(udaci::abi_version() == UDACI_ABI_VERSION);
  try {
    udaci::Engine engine("/nonexistent/udaci-cpp-test/model.gguf");
    FAIL("no exception for a missing model");
  } catch (const udaci::Exception& e) {
    CHECK(e.status() == UDACI_ERR_NOT_FOUND);
    CHECK(std::string(e.status_name()) == "not_found");
    CHECK(std::string(e.what()).find("/nonexistent/udaci-cpp-test/model.gguf") != std::string::npos);
  }
  udaci::EngineParams p = udaci::default_engine_params();
  p.struct_size = 0;
  try {
    udaci::Engine engine(p);
    FAIL("no exception for struct_size 0");
  } catch (const udaci::Exception& e) {
    CHECK(e.status() == UDACI_ERR_INVALID_ARGUMENT);
  }
}

TEST_CASE("cpp_api: an empty Result reports invalid argument", "[c_api][cpp]") {
  udaci::Result empty;
  CHECK_FALSE(empty);
  try {
    (void)empty.headline();
    FAIL("no exception");
  } catch (const udaci::Exception& e) {
    CHECK(e.status() == UDACI_ERR_INVALID_ARGUMENT);
    CHECK(std::string(e.what()).find("result is NULL") != std::string::npos);
  }
}

namespace {

// The default engine as a udaci::Engine, or an empty optional-like pair.
bool have_default_model() {
  udaci_engine_params p = udaci_engine_default_params();
  udaci_engine* e = nullptr;
  const udaci_status s = udaci_engine_create(&p, &e);
  udaci_engine_destroy(e);
  if (s == UDACI_ERR_NOT_FOUND) {
    WARN(kNoDefaultModel);
    return false;
  }
  return true;
}

}  // namespace

TEST_CASE("cpp_api: generate and batch and stream and tokenize through the RAII layer", "[c_api][cpp]") {
  if (!have_default_model()) return;
  udaci::Engine engine;
  CHECK(engine.model_path().find(".gguf") != std::string::npos);

  udaci::Result r = engine.generate(kSummaryA);
  REQUIRE(r);
  const std::string head = r.headline();
  CHECK(!head.empty());
  CHECK(r.raw_text().size() >= head.size());
  CHECK(!r.token_ids().empty());
  CHECK(!r.prompt_tokens().empty());
  CHECK(r.finish_reason() != UDACI_FINISH_CANCELLED);
  CHECK(r.timings().latency_ms > 0);
  CHECK(engine.detokenize(r.prompt_tokens()).find("plant 10,000 trees") != std::string::npos);

  // Moving transfers ownership; the moved-from objects are empty.
  udaci::Result moved = std::move(r);
  CHECK_FALSE(r);
  CHECK(moved.headline() == head);
  udaci::Engine other = std::move(engine);
  CHECK(engine.get() == nullptr);

  std::vector<udaci::Result> batch = other.generate_batch({kSummaryA, kSummaryB});
  REQUIRE(batch.size() == 2);
  CHECK(batch[0].headline() == head);
  CHECK(!batch[1].headline().empty());

  std::vector<std::string> pieces(2);
  std::vector<udaci::Result> streamed = other.generate_stream({kSummaryA, kSummaryB},
      [&](size_t i, std::string_view piece) {
        pieces.at(i) += piece;
        return true;
      });
  CHECK(pieces[0] == streamed[0].raw_text());
  CHECK(pieces[1] == streamed[1].raw_text());

  const std::vector<int32_t> ids = other.tokenize("Breaking news: udaci ships a C ABI");
  CHECK(other.detokenize(ids) == "Breaking news: udaci ships a C ABI");

  udaci::GenerateParams bad = udaci::default_generate_params();
  bad.max_new_tokens = -1;
  CHECK_THROWS_AS(other.generate(kSummaryA, bad), udaci::Exception);
}

TEST_CASE("cpp_api: an exception in the stream callback cancels and is rethrown", "[c_api][cpp]") {
  if (!have_default_model()) return;
  udaci::Engine engine;
  int calls = 0;
  CHECK_THROWS_WITH(engine.generate_stream({kSummaryA, kSummaryB},
                                           [&](size_t, std::string_view) -> bool {
                                             ++calls;
                                             throw std::runtime_error("stop right there");
                                           }),
                    "stop right there");
  // Both summaries were cancelled at their first piece; nothing called after.
  CHECK(calls == 1);
  // The engine is fine afterwards.
  CHECK(!engine.generate(kSummaryB).headline().empty());
}

TEST_CASE("cpp_api: recipes and config files", "[c_api][cpp][recipe]") {
  try {
    udaci::Engine e = udaci::Engine::with_recipe("int8+int4");
    FAIL("no exception for a recipe with two quantizers");
  } catch (const udaci::Exception& e) {
    CHECK(e.status() == UDACI_ERR_INVALID_ARGUMENT);
    CHECK(std::string(e.what()).find("both choose the quantizer") != std::string::npos);
  }
  try {
    udaci::Engine e = udaci::Engine::from_file("/nonexistent/udaci-cpp.json");
    FAIL("no exception for a missing config file");
  } catch (const udaci::Exception& e) {
    CHECK(e.status() == UDACI_ERR_NOT_FOUND);
  }
  CHECK(udaci::techniques_json().find("\"paged-prefix\"") != std::string::npos);
  EnginePtr probe = default_engine();
  if (!probe) return;
  udaci::Engine e = udaci::Engine::with_recipe("paged-prefix+greedy");
  CHECK(e.config_json().find("\"recipe\": \"paged-prefix{") != std::string::npos);
  CHECK(!e.generate("The city council approved a plan to plant 10,000 trees.").headline().empty());
}
