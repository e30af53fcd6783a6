// Limits on untrusted input (issue #12, docs/SECURITY.md): oversized or
// over-counted files are refused by name before anything of that size is
// read, an over-long prompt is refused before any work, and the memory cap
// refuses a model that does not fit at load and bounds the K/V cache.
#include "udaci_catch.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "core/error.hpp"
#include "core/limits.hpp"
#include "engine/headline_engine.hpp"
#include "model/model_loader.hpp"
#include "io/safetensors_reader.hpp"
#include "model/model_config.hpp"
#include "text/tokenizer.hpp"
#include "test_util.hpp"

using namespace udaci;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("udaci_limits_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}

template <typename F>
std::pair<Status, std::string> error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return {e.status(), e.what()};
  }
  return {Status::kOk, ""};
}

void write_safetensors_header(const fs::path& p, const std::string& header) {
  std::ofstream out(p, std::ios::binary);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
}

// A file of `bytes` bytes that takes no disk space (a hole).
void sparse_file(const fs::path& p, uintmax_t bytes) {
  std::ofstream(p, std::ios::binary) << "{";
  fs::resize_file(p, bytes);
}

}  // namespace

TEST_CASE("limits: safetensors tensor count and rank", "[limits]") {
  std::string many = "{";
  for (uint64_t i = 0; i <= kMaxSafetensorsTensors; ++i) {
    if (i) many += ",";
    many += "\"t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}";
  }
  many += "}";
  const fs::path a = scratch("many.safetensors");
  write_safetensors_header(a, many);
  WeightStore s1;
  auto [st, msg] = error_of([&] { read_safetensors_file(a.string(), s1); });
  CHECK(st == Status::kBadModelFile);
  CHECK_THAT(msg, Catch::Matchers::Contains("over the limit of 65536 tensors"));
  CHECK(s1.size() == 0);

  const fs::path b = scratch("rank.safetensors");
  write_safetensors_header(
      b, R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})");
  WeightStore s2;
  std::tie(st, msg) = error_of([&] { read_safetensors_file(b.string(), s2); });
  CHECK(st == Status::kBadModelFile);
  CHECK_THAT(msg, Catch::Matchers::Contains("9 dimensions, over the limit of 8"));
}

TEST_CASE("limits: oversized JSON files are refused before they are read", "[limits]") {
  const fs::path dir = scratch("big_tokenizer");
  fs::create_directories(dir);
  sparse_file(dir / "tokenizer.json", kMaxTokenizerJsonBytes + 1);
  auto [st, msg] = error_of([&] { Tokenizer::from_tokenizer_json((dir / "tokenizer.json").string()); });
  CHECK(st == Status::kBadModelFile);
  CHECK_THAT(msg, Catch::Matchers::Contains("over the limit of 268435456 bytes"));

  const fs::path cfg = scratch("config.json");
  sparse_file(cfg, kMaxConfigFileBytes + 1);
  std::tie(st, msg) = error_of([&] { ModelConfig::from_file(cfg.string()); });
  CHECK(st == Status::kBadModelFile);
  CHECK_THAT(msg, Catch::Matchers::Contains("the model config is"));

  std::tie(st, msg) = error_of([&] { read_file_capped(scratch("absent.json").string(), 10, "x"); });
  CHECK(st == Status::kNotFound);
}

TEST_CASE("limits: model shapes beyond any real model are refused by key", "[limits]") {
  const std::string base = udaci_test::read_file(udaci_test::fixture("golden/tiny-gqa-tied/config.json"));
  CHECK_NOTHROW(ModelConfig::from_json_text(base, "config.json"));
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"num_hidden_layers", "100000"},
                                                        {"hidden_size", "1048576"},
                                                        {"vocab_size", "1000000000"},
                                                        {"max_position_embeddings", "1000000000000"}}) {
    INFO(key);
    std::string text = base;
    const size_t at = text.find("\"" + key + "\"");
    REQUIRE(at != std::string::npos);
    const size_t colon = text.find(':', at), end = text.find_first_of(",}", colon);
    text.replace(colon + 1, end - colon - 1, " " + value);
    auto [st, msg] = error_of([&] { ModelConfig::from_json_text(text, "config.json"); });
    CHECK(st == Status::kBadModelFile);
    CHECK_THAT(msg, Catch::Matchers::Contains("\"" + key + "\"") && Catch::Matchers::Contains("over the limit"));
  }
}

TEST_CASE("limits: a tokenizer's chat template has a size cap", "[limits]") {
  TokenizerSpec s;
  // GPT-2's byte-to-unicode alphabet: one token per byte, then a merge.
  for (int b = 0, extra = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    const int cp = printable ? b : 256 + extra++;
    std::string u;
    if (cp < 0x80) u += static_cast<char>(cp);
    else u += {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    s.tokens.push_back(u);
  }
  s.tokens.push_back("ab");
  s.merges = {"a b"};
  s.chat_template = std::string(kMaxChatTemplateBytes + 1, 'x');
  auto [st, msg] = error_of([&] { Tokenizer::from_spec(s); });
  CHECK(st == Status::kBadModelFile);
  CHECK_THAT(msg, Catch::Matchers::Contains("chat template"));
  s.chat_template = "{{ messages[0]['content'] }}";
  CHECK_NOTHROW(Tokenizer::from_spec(s));
}

TEST_CASE("limits: prompt-length cap and memory cap of the engine", "[limits][smollm2]") {
  const std::string model = udaci_test::default_model_gguf();
  if (model.empty()) {
    WARN("default GGUF model not installed; skipping");
    return;
  }
  const std::string summary =
      "The city council approved a new budget on Tuesday that adds money for parks and schools.";

  SECTION("prompt length") {
    EngineConfig ec;
    ec.model_path = model;
    ec.max_prompt_tokens = 16;
    HeadlineEngine engine(ec);
    HeadlineOptions ho;
    ho.max_new_tokens = 4;
    auto [st, msg] = error_of([&] { engine.generate({summary}, ho); });
    CHECK(st == Status::kInvalidArgument);
    CHECK_THAT(msg, Catch::Matchers::Contains("over the limit of 16 (max_prompt_tokens)"));
    ec.max_prompt_tokens = 0;  // no cap
    HeadlineEngine uncapped(ec);
    CHECK(uncapped.generate({summary}, ho).at(0).new_ids.size() > 0);
    ec.max_prompt_tokens = -1;
    std::tie(st, msg) = error_of([&] { HeadlineEngine bad(ec); });
    CHECK(st == Status::kInvalidArgument);
  }

  SECTION("memory cap") {
    EngineConfig ec;
    ec.model_path = model;
    ec.quantizer = "gguf-native";
    const int64_t weights =
        estimate_resident_weight_bytes(open_model(model).weights, at::kFloat, /*native_gguf_blocks=*/true);
    // The Q4_1 blocks run as stored; norms and the rest are small.
    CHECK(weights > 80ll << 20);
    CHECK(weights < 140ll << 20);
    // The fp32 model needs its weights dequantised: about 4x.
    CHECK(estimate_resident_weight_bytes(open_model(model).weights, at::kFloat, false) > 3 * weights);

    ec.max_memory_bytes = 64ll << 20;  // under the weights
    auto [st, msg] = error_of([&] { HeadlineEngine e(ec); });
    CHECK(st == Status::kOutOfMemory);
    CHECK_THAT(msg, Catch::Matchers::Contains("max_memory_bytes"));

    ec.max_memory_bytes = weights + (1ll << 20);  // weights fit, no room for a sequence
    std::tie(st, msg) = error_of([&] { HeadlineEngine e(ec); });
    CHECK(st == Status::kOutOfMemory);
    CHECK_THAT(msg, Catch::Matchers::Contains("K/V cache"));

    ec.max_memory_bytes = weights + (24ll << 20);  // room for a few hundred tokens of K/V
    HeadlineEngine engine(ec);
    HeadlineOptions ho;
    ho.max_new_tokens = 8;
    CHECK(engine.generate({summary}, ho).at(0).new_ids.size() > 0);
    ho.max_new_tokens = 2000;  // needs more K/V than is left: refused, not OOM-killed
    std::tie(st, msg) = error_of([&] { engine.generate({summary}, ho); });
    CHECK(st == Status::kOutOfMemory);
    CHECK_THAT(msg, Catch::Matchers::Contains("cap"));
  }
}
